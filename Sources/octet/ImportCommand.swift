import ArgumentParser
import Foundation
import Octet

struct ImportCommand: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "import",
    abstract: "Import a PyTorch checkpoint (zip or legacy) or safetensors state_dict as an Octet model file.",
    discussion: "Every tensor is checked against the architecture; missing, extra or mis-shaped tensors are named."
  )

  @Argument(help: "The checkpoint: .pth/.pt (zip or legacy pickle) or .safetensors.")
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

  func validate() throws {
    try validateOutputPath(output, option: "-o")
    try ModelArgument.expectCheckpoint(checkpoint)
    if let resolution, !(32...2048).contains(resolution) {
      throw ValidationError("--resolution \(resolution) is outside 32...2048")
    }
  }

  func run() throws {
    let start = Date()
    let model = try ModelLoader.load(
      contentsOf: URL(fileURLWithPath: checkpoint), architecture: arch, resolution: resolution)
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
