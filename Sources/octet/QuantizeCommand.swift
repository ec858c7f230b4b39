import ArgumentParser
import Foundation
import Octet
import OctetCalibration
import OctetInt8
import OctetQuantizer

struct QuantizeCommand: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "quantize",
    abstract: "Quantize a float model to int8 with a range table from `octet calibrate`.",
    discussion: """
      BatchNorm is folded, weights become per-channel int8, biases int32, activations per-tensor \
      uint8 with the calibrated ranges (docs/quantization.md). Prints the nodes quantized, anything \
      left in float, and warnings; the int8 model file is written atomically.
      """)

  @Argument(help: "The float model: an Octet model file, or a checkpoint imported on the fly.")
  var model: String

  @Option(help: "The range table (JSON) written by `octet calibrate` for this model.")
  var ranges: String

  @Option(name: .shortAndLong, help: "The int8 model file to write (safetensors).")
  var output: String

  @Option(
    help: """
      Weight bits: 8 ([-127, 127], the default) or 7 ([-63, 63]). 7-bit weights run on AVX2's faster \
      vpmaddubsw kernel (about twice the multiply-adds per cycle on CPUs without VNNI), at some accuracy cost.
      """)
  var weightBits: Int = 8

  func validate() throws {
    guard WeightBits(rawValue: weightBits) != nil else { throw ValidationError("--weight-bits must be 7 or 8") }
    try validateOutputPath(output, option: "-o")
    guard FileManager.default.fileExists(atPath: ranges) else {
      throw ValidationError(
        "--ranges '\(ranges)' does not exist; make one with `octet calibrate MODEL -o RANGES`")
    }
  }

  func run() throws {
    let start = Date()
    let floatModel = try ModelLoader.load(contentsOf: URL(fileURLWithPath: model))
    let table = try RangeTable.read(contentsOf: URL(fileURLWithPath: ranges))
    // A table from another model is caught here, by name, before a tensor of it is found missing.
    guard table.model.architecture == floatModel.info.architecture else {
      throw FileError(
        path: ranges,
        reason: "holds the ranges of \(table.model.architecture), but '\(model)' is \(floatModel.info.architecture); "
          + "calibrate this model with `octet calibrate`")
    }
    let result: QuantizationResult
    do {
      result = try Quantizer.quantize(
        model: floatModel, ranges: table, weightBits: WeightBits(rawValue: weightBits)!)
    } catch let error as QuantizerError {
      guard case .missingRange = error else { throw error }
      throw FileError(path: ranges, reason: error.description)
    }
    // Planning checks every shape before anything is written.
    _ = try Int8ReferenceExecutor(model: result.model)
    try QuantizedModelFile.write(result.model, to: URL(fileURLWithPath: output))

    let report = result.report
    let byOp = report.nodesByOperator.sorted { $0.key < $1.key }.map { "\($0.value) \($0.key)" }.joined(
      separator: ", ")
    print(
      "\(floatModel.info.architecture): \(report.quantizedNodes) int8 nodes (\(byOp)) for \(report.floatNodesCovered) float nodes"
    )
    print(
      report.leftInFloat.isEmpty
        ? "left in float: none" : "left in float: \(report.leftInFloat.joined(separator: ", "))")
    if report.warnings.isEmpty {
      print("warnings: none")
    } else {
      print("warnings (\(report.warnings.count)):")
      for w in report.warnings { print("  \(w)") }
    }
    print("wrote \(output) in \(String(format: "%.2f", Date().timeIntervalSince(start))) s")
  }
}
