import ArgumentParser
import Foundation
import Octet

struct ImportCommand: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "import",
    abstract:
      "Import a PyTorch checkpoint (zip or legacy), a safetensors state_dict or a float ONNX model as an Octet model file.",
    discussion: """
      Every tensor is checked against the architecture; missing, extra or mis-shaped tensors are named. An ONNX \
      model (opsets 13-21) is mapped operator by operator; an operator Octet cannot run yet is named with its \
      node and opset, and nothing is written. ONNX does not carry the preprocessing: --resize, --crop, --mean \
      and --std give it (torchvision's ImageNet defaults), and it is stored in the Octet model.
      """
  )

  @Argument(help: "The checkpoint: .pth/.pt (zip or legacy pickle), .safetensors, or .onnx.")
  var checkpoint: String

  @Option(name: .shortAndLong, help: "The Octet model file to write (safetensors).")
  var output: String

  @Option(
    help: ArgumentHelp(
      "The architecture; detected from tensor names and shapes when omitted.",
      discussion:
        "resnet18, resnet34, resnet50, resnet101, resnet152, resnext50_32x4d, resnext101_32x8d, resnext101_64x4d, wide_resnet50_2, wide_resnet101_2, resnet (any other torchvision ResNet layout), mobilenet_v2, efficientnet-lite."
    ))
  var arch: Architecture?

  @Option(help: "Input resolution, for an EfficientNet-Lite variant outside Lite0-Lite4.")
  var resolution: Int?

  @Option(help: "ONNX only: resize the shorter side to this many pixels (default 256, or crop * 256/224).")
  var resize: Int?

  @Option(help: "ONNX only: center crop (default: the model's fixed input size, else 224).")
  var crop: Int?

  @Option(help: "ONNX only: per-channel RGB mean, on [0, 1] pixels (default 0.485,0.456,0.406).")
  var mean: String?

  @Option(help: "ONNX only: per-channel RGB std (default 0.229,0.224,0.225).")
  var std: String?

  var isONNX: Bool { ONNXImporter.looksLikeONNX(URL(fileURLWithPath: checkpoint)) }

  static func triple(_ text: String, option: String, positive: Bool) throws -> [Float] {
    let values = text.split(separator: ",", omittingEmptySubsequences: false).map {
      Float($0.trimmingCharacters(in: .whitespaces))
    }
    guard values.count == 3, let parsed = values as? [Float], parsed.allSatisfy(\.isFinite),
      !positive || parsed.allSatisfy({ $0 > 0 })
    else {
      throw ValidationError(
        "\(option) '\(text)' is not three \(positive ? "positive " : "")numbers separated by commas (R,G,B)")
    }
    return parsed
  }

  /// The ONNX model's preprocessing flags (torchvision's ImageNet defaults where not given).
  func onnxOptions() throws -> ONNXInputOptions {
    ONNXInputOptions(
      resize: resize, crop: crop, mean: try mean.map { try Self.triple($0, option: "--mean", positive: false) },
      std: try std.map { try Self.triple($0, option: "--std", positive: true) })
  }

  func validate() throws {
    try validateOutputPath(output, option: "-o")
    try ModelArgument.expectCheckpoint(checkpoint)
    if let resolution, !(32...2048).contains(resolution) {
      throw ValidationError("--resolution \(resolution) is outside 32...2048")
    }
    let given = [("--resize", resize != nil), ("--crop", crop != nil), ("--mean", mean != nil), ("--std", std != nil)]
      .filter(\.1).map(\.0)
    if !given.isEmpty, !isONNX {
      throw ValidationError(
        "\(given.joined(separator: ", ")) apply to ONNX models only; a checkpoint's architecture fixes its preprocessing"
      )
    }
    if isONNX, arch != nil || resolution != nil {
      throw ValidationError("--arch and --resolution apply to checkpoints; an ONNX model carries its graph")
    }
    if let crop, !(16...4096).contains(crop) { throw ValidationError("--crop \(crop) is outside 16...4096") }
    if let resize, !(16...8192).contains(resize) { throw ValidationError("--resize \(resize) is outside 16...8192") }
    if let resize, let crop, resize < crop {
      throw ValidationError("--resize \(resize) is smaller than --crop \(crop)")
    }
    _ = try onnxOptions()
  }

  func run() throws {
    let start = Date()
    let url = URL(fileURLWithPath: checkpoint)
    let model = try ModelLoader.load(
      contentsOf: url, architecture: arch, resolution: resolution, onnx: try onnxOptions())
    // Building the plan checks every layer's shapes before anything is written.
    _ = try FloatExecutor(model: model)
    try ModelFile.write(model, to: URL(fileURLWithPath: output))
    let parameters = model.weights.names.reduce(0) { $0 + (model.weights[$1]?.elementCount ?? 0) }
    print(
      "\(model.info.architecture): \(model.weights.count) tensors, \(parameters) parameters, \(model.graph.nodes.count) nodes, input \(model.info.inputSize)x\(model.info.inputSize)"
    )
    print("wrote \(output) in \(String(format: "%.2f", Date().timeIntervalSince(start))) s")
  }
}
