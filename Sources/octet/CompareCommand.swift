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
      worst layers first. The int8 model runs on --backend's kernels with every node's output kept \
      (residual adds unfused); all backends give the same bits.
      """)

  @Argument(help: "The float model (an Octet model file or a checkpoint).")
  var floatModel: String

  @Argument(help: "The int8 model made from it by `octet quantize`.")
  var quantizedModel: String

  @Option(help: "A folder with images and labels.tsv.")
  var images: String

  @Option(help: "Compare only the first N images of labels.tsv.")
  var limit: Int?

  @Option(help: "How many of the worst layers to print (the JSON has all).")
  var worst: Int = 15

  @Option(help: "Images compared at once, one per thread (default: all cores).")
  var threads: Int = ProcessInfo.processInfo.activeProcessorCount

  @Option(help: "Write the report as JSON to this file.")
  var json: String?

  @OptionGroup var backendOption: BackendOption

  func validate() throws {
    if let limit, limit < 1 { throw ValidationError("--limit must be at least 1") }
    guard threads >= 1, worst >= 0 else { throw ValidationError("--threads must be at least 1, --worst at least 0") }
    try validateOutputPath(json, option: "--json")
  }

  func run() throws {
    let allEntries = try LabeledFolder(path: images).entries
    let entries = Array(allEntries.prefix(limit ?? allEntries.count))
    let float = try ModelLoader.load(contentsOf: URL(fileURLWithPath: floatModel))
    let quantized = try ModelLoader.loadQuantized(contentsOf: URL(fileURLWithPath: quantizedModel))
    let comparison = try DriftComparison(float: float, int8: quantized, backend: backendOption.backend)
    let bar = Mutex(ProgressBar(total: entries.count, label: "compare"))
    let start = Date()
    let report = try comparison.run(entries, threads: threads) { done, agreement in
      bar.withLock { $0.update(done, detail: String(format: "agreement %.2f%%", agreement * 100)) }
    }
    bar.withLock { $0.finish() }

    print(String(format: "%@ on %d images (%.1f s)", float.info.architecture, report.count, Date().timeIntervalSince(start)))
    print(String(format: "  float  top-1 %6.2f%%  top-5 %6.2f%%", report.float.top1 * 100, report.float.top5 * 100))
    print(String(format: "  int8   top-1 %6.2f%%  top-5 %6.2f%%", report.int8.top1 * 100, report.int8.top5 * 100))
    print(String(format: "  drift  top-1 %+6.2f points, top-1 agreement %.2f%%",
                 (report.int8.top1 - report.float.top1) * 100, report.top1_agreement * 100))
    print(report.not_quantized.isEmpty
          ? "  every operator runs in integers"
          : "  NOT quantized (float graph nodes with no int8 node): \(report.not_quantized.joined(separator: ", "))")
    if !report.unmatched.isEmpty {
      print("  int8 tensors with no float counterpart: \(report.unmatched.joined(separator: ", "))")
    }
    print("  worst layers (SQNR dB, cosine):")
    for layer in report.layers.prefix(worst) {
      print(String(format: "    %8.2f  %.6f  %@", layer.sqnr_db, layer.cosine, layer.name))
    }
    if let json { try writeJSON(report, to: json) }
  }
}
