import ArgumentParser
import Foundation
import Octet

struct EvalCommand: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "eval",
    abstract: "Top-1 and top-5 accuracy over a folder of images with a labels.tsv (file TAB class index).")

  @Argument(help: "An Octet model file (or a checkpoint, imported on the fly).")
  var model: String

  @Option(help: "A folder with images and labels.tsv.")
  var images: String

  @Option(help: "Evaluate only the first N images of labels.tsv.")
  var limit: Int?

  @Option(help: "Write the report as JSON to this file.")
  var json: String?

  func validate() throws {
    if let limit, limit < 1 { throw ValidationError("--limit must be at least 1") }
    try validateOutputPath(json, option: "--json")
  }

  struct Report: Encodable {
    var model: String
    var count: Int
    var top1: Double
    var top5: Double
    var seconds: Double
  }

  func run() throws {
    let classifier = try Classifier(contentsOf: URL(fileURLWithPath: model))
    var entries = try LabeledFolder(path: images, classes: classifier.model.info.classes).entries
    if let limit { entries = Array(entries.prefix(limit)) }
    var top1 = 0, top5 = 0
    var progress = ProgressBar(total: entries.count, label: "eval")
    let start = Date()
    for (i, entry) in entries.enumerated() {
      let image = try ImageDecoder.decode(contentsOf: entry.url)
      let ranked = Classifier.topIndices(5, of: classifier.logits(for: image))
      if ranked.first == entry.label { top1 += 1 }
      if ranked.contains(entry.label) { top5 += 1 }
      progress.update(i + 1, detail: String(format: "top-1 %.2f%%", 100 * Double(top1) / Double(i + 1)))
    }
    progress.finish()
    let n = entries.count
    let report = Report(
      model: model, count: n, top1: Double(top1) / Double(n), top5: Double(top5) / Double(n),
      seconds: Date().timeIntervalSince(start))
    print(
      String(
        format: "%@ on %d images: top-1 %.2f%% (%d), top-5 %.2f%% (%d), %.1f s",
        classifier.model.info.architecture, n, report.top1 * 100, top1, report.top5 * 100, top5, report.seconds))
    if let json { try writeJSON(report, to: json) }
  }
}
