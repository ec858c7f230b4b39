import ArgumentParser
import Foundation
import Octet

struct ExportCommand: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "export",
    abstract: "Write an int8 model as a QDQ ONNX model (QuantizeLinear/DequantizeLinear, opset 13) for ONNX Runtime.",
    discussion: """
      The graph takes the float, normalized image [N, 3, S, S] (NCHW) and returns float logits. The resize, \
      crop and normalization stay outside ONNX: they are in the model's metadata_props ('octet.preprocessing'). \
      Weights are int8 per output channel, biases int32 at s_in·s_w, activations uint8 with the model's scales \
      and zero points. ONNX Runtime requantizes in float (round half to even), Octet in fixed point, so the \
      outputs are close but not bit-exact. 16-bit layers are refused, and nothing is written then.
      """
  )

  @Argument(help: "An Octet int8 model file (`octet quantize`).")
  var model: String

  @Option(name: .shortAndLong, help: "The ONNX file to write.")
  var output: String

  func validate() throws {
    try validateOutputPath(output, option: "-o")
    let url = URL(fileURLWithPath: model)
    switch ModelFileKind.of(url) {
    case nil:
      throw ValidationError("export: <model> '\(model)': no such file")
    case .some(.int8):
      break
    case .some(let kind):
      throw ValidationError(
        "export: <model> '\(model)' is \(kind.phrase), but export writes int8 models as QDQ ONNX: quantize it first "
          + "(`octet quantize \(model) --images IMAGES -o INT8_MODEL`) and export that")
    }
  }

  func run() throws {
    let start = Date()
    let int8 = try QuantizedModelFile.read(contentsOf: URL(fileURLWithPath: model))
    do {
      try ONNXExporter.write(int8, to: URL(fileURLWithPath: output))
    } catch let error as ONNXExportError {
      throw FileError(path: model, reason: error.description)
    }
    let layers = int8.nodes.filter { $0.op == .conv2d || $0.op == .linear }.count
    print(
      "\(int8.info.architecture): \(int8.nodes.count) int8 nodes (\(layers) convolutions and linear layers) as QDQ ONNX, opset \(ONNXExporter.opset)"
    )
    print("wrote \(output) in \(String(format: "%.2f", Date().timeIntervalSince(start))) s")
  }
}
