import Foundation
import OctetCore
import OctetFloat
import OctetModels
import OctetTestSupport
import Testing

// The ONNX fixtures of Scripts/make_onnx_fixtures.py, imported and run by Octet's float executor,
// against ONNX Runtime's outputs for the same inputs (goldens.json): every operator the importer
// maps, both padding conventions, the NCHW-to-NHWC flatten, Gemm's alpha/beta/transB, MatMul+Add.

struct ONNXGolden: Decodable {
  var input_nchw_shape: [Int]
  var input_nchw: [Float]
  var output_shape: [Int]
  var output: [Float]
}

struct ONNXGoldenFile: Decodable {
  var models: [String: ONNXGolden]
}

enum ONNXFixtures {
  static func golden(_ name: String) throws -> ONNXGolden {
    let data = try Data(contentsOf: TestData.onnxFixtures.appendingPathComponent("goldens.json"))
    return try #require(try JSONDecoder().decode(ONNXGoldenFile.self, from: data).models[name])
  }

  static func model(_ name: String) throws -> Model {
    try ONNXImporter.load(contentsOf: TestData.onnxFixtures.appendingPathComponent(name + ".onnx"))
  }

  /// NCHW (ONNX) to NHWC (Octet).
  static func nhwc(_ values: [Float], shape s: [Int]) -> Tensor {
    let (n, c, h, w) = (s[0], s[1], s[2], s[3])
    var out = [Float](repeating: 0, count: values.count)
    for b in 0..<n {
      for ch in 0..<c {
        for y in 0..<h {
          for x in 0..<w { out[((b * h + y) * w + x) * c + ch] = values[((b * c + ch) * h + y) * w + x] }
        }
      }
    }
    return Tensor(shape: [n, h, w, c], scalars: out)
  }
}

@Suite struct ONNXImportGoldenTests {
  @Test(arguments: [
    "cnn_opset17", "matmul_opset13", "reshape_opset21", "reducemean_opset18", "onnx_ops_opset17",
  ])
  func matchesONNXRuntime(fixture: String) throws {
    let golden = try ONNXFixtures.golden(fixture)
    let model = try ONNXFixtures.model(fixture)
    let executor = try FloatExecutor(model: model)
    let logits = executor.run(ONNXFixtures.nhwc(golden.input_nchw, shape: golden.input_nchw_shape))
    #expect(logits.shape == golden.output_shape, "\(fixture)")
    let scale = golden.output.map(abs).max() ?? 1
    let worst = zip(logits.scalars, golden.output).map { abs($0 - $1) }.max() ?? .infinity
    #expect(worst <= 1e-5 * (1 + scale), "\(fixture): largest difference from ONNX Runtime \(worst) (scale \(scale))")
  }

  @Test func foldsPadAndMapsClipAndKeepsWeightLayouts() throws {
    let model = try ONNXFixtures.model("cnn_opset17")
    let byName = Dictionary(uniqueKeysWithValues: model.graph.nodes.map { ($0.name, $0) })
    // The Pad [0, 0, 1, 1] on H and W ends up in the depthwise Conv, which reads relu1 directly.
    let dw = try #require(byName["dwconv"])
    #expect(dw.padding == [0, 0, 1, 1] && dw.groups == 8 && dw.inputs == ["relu1"])
    #expect(byName["pad"] == nil)
    #expect(byName["relu6"]?.op == .relu6)
    #expect(byName["same"]?.padding == [0, 0, 1, 1], "SAME_UPPER on 8x8, 3x3 stride 2: the extra row goes below")
    #expect(byName["dilated"]?.dilation == [2, 2])
    #expect(model.weights["conv1.weight"]?.shape == [8, 3, 3, 3])
    #expect(model.weights["fc.weight"]?.shape == [5, 12])
    #expect(model.info.classes == 5 && model.info.inputSize == 16 && model.info.preprocessing.cropSize == 16)
    #expect(model.info.architecture == "onnx:cnn_opset17" && model.info.source == "cnn_opset17.onnx")
  }
}
