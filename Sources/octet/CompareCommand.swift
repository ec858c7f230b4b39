import ArgumentParser
import Foundation
import Octet
import OctetReport
import Synchronization

struct CompareCommand: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "compare",
    abstract: "Drift report: float against int8 on labeled images, with per-layer SQNR and cosine.",
    discussion: """
      Reports top-1/top-5 of both models against the labels, their top-1 agreement, and for every \
      quantized tensor the SQNR (dB) and cosine of the dequantized int8 activation against the float one, \
      worst layers first: accumulated (the int8 network end to end) and local (the layer alone, fed the \
      float values of its inputs, on the reference kernels). --sensitivity ranks the layers by how much \
      the logits move (mean KL, top-1 agreement) when each one alone runs in int8 (docs/debugging.md). \
      The int8 model runs on --backend's kernels with every node's output kept \
      (residual adds unfused); all backends give the same bits. An image that cannot be decoded is \
      skipped with a warning naming it and listed (`unreadable` in the JSON); --strict makes the first \
      one fatal. Warns when evaluation images were among the images the int8 model was calibrated on \
      (the comparison is then optimistic) and when fewer than \(Self.smallSet) images are compared.
      """)

  /// Below this many images, the report says how many points one image is worth.
  static let smallSet = 200

  @Argument(help: "The float model (an Octet model file or a checkpoint).")
  var floatModel: String

  @Argument(help: ArgumentHelp("The int8 model made from it by `octet quantize`.", valueName: "int8-model"))
  var quantizedModel: String

  @Option(help: "A folder with images and labels.tsv, disjoint from the calibration images.")
  var images: String

  @Option(help: "Compare only the first N images of labels.tsv.")
  var limit: Int?

  @Option(help: "How many of the worst layers to print (the JSON has all).")
  var worst: Int = 15

  @Option(help: "Images compared at once, one per thread (default: all cores).")
  var threads: Int = ProcessInfo.processInfo.activeProcessorCount

  @Option(help: "Write the report as JSON to this file.")
  var json: String?

  @Option(help: "Write the report as one self-contained HTML page (charts, flipped images) to this file.")
  var html: String?

  @OptionGroup var backendOption: BackendOption

  @Flag(help: "Stop at the first image that cannot be decoded instead of skipping it.")
  var strict = false

  @Flag(help: "Also rank the layers by how much the logits change when each one alone runs in int8.")
  var sensitivity = false

  @Option(help: "Images the --sensitivity ranking runs on (the first of those compared).")
  var sensitivityImages: Int = 100

  @Option(
    help: """
      Compute the local error on the first N compared images only (default: all; 0: none). It runs \
      every layer on the reference kernels, several times the cost of the rest of the comparison.
      """)
  var localImages: Int?

  func validate() throws {
    if let limit, limit < 1 { throw ValidationError("--limit must be at least 1") }
    guard threads >= 1, worst >= 0 else { throw ValidationError("--threads must be at least 1, --worst at least 0") }
    guard sensitivityImages >= 1 else { throw ValidationError("--sensitivity-images must be at least 1") }
    if let localImages, localImages < 0 { throw ValidationError("--local-images must be at least 0") }
    try validateOutputPath(json, option: "--json")
    try validateOutputPath(html, option: "--html")
    try validateHTMLPath()
    try ModelArgument.expectComparePair(float: floatModel, int8: quantizedModel)
  }

  /// The drift report's fields, then what this command adds.
  struct Report: Encodable {
    var drift: DriftReport
    /// Images skipped because they could not be decoded, in labels.tsv order.
    var unreadable: [Unreadable]
    /// How many compared images the int8 model was calibrated on; nil when the model does not
    /// record its calibration images (quantized from a range table without them).
    var calibration_overlap: Int?
    /// Their file names.
    var calibration_overlap_images: [String]?
    /// Top-1 points one image is worth (100 / count).
    var points_per_image: Double
    var warnings: [String]

    enum Keys: String, CodingKey {
      case unreadable, calibration_overlap, calibration_overlap_images, points_per_image, warnings
    }

    func encode(to encoder: any Encoder) throws {
      try drift.encode(to: encoder)
      var container = encoder.container(keyedBy: Keys.self)
      try container.encode(unreadable, forKey: .unreadable)
      // Written as null when unknown, so that a reader can tell "not checked" from 0.
      try container.encode(calibration_overlap, forKey: .calibration_overlap)
      try container.encodeIfPresent(calibration_overlap_images, forKey: .calibration_overlap_images)
      try container.encode(points_per_image, forKey: .points_per_image)
      try container.encode(warnings, forKey: .warnings)
    }
  }

  func run() throws {
    let allEntries = try LabeledFolder(path: images).entries
    let entries = Array(allEntries.prefix(limit ?? allEntries.count))
    let float = try ModelLoader.load(contentsOf: URL(fileURLWithPath: floatModel))
    let quantized = try ModelLoader.loadQuantized(contentsOf: URL(fileURLWithPath: quantizedModel))
    let comparison = try DriftComparison(float: float, int8: quantized, backend: backendOption.backend)
    let overlap = try quantized.calibrationImages.map { try Self.calibrationOverlap(entries, $0, threads: threads) }
    let bar = Mutex(ProgressBar(total: entries.count, label: "compare"))
    let skipper = UnreadableImages(strict: strict)
    let start = Date()
    var drift: DriftReport
    do {
      drift = try comparison.run(
        entries, threads: threads, localImages: localImages ?? .max,
        progress: { done, agreement in
          bar.withLock { $0.update(done, detail: String(format: "agreement %.2f%%", agreement * 100)) }
        },
        decode: { url, index in try skipper.decode(url, index: index) })
    } catch {
      bar.withLock { $0.finish() }
      throw error
    }
    bar.withLock { $0.finish() }
    describeRun(&drift)
    try skipper.checkSomeDecoded(total: entries.count, folder: images)
    let compareSeconds = Date().timeIntervalSince(start)
    let sensitivityStart = Date()
    if sensitivity { drift.sensitivity = try sensitivityRanking(float: float, quantized: quantized, entries: entries) }
    let sensitivitySeconds = Date().timeIntervalSince(sensitivityStart)

    // Overlapping images that were skipped were not compared: they do not count.
    let skippedPaths = Set(skipper.list.map(\.image))
    let overlapping = overlap?.filter { !skippedPaths.contains($0.path) }
    let report = Report(
      drift: drift, unreadable: skipper.list, calibration_overlap: overlapping?.count,
      calibration_overlap_images: overlapping?.map(\.lastPathComponent),
      points_per_image: 100 / Double(drift.count),
      warnings: Self.warnings(
        compared: drift.count, overlapping: overlapping, calibrationCount: quantized.calibrationImages?.count))

    print(
      String(format: "%@ on %d images (%.1f s)", float.info.architecture, drift.count, compareSeconds))
    print(String(format: "  float  top-1 %6.2f%%  top-5 %6.2f%%", drift.float.top1 * 100, drift.float.top5 * 100))
    print(String(format: "  int8   top-1 %6.2f%%  top-5 %6.2f%%", drift.int8.top1 * 100, drift.int8.top5 * 100))
    print(
      String(
        format: "  drift  top-1 %+6.2f points, top-1 agreement %.2f%%",
        (drift.int8.top1 - drift.float.top1) * 100, drift.top1_agreement * 100))
    print(
      drift.not_quantized.isEmpty
        ? "  every operator runs in integers"
        : "  NOT quantized (float graph nodes with no int8 node): \(drift.not_quantized.joined(separator: ", "))")
    if !drift.unmatched.isEmpty {
      print("  int8 tensors with no float counterpart: \(drift.unmatched.joined(separator: ", "))")
    }
    for line in Self.layerLines(drift.layers, count: worst, localImages: drift.local_images, images: drift.count) {
      print(line)
    }
    if let ranking = drift.sensitivity {
      for line in Self.sensitivityLines(ranking, count: worst, images: min(sensitivityImages, drift.count)) {
        print(line)
      }
      print(String(format: "  sensitivity took %.1f s", sensitivitySeconds))
    }
    if let line = skipper.summary(total: entries.count) { print(line) }
    if quantized.calibrationImages == nil {
      FileHandle.standardError.write(
        Data(
          ("note: \(quantizedModel) does not record its calibration images (its range table predates them), "
            + "so overlap with the evaluation images was not checked\n").utf8))
    }
    for warning in report.warnings { FileHandle.standardError.write(Data("warning: \(warning)\n".utf8)) }
    if let json { try writeJSON(report, to: json) }
    if let html { try writeHTML(drift, to: html) }
  }

  /// The evaluation images whose file bytes have the SHA-256 of a calibration image, in `entries` order.
  static func calibrationOverlap(_ entries: [LabeledFolder.Entry], _ calibration: [String], threads: Int) throws
    -> [URL]
  {
    let known = Set(calibration)
    let found = Mutex([Bool](repeating: false, count: entries.count))
    try forEachInParallel(entries.count, threads: threads) { index in
      // An image that cannot be read here is reported when it is decoded; it matches nothing.
      guard let bytes = try? Data(contentsOf: entries[index].url) else { return }
      if known.contains(SHA256.hex(Array(bytes))) { found.withLock { $0[index] = true } }
    }
    let flags = found.withLock { $0 }
    return entries.indices.filter { flags[$0] }.map { entries[$0].url }
  }

  /// What makes the comparison less meaningful than it looks: evaluation images the model was
  /// calibrated on, and a small set, where one image moves top-1 and agreement by many points.
  static func warnings(compared: Int, overlapping: [URL]?, calibrationCount: Int?) -> [String] {
    var warnings: [String] = []
    if let overlapping, !overlapping.isEmpty {
      let names = overlapping.prefix(5).map(\.lastPathComponent).joined(separator: ", ")
      warnings.append(
        "\(overlapping.count) of the \(compared) compared images are among the \(calibrationCount ?? 0) images "
          + "the int8 model was calibrated on (\(names)\(overlapping.count > 5 ? ", …" : "")): its ranges were "
          + "fitted to them, so agreement and int8 accuracy here are optimistic; compare on images disjoint "
          + "from the calibration set")
    }
    if compared < smallSet {
      warnings.append(
        String(
          format: "only %d images compared: one image is %.2f points of top-1 and of agreement, so differences "
            + "of a few points are noise; compare on %d or more images for a meaningful result",
          compared, 100 / Double(compared), smallSet))
    }
    return warnings
  }
}
