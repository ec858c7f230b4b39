import Foundation
import Octet
import OctetReport
import Synchronization

extension CompareCommand {
  /// `--sensitivity`: every layer of `quantized` ranked by `SensitivityAnalysis` on the first
  /// `--sensitivity-images` readable images of `entries` (unreadable ones were reported by the drift
  /// pass and are passed over here), with a progress bar of images done (each image runs every layer).
  func sensitivityRanking(float: Model, quantized: QuantizedModel, entries: [LabeledFolder.Entry]) throws
    -> [LayerSensitivity]
  {
    var inputs: [Tensor] = []
    for entry in entries where inputs.count < sensitivityImages {
      guard let image = try? ImageDecoder.decode(contentsOf: entry.url) else { continue }
      inputs.append(float.info.preprocessing.apply(to: image))
    }
    let bar = Mutex(ProgressBar(total: inputs.count, label: "sensitivity (\(quantized.nodes.count) layers)"))
    defer { bar.withLock { $0.finish() } }
    return try SensitivityAnalysis.rank(
      float: float, int8: quantized, inputs: inputs, threads: threads,
      progress: { done, _ in bar.withLock { $0.update(done, detail: "images") } })
  }

  /// The text lines of the ranking: the `count` most sensitive layers.
  static func sensitivityLines(_ ranking: [LayerSensitivity], count: Int, images: Int) -> [String] {
    guard !ranking.isEmpty else { return [] }
    var lines = [
      "  most sensitive layers, each alone in int8 on \(images) images (mean KL, top-1 agreement, MMACs):"
    ]
    for s in ranking.prefix(count) {
      lines.append(
        String(format: "    %10.6f  %7.2f%%  %8.2f  %@", s.kl, s.agreement * 100, Double(s.macs) / 1e6, s.layer))
    }
    return lines
  }

  /// The worst layers by accumulated SQNR, with the local SQNR beside it.
  static func layerLines(_ layers: [DriftReport.Layer], count: Int, localImages: Int?, images: Int) -> [String] {
    let local =
      (localImages ?? images) < images ? "local SQNR dB on the first \(localImages ?? 0) images" : "local SQNR dB"
    var lines = ["  worst layers (accumulated SQNR dB, \(local), accumulated cosine):"]
    for layer in layers.prefix(count) {
      let local = layer.local_sqnr_db.map { String(format: "%8.2f", $0) } ?? "       -"
      lines.append(String(format: "    %8.2f  %@  %.6f  %@", layer.sqnr_db, local, layer.cosine, layer.name))
    }
    return lines
  }
}
