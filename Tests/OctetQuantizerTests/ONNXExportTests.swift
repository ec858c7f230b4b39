import Foundation
import OctetCalibration
import OctetCore
import OctetInt8
import OctetQuantizer
import OctetTestSupport
import Testing

@testable import OctetModels

/// `ONNXExporter` on the small network of Scripts/int8_reference.py (stem with ReLU6, depthwise,
/// pointwise, shortcut, add + ReLU, max pool, global average pool, flatten, classifier): the QDQ
/// graph's structure and parameters against the int8 model, and ONNX Runtime against Octet's
/// integer reference.
@Suite struct ONNXExportTests {
  static func quantized(_ options: QuantizationOptions = QuantizationOptions()) throws -> QuantizedModel {
    let golden = try SmallNetGolden.load()
    return try Quantizer.quantize(model: golden.model, options: options, range: golden.range).model
  }

  static func exported(_ model: QuantizedModel) throws -> Onnx_ModelProto {
    try Onnx_ModelProto(serializedBytes: ONNXExporter.export(model))
  }

  @Test func graphStructureAndParametersAreTheModels() throws {
    let model = try Self.quantized()
    let proto = try Self.exported(model)
    #expect(proto.opsetImport.map(\.version) == [ONNXExporter.opset])
    let graph = proto.graph
    let ops = Dictionary(graph.node.map { ($0.opType, 1) }, uniquingKeysWith: +)
    // One QuantizeLinear per uint8 tensor (input, 4 convs, add, max pool, average pool); one
    // DequantizeLinear per read of one (4 convs, 2 add inputs, 2 pools, the classifier) and per
    // weight and bias tensor (5 layers).
    #expect(ops["QuantizeLinear"] == 8)
    #expect(ops["DequantizeLinear"] == 9 + 10)
    #expect(ops["Conv"] == 4 && ops["Add"] == 1 && ops["MaxPool"] == 1 && ops["GlobalAveragePool"] == 1)
    #expect(ops["Gemm"] == 1 && ops["Transpose"] == 1 && ops["Flatten"] == 1)
    #expect(graph.input.map(\.name) == [Graph.inputName] && graph.output.map(\.name) == [model.output])
    #expect(graph.input[0].type.tensorType.shape.dim.map(\.dimValue) == [0, 3, 12, 12])
    #expect(graph.input[0].type.tensorType.shape.dim[0].dimParam == "N")

    let initializers = Dictionary(uniqueKeysWithValues: graph.initializer.map { ($0.name, $0) })
    func floats(_ name: String) throws -> [Float] {
      let t = try #require(initializers[name], "no initializer \(name)")
      #expect(t.dataType == Int32(Onnx_TensorProto.DataType.float.rawValue), "\(name)")
      return t.rawData.withUnsafeBytes { Array($0.bindMemory(to: Float.self)) }
    }
    func integers<T: FixedWidthInteger>(_ name: String, _ type: Onnx_TensorProto.DataType, as: T.Type) throws -> [T] {
      let t = try #require(initializers[name], "no initializer \(name)")
      #expect(t.dataType == Int32(type.rawValue), "\(name) has ONNX type \(t.dataType)")
      return t.rawData.withUnsafeBytes { Array($0.bindMemory(to: T.self)) }
    }
    // Every uint8 tensor's QuantizeLinear carries the node's output scale and zero point.
    for node in model.nodes where node.op != .linear && node.op != .flatten {
      let tensor = ONNXExporter.tensorName(of: node.name)
      let q = try #require(graph.node.first { $0.opType == "QuantizeLinear" && $0.output == [tensor] }, "\(tensor)")
      #expect(try floats(q.input[1]) == [node.output.scale], "\(node.name)")
      #expect(try integers(q.input[2], .uint8, as: UInt8.self) == [UInt8(node.output.zeroPoint)], "\(node.name)")
    }
    // Weights: int8 OIHW per output channel; biases: int32 b_q' + z_in · Σ w_q at s_in · s_w[c].
    for node in model.nodes where node.op == .conv2d || node.op == .linear {
      let o = node.outChannels!
      let weightTensor = try #require(initializers["\(node.name).weight"])
      let w = try integers("\(node.name).weight", .int8, as: Int8.self)
      let perChannel = node.weightsPerChannel
      if node.op == .conv2d {
        let (kh, kw, i) = (node.kernel![0], node.kernel![1], node.inChannels! / (node.groups ?? 1))
        #expect(weightTensor.dims == [o, i, kh, kw].map(Int64.init), "\(node.name)")
        for c in 0..<o {
          for y in 0..<kh {
            for x in 0..<kw {
              for ch in 0..<i {
                let ohwi = node.weights[c * perChannel + (y * kw + x) * i + ch]
                #expect(w[c * perChannel + (ch * kh + y) * kw + x] == ohwi, "\(node.name)[\(c), \(ch), \(y), \(x)]")
              }
            }
          }
        }
      } else {
        #expect(weightTensor.dims == [Int64(o), Int64(perChannel)] && w == node.weights, "\(node.name)")
      }
      #expect(try floats("\(node.name).weight_scale") == node.weightScales, "\(node.name)")
      #expect(try integers("\(node.name).weight_zero_point", .int8, as: Int8.self) == [Int8](repeating: 0, count: o))
      let input = node.inputQuantization![0]
      let bias = try integers("\(node.name).bias", .int32, as: Int32.self)
      for c in 0..<o {
        let sum = node.weights[c * perChannel..<(c + 1) * perChannel].reduce(0) { $0 + Int($1) }
        #expect(Int(bias[c]) == Int(node.bias[c]) + Int(input.zeroPoint) * sum, "\(node.name) channel \(c)")
      }
      #expect(try floats("\(node.name).bias_scale") == node.weightScales.map { input.scale * $0 }, "\(node.name)")
      let axis = graph.node.first { $0.output == ["\(node.name).weight.dequantize"] }?.attribute.first?.i
      #expect(axis == 0, "\(node.name): per-channel axis")
    }
    // The preprocessing ONNX does not carry is in the metadata.
    let meta = Dictionary(uniqueKeysWithValues: proto.metadataProps.map { ($0.key, $0.value) })
    let pre = try #require(meta["octet.preprocessing"])
    let decoded = try #require(try JSONSerialization.jsonObject(with: Data(pre.utf8)) as? [String: Any])
    #expect(decoded["resize_shorter"] as? Int == model.info.preprocessing.resizeShorter)
    #expect(decoded["crop"] as? Int == model.info.preprocessing.cropSize)
    #expect((decoded["mean"] as? [Double])?.map(Float.init) == model.info.preprocessing.mean)
  }

  @Test func clampsNarrowerThanTheUInt8RangeBecomeClipOrRelu() throws {
    var model = try Self.quantized()
    // A convolution without activation whose output zero point is not 0 (pw.bn).
    let index = try #require(model.nodes.firstIndex { $0.op == .conv2d && $0.output.zeroPoint > 0 })
    let z = Int(model.nodes[index].output.zeroPoint)
    // ReLU with a non-zero output zero point: [z, 255] is a Relu; anything narrower a Clip.
    for (clamp, op) in [([z, 255], "Relu"), ([z, min(255, z + 10)], "Clip"), ([0, 255], nil)] {
      model.nodes[index].clamp = clamp
      let graph = try Self.exported(model).graph
      let conv = "\(model.nodes[index].name).conv"
      let consumer = try #require(graph.node.first { $0.input.first == conv })
      #expect(consumer.opType == (op ?? "QuantizeLinear"), "clamp \(clamp)")
      if op == "Clip" {
        let t = try #require(graph.initializer.first { $0.name == consumer.input[2] })
        let hi = t.rawData.withUnsafeBytes { $0.load(as: Float.self) }
        let q = model.nodes[index].output
        #expect(hi == q.scale * Float(clamp[1] - z))
      }
    }
  }

  @Test func sixteenBitLayersAreRefused() throws {
    var a16 = QuantizationOptions()
    a16.a16Layers = ["pw.bn"]
    let wide = try Self.quantized(a16)
    #expect(wide.nodes.contains { $0.isWide })
    #expect {
      _ = try ONNXExporter.export(wide)
    } throws: { ($0 as? ONNXExportError)?.message.contains("is a 16-bit layer") == true }
  }

  /// The operators of docs/quantization.md §20-§24 (lookup tables, Mul, Concat, the k x k average
  /// pool, a fully-connected layer before the classifier) are refused in one line naming the node,
  /// never written as a wrong graph.
  /// ONNX fixture `name` imported, min/max calibrated on `images` seeded inputs in [-2, 2] and
  /// quantized plainly; the inputs and the int8 model.
  static func quantizedFixture(_ name: String, seed: UInt64, images: Int) throws -> ([Tensor], QuantizedModel) {
    let float = try ONNXImporter.load(contentsOf: TestData.onnxFixtures.appendingPathComponent(name + ".onnx"))
    let s = float.info.inputSize
    var generator = SeededGenerator(seed: seed)
    let inputs = (0..<images).map { _ in Tensor(shape: [1, s, s, 3], scalars: generator.floats(s * s * 3, in: -2...2)) }
    let table = try Calibrator(model: float, method: .minmax).calibrate(inputs: inputs)
    let model = try Quantizer.quantize(
      model: float, ranges: table, options: QuantizationOptions(), inputs: nil, mode: "ranges"
    ).model
    return (inputs, model)
  }

  @Test func onnxOperatorsNotExportedYetAreRefused() throws {
    let (_, model) = try Self.quantizedFixture("onnx_ops_opset17", seed: 20, images: 4)
    let first = try #require(
      model.nodes.first { [.lookup, .mul, .concat, .averagePool].contains($0.op) }, "the fixture has the new operators")
    #expect {
      _ = try ONNXExporter.export(model)
    } throws: { error in
      let message = (error as? ONNXExportError)?.message ?? ""
      return message.contains("node '\(first.name)'") && message.contains("not written by QDQ export")
    }
  }

  // MARK: ONNX Runtime

  static let python = ProcessInfo.processInfo.environment["PYTHON"] ?? "python3"
  static let hasOnnxRuntime: Bool = {
    (try? runProcess(["/usr/bin/env", python, "-c", "import onnxruntime, onnx, PIL"]))?.status == 0
  }()
  static let script = TestData.root.appendingPathComponent("Scripts/check_qdq_export.py")

  static func runProcess(_ arguments: [String]) throws -> (status: Int32, stderr: String) {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: arguments[0])
    process.arguments = Array(arguments.dropFirst())
    let err = Pipe()
    process.standardError = err
    process.standardOutput = FileHandle.nullDevice
    try process.run()
    let data = err.fileHandleForReading.readDataToEndOfFile()
    process.waitUntilExit()
    return (process.terminationStatus, String(decoding: data, as: UTF8.self))
  }

  struct ORTResult: Decodable {
    struct Values: Decodable {
      var shape: [Int]
      var data: [Double]
    }
    var outputs: [String: Values]
    var optimized_ops: [String: Int]
  }

  /// Runs the exported model in ONNX Runtime on `inputs` (NHWC, Octet's layout), returning every
  /// uint8 tensor (NHWC again) and the logits.
  static func runORT(_ model: QuantizedModel, _ inputs: [Tensor]) throws -> ORTResult {
    let dir = FileManager.default.temporaryDirectory.appendingPathComponent("octet-qdq-\(UUID().uuidString)")
    try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(at: dir) }
    let onnx = dir.appendingPathComponent("m.onnx")
    try ONNXExporter.write(model, to: onnx)
    let s = model.info.inputSize
    var nchw: [Float] = []
    for input in inputs {
      for c in 0..<3 {
        for y in 0..<s { for x in 0..<s { nchw.append(input.scalars[(y * s + x) * 3 + c]) } }
      }
    }
    let tensors = model.nodes.filter { $0.op != .linear && $0.op != .flatten }.map {
      ONNXExporter.tensorName(of: $0.name)
    }
    let request: [String: Any] = [
      "input": ["shape": [inputs.count, 3, s, s], "data": nchw.map(Double.init)], "tensors": tensors,
    ]
    let requestURL = dir.appendingPathComponent("request.json")
    try JSONSerialization.data(withJSONObject: request).write(to: requestURL)
    let out = dir.appendingPathComponent("out.json")
    let run = try runProcess([
      "/usr/bin/env", python, script.path, "run", onnx.path, "--request", requestURL.path, "--json", out.path,
    ])
    try #require(run.status == 0, "check_qdq_export.py run failed: \(run.stderr)")
    return try JSONDecoder().decode(ORTResult.self, from: Data(contentsOf: out))
  }

  /// Seeded inputs in the normalized range of ImageNet images, `[1, 12, 12, 3]`.
  static func inputs(count: Int) -> [Tensor] {
    var generator = SeededGenerator(seed: 2026)
    return (0..<count).map { _ in Tensor(shape: [1, 12, 12, 3], scalars: generator.floats(432, in: -2...2.5)) }
  }

  /// How far ONNX Runtime's codes are from Octet's reference: per tensor, the largest difference
  /// and the fraction of codes that differ at all; and the logits' largest difference in units of
  /// Octet's logit scale.
  static func differences(_ model: QuantizedModel, _ inputs: [Tensor], _ ort: ORTResult) throws -> (
    codes: [String: (max: Int, differing: Double)], logitUnits: Double
  ) {
    let executor = try Int8ReferenceExecutor(model: model)
    var octet: [String: [Int]] = [:]
    var logits: [Double] = []
    var scale: Float = 0
    for input in inputs {
      let result = executor.run(input) { name, tensor in octet[name, default: []] += tensor.values.map(Int.init) }
      logits += result.values.map(Double.init)
      scale = result.scale
    }
    var codes: [String: (max: Int, differing: Double)] = [:]
    for node in model.nodes where node.op != .linear && node.op != .flatten {
      let values = try #require(ort.outputs[ONNXExporter.tensorName(of: node.name)], "ORT lacks \(node.name)")
      let (n, c) = (values.shape[0], values.shape[1])
      let hw = values.shape.dropFirst(2).reduce(1, *)
      var nhwc = [Int](repeating: 0, count: values.data.count)
      for b in 0..<n {
        for ch in 0..<c { for p in 0..<hw { nhwc[(b * hw + p) * c + ch] = Int(values.data[(b * c + ch) * hw + p]) } }
      }
      // An exact-input model's pixels are not reported to observers (docs/quantization.md §12).
      if node.pixelInput != nil, octet[node.name] == nil { continue }
      let reference = try #require(octet[node.name], "Octet's observer did not report \(node.name)")
      try #require(reference.count == nhwc.count, "\(node.name): \(reference.count) values vs ORT's \(nhwc.count)")
      let diffs = zip(reference, nhwc).map { abs($0 - $1) }
      codes[node.name] = (diffs.max() ?? 0, Double(diffs.filter { $0 != 0 }.count) / Double(diffs.count))
    }
    let ortLogits = try #require(ort.outputs[model.output]).data
    let logitUnits = zip(ortLogits, logits).map { abs($0 - $1 * Double(scale)) / Double(scale) }.max() ?? 0
    return (codes, logitUnits)
  }

  /// The small network with per-channel clamps (docs/quantization.md §7.1) on its ReLU6 stem:
  /// channel c's upper bound lowered by c + 1 codes, as cross-layer equalization would.
  static func withChannelClamps() throws -> QuantizedModel {
    var model = try quantized()
    let i = try #require(model.nodes.firstIndex { $0.name == "stem.relu6" })
    let clamp = try #require(model.nodes[i].clamp)
    let o = model.nodes[i].outChannels!
    model.nodes[i].channelClampLo = [UInt8](repeating: UInt8(clamp[0]), count: o)
    model.nodes[i].channelClampHi = (0..<o).map { UInt8(max(clamp[0], clamp[1] - $0 - 1)) }
    try model.validate()
    return model
  }

  /// ONNX Runtime runs the export with integer kernels (QLinearConv, …) and gives Octet's codes up
  /// to its different requantization rounding (float, ties to even, against Octet's fixed point,
  /// ties up): measured on 16 seeded inputs with ORT 1.32 on AVX-512 VNNI (see the comment at
  /// the bounds), and a per-channel clamp is honoured too (Max/Min, which ORT runs in float).
  @Test(
    .enabled(
      if: hasOnnxRuntime, "needs python3 with onnxruntime, onnx and pillow (pip install -r Scripts/requirements.txt)"),
    arguments: [false, true])
  func onnxRuntimeAgreesWithTheIntegerReference(channelClamps: Bool) throws {
    let model = channelClamps ? try Self.withChannelClamps() : try Self.quantized()
    let inputs = Self.inputs(count: 16)
    let ort = try Self.runORT(model, inputs)
    // ORT fuses a convolution whose clamp is the QuantizeLinear's own saturation; a Clip to a
    // narrower range (this network's ReLU6 range is [0, 7]), a Relu above a non-zero zero point or
    // a per-channel clamp stays a float Conv between DequantizeLinear and QuantizeLinear.
    let fusable = model.nodes.filter { $0.op == .conv2d && $0.clamp == [0, 255] && $0.channelClampHi.isEmpty }
    #expect(fusable.count >= 2)
    #expect(
      ort.optimized_ops["QLinearConv"] == fusable.count, "ORT did not fuse the QDQ convolutions: \(ort.optimized_ops)")
    let d = try Self.differences(model, inputs, ort)
    // Measured (ORT 1.32, AVX-512 VNNI, these 16 inputs): 1 code on 0.02 % of block.relu's values,
    // every other tensor identical, logits within 0.4998 units. A requantization that rounds a
    // near-tie the other way moves a code by 1; bounds: 1 code on at most 1 % of a tensor's values.
    for (name, diff) in d.codes.sorted(by: { $0.key < $1.key }) {
      #expect(
        diff.max <= 1 && diff.differing <= 0.01,
        "\(name): ORT differs by up to \(diff.max) codes on \(diff.differing * 100) % of values")
    }
    // Octet rounds its int32 logits to whole units of its logit scale (§11), ORT keeps the float
    // s_in · s_w[c] · acc: with the classifier's input identical, within half a unit.
    let pooled = try #require(d.codes["avgpool"])
    if pooled.max == 0 {
      #expect(d.logitUnits <= 0.5 + 1e-3, "logits differ by \(d.logitUnits) units of the logit scale")
    }
  }

  /// Exact input (docs/quantization.md §12, §25): the pixels come back from the normalized input, and
  /// the stem, a float Conv on p − 255 · mean, matches Octet's border-class biases at every position.
  @Test(
    .enabled(
      if: hasOnnxRuntime, "needs python3 with onnxruntime, onnx and pillow (pip install -r Scripts/requirements.txt)"))
  func exactInputAgreesWithTheIntegerReference() throws {
    var options = QuantizationOptions()
    options.exactInput = true
    let model = try Self.quantized(options)
    let pixels = try #require(model.nodes[0].pixelInput)
    // Normalized uint8 images, as Preprocessing makes them (in Float).
    var generator = SeededGenerator(seed: 77)
    let inputs = (0..<16).map { _ in
      Tensor(
        shape: [1, 12, 12, 3],
        scalars: (0..<432).map { i in
          let p = Float(Int.random(in: 0...255, using: &generator))
          return (p / 255 - pixels.mean[i % 3]) / pixels.std[i % 3]
        })
    }
    let ort = try Self.runORT(model, inputs)
    let d = try Self.differences(model, inputs, ort)
    // Measured: the same bound as the plain model's (see above).
    for (name, diff) in d.codes.sorted(by: { $0.key < $1.key }) {
      #expect(
        diff.max <= 1 && diff.differing <= 0.01,
        "\(name): ORT differs by up to \(diff.max) codes on \(diff.differing * 100) % of values")
    }
    // The stem's output is every position's border class: identical codes there.
    #expect(d.codes["stem.relu6"]?.max == 0, "\(d.codes)")
  }

  /// A classifier that reads a flattened feature map (ONNX fixture reshape_opset21: Conv, Relu, Conv,
  /// Reshape to [N, -1], Gemm): Octet flattens NHWC, so the export transposes the uint8 map to NHWC
  /// before its Flatten. Calibrated (min/max) and run on seeded inputs.
  @Test(
    .enabled(
      if: hasOnnxRuntime, "needs python3 with onnxruntime, onnx and pillow (pip install -r Scripts/requirements.txt)"))
  func aFlattenedFeatureMapKeepsOctetsOrder() throws {
    let (inputs, model) = try Self.quantizedFixture("reshape_opset21", seed: 15, images: 8)
    let flatten = try #require(model.nodes.first { $0.op == .flatten })
    let ort = try Self.runORT(model, inputs)
    let d = try Self.differences(model, inputs, ort)
    for (name, diff) in d.codes.sorted(by: { $0.key < $1.key }) {
      #expect(diff.max <= 1 && diff.differing <= 0.01, "\(name): up to \(diff.max) codes on \(diff.differing * 100) %")
    }
    // The flattened map is the classifier's input: identical codes give logits within half a unit;
    // flattened in the wrong order they would be far off.
    if d.codes[flatten.inputs[0]]?.max == 0 {
      #expect(d.logitUnits <= 0.5 + 1e-3, "logits differ by \(d.logitUnits) units")
    } else {
      Issue.record("the flattened map differs; logits not checked: \(d.codes)")
    }
  }

  /// The check above fails for a wrong export: the input zero point off by 3.
  @Test(
    .enabled(
      if: hasOnnxRuntime, "needs python3 with onnxruntime, onnx and pillow (pip install -r Scripts/requirements.txt)"))
  func aWrongZeroPointIsCaught() throws {
    let model = try Self.quantized()
    var broken = model
    broken.nodes[0].output.zeroPoint += 3
    for i in broken.nodes.indices where broken.nodes[i].inputs.contains(Graph.inputName) {
      broken.nodes[i].inputQuantization?[0].zeroPoint += 3
    }
    let inputs = Self.inputs(count: 4)
    let d = try Self.differences(model, inputs, try Self.runORT(broken, inputs))
    #expect(d.codes.values.contains { $0.max > 1 || $0.differing > 0.01 })
  }
}
