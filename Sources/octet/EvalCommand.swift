import ArgumentParser
import Foundation
import Octet
import Synchronization

struct EvalCommand: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "eval",
    abstract: "Top-1 and top-5 accuracy over a folder of images with a labels.tsv (file TAB class index).",
    discussion: """
      An image that cannot be decoded is skipped with a warning naming it, left out of the accuracy, \
      and listed in the report (`unreadable` in the JSON); --strict makes the first one fatal.
      """)

  @Argument(help: "An Octet model file (or a checkpoint, imported on the fly).")
  var model: String

  @Option(help: "A folder with images and labels.tsv.")
  var images: String

  @Option(help: "Evaluate only the first N images of labels.tsv.")
  var limit: Int?

  @Option(help: "Write the report as JSON to this file.")
  var json: String?

  @Option(help: "Images evaluated at once, one per thread (default: all cores).")
  var threads: Int = ProcessInfo.processInfo.activeProcessorCount

  @OptionGroup var backendOption: BackendOption

  @Flag(help: "Stop at the first image that cannot be decoded instead of skipping it.")
  var strict = false

  func validate() throws {
    if let limit, limit < 1 { throw ValidationError("--limit must be at least 1") }
    guard threads >= 1 else { throw ValidationError("--threads must be at least 1") }
    try validateOutputPath(json, option: "--json")
  }

  /// `count` is the images evaluated; `unreadable` the ones skipped, in labels.tsv order.
  struct Report: Encodable {
    var model: String
    var runtime: String
    var count: Int
    var top1: Double
    var top5: Double
    var seconds: Double
    var unreadable: [Unreadable]
  }

  func run() throws {
    // The folder is checked before the model is loaded: a typo fails at once.
    let allEntries = try LabeledFolder(path: images).entries
    let classifier = try Classifier(contentsOf: URL(fileURLWithPath: model), backend: backendOption.backend)
    let classes = classifier.info.classes
    if let outside = allEntries.first(where: { $0.label >= classes }) {
      throw FileError(
        path: outside.url.path, reason: "is labeled \(outside.label), but the model has \(classes) classes")
    }
    let entries = Array(allEntries.prefix(limit ?? allEntries.count))
    // Workers take images in order; the executor is safe to share (each call has its own scratch).
    struct State {
      var done = 0
      var top1 = 0
      var top5 = 0
      var progress: ProgressBar
    }
    let state = Mutex(State(progress: ProgressBar(total: entries.count, label: "eval")))
    let start = Date()
    let skipper = UnreadableImages(strict: strict)
    do {
      try forEachInParallel(entries.count, threads: threads) { index in
        let entry = entries[index]
        guard let image = try skipper.decode(entry.url, index: index) else {
          state.withLock { $0.done += 1 }
          return
        }
        let ranked = Classifier.topIndices(5, of: classifier.logits(for: image))
        state.withLock { s in
          if ranked.first == entry.label { s.top1 += 1 }
          if ranked.contains(entry.label) { s.top5 += 1 }
          s.done += 1
          s.progress.update(s.done, detail: String(format: "top-1 %.2f%%", 100 * Double(s.top1) / Double(s.done)))
        }
      }
    } catch {
      state.withLock { $0.progress.finish() }
      throw error
    }
    let (top1, top5, progress) = state.withLock { ($0.top1, $0.top5, $0.progress) }
    progress.finish()
    try skipper.checkSomeDecoded(total: entries.count, folder: images)
    let unreadable = skipper.list
    let n = entries.count - unreadable.count
    let report = Report(
      model: model, runtime: classifier.runtimeName, count: n, top1: Double(top1) / Double(n),
      top5: Double(top5) / Double(n), seconds: Date().timeIntervalSince(start), unreadable: unreadable)
    print(
      String(
        format: "%@ %@ on %d images: top-1 %.2f%% (%d), top-5 %.2f%% (%d), %.1f s",
        classifier.info.architecture, classifier.runtimeName, n, report.top1 * 100, top1, report.top5 * 100, top5,
        report.seconds))
    if let line = skipper.summary(total: entries.count) { print(line) }
    if let json { try writeJSON(report, to: json) }
  }
}
