import Foundation
import OctetCore
import OctetInt8
import OctetModels
import Testing

@testable import OctetQuantizer

/// AdaRound (docs/quantization.md §18): learned rounding lowers a layer's output error, keeps every
/// weight on floor or ceiling of w/s, re-folds the bias, and is deterministic.
@Suite struct AdaRoundTests {
  /// Random network inputs for the small golden network, `[1, 12, 12, 3]` each.
  static func inputs(_ model: Model, count: Int, seed: UInt64) -> [Tensor] {
    var g = SeededGenerator(seed: seed)
    let s = model.info.inputSize
    return (0..<count).map { _ in Tensor(shape: [1, s, s, 3], scalars: g.floats(s * s * 3, in: -2...2)) }
  }

  static func refine(
    _ model: Model, _ quantized: QuantizedModel, images: [Tensor], inputs: AdaRoundParameters.Inputs = .quantized,
    iterations: Int = 300
  ) throws -> (model: QuantizedModel, layers: [AdaRoundLayerResult]) {
    var p = AdaRoundParameters()
    p.inputs = inputs
    p.iterations = iterations
    p.batchSize = 64
    return try AdaRound.refine(
      float: model, quantized: quantized, weightBits: .eight, imageCount: images.count, image: { images[$0] },
      parameters: p)
  }

  /// A 3x3 convolution (3 → 2 channels, no padding) whose weights all sit 0.4 of a step above an
  /// integer (one at 127 steps, which sets the scale), on inputs in [0.5, 1.5]: round-to-nearest
  /// rounds all 26 others down, so the output is off by about 26 · 0.4 · 0.1 · E[x] ≈ −1 everywhere,
  /// while rounding about 10 of them up instead cancels most of it.
  static func builtCase() throws -> (model: Model, quantized: QuantizedModel, images: [Tensor]) {
    let json = """
      {"nodes": [
        {"name": "conv", "op": "conv2d", "inputs": ["input"], "weight": "conv.weight", "bias": "conv.bias",
         "kernel": [3, 3], "stride": [1, 1], "dilation": [1, 1], "paddingMode": "explicit", "groups": 1,
         "padding": [0, 0, 0, 0]},
        {"name": "avgpool", "op": "global_average_pool", "inputs": ["conv"]},
        {"name": "flatten", "op": "flatten", "inputs": ["avgpool"]},
        {"name": "fc", "op": "linear", "inputs": ["flatten"], "weight": "fc.weight", "bias": "fc.bias"}],
       "output": "fc"}
      """
    let graph = try JSONDecoder().decode(Graph.self, from: Data(json.utf8))
    let step: Float = 0.1
    var w = [Float](repeating: 0, count: 2 * 27)
    for c in 0..<2 {
      for k in 0..<27 { w[c * 27 + k] = k == 0 ? 127 * step : step * (Float((k * 7 + c * 3) % 11) - 5 + 0.4) }
    }
    var weights = TensorDictionary()
    weights["conv.weight"] = HostTensor(shape: [2, 3, 3, 3], float32: w)
    weights["conv.bias"] = HostTensor(shape: [2], float32: [0.05, -0.05])
    weights["fc.weight"] = HostTensor(shape: [2, 2], float32: [1, 0, 0, 1])
    weights["fc.bias"] = HostTensor(shape: [2], float32: [0, 0])
    let info = ModelInfo(
      architecture: "adaround-case", inputSize: 5, classes: 2, preprocessing: .imagenet, source: "test")
    let model = Model(info: info, graph: graph, weights: weights)
    let ranges: [String: (lo: Float, hi: Float)] = [
      "input": (-1, 2), "conv": (-40, 60), "avgpool": (-40, 60), "fc": (-40, 60),
    ]
    let quantized = try Quantizer.quantize(model: model, range: { ranges[$0] }).model
    var g = SeededGenerator(seed: testSeed(10))
    let images = (0..<16).map { _ in Tensor(shape: [1, 5, 5, 3], scalars: g.floats(75, in: 0.5...1.5)) }
    return (model, quantized, images)
  }

  /// The mean over the 3x3 patches of fresh inputs in [0.5, 1.5] of Σ_c (Σ_k s_c·q_ck·x_k − Σ_k w_ck·x_k)²,
  /// computed here from the model's int8 weights ([O, kh, kw, I]) and the float ones (OIHW).
  static func outputError(_ node: QuantizedNode, _ w: [Float]) -> Double {
    var g = SeededGenerator(seed: 99)
    var total = 0.0
    let patches = 400
    for _ in 0..<patches {
      let x = g.floats(27, in: 0.5...1.5)  // [ky, kx, i]
      for c in 0..<2 {
        var e = 0.0
        for ky in 0..<3 {
          for kx in 0..<3 {
            for i in 0..<3 {
              let xv = Double(x[(ky * 3 + kx) * 3 + i])
              e += Double(node.weightScales[c]) * Double(node.weights[((c * 3 + ky) * 3 + kx) * 3 + i]) * xv
              e -= Double(w[((c * 3 + i) * 3 + ky) * 3 + kx]) * xv
            }
          }
        }
        total += e * e
      }
    }
    return total / Double(patches)
  }

  @Test(arguments: AdaRoundParameters.Inputs.allCases)
  func lowersTheErrorOnACaseBuiltForIt(inputs: AdaRoundParameters.Inputs) throws {
    let (model, quantized, images) = try Self.builtCase()
    let (refined, layers) = try Self.refine(model, quantized, images: images, inputs: inputs, iterations: 400)
    let conv = try #require(layers.first { $0.name == "conv" })
    #expect(conv.skipped == nil)
    #expect(conv.changedWeights > 0)
    #expect(conv.lossAdaRound < 0.25 * conv.lossNearest, "\(conv)")
    // Independently of the reported losses: the weights written into the model reconstruct the
    // float output on fresh inputs better than round-to-nearest's (which is off by about 1).
    let w = model.weights["conv.weight"]!.floats()
    let e0 = Self.outputError(try #require(quantized.node(named: "conv")), w)
    let e1 = Self.outputError(try #require(refined.node(named: "conv")), w)
    #expect(e0 > 1)
    #expect(e1 < 0.25 * e0, "\(e1) vs nearest \(e0)")
  }

  @Test func neverWorseThanNearestOnItsSamplesAndWeightsStayOnTheGrid() throws {
    let golden = try SmallNetGolden.load()
    let model = golden.model
    let quantized = try Quantizer.quantize(model: model, range: golden.range).model
    let images = Self.inputs(model, count: 12, seed: testSeed(11))
    let (refined, layers) = try Self.refine(model, quantized, images: images)
    #expect(layers.count == 5)
    for r in layers {
      #expect(r.skipped == nil, "\(r)")
      #expect(r.lossAdaRound <= r.lossNearest, "\(r)")
    }
    #expect(layers.contains { $0.refined && $0.lossAdaRound < $0.lossNearest })
    // Every weight is floor(w/s) or floor(w/s) + 1 of the float (folded) weight, within ±127.
    let plan = try LayerPlan(model: model)
    var changed = 0
    for (index, node) in refined.nodes.enumerated() where node.op == .conv2d || node.op == .linear {
      let layer = try #require(plan.layers.first { $0.name == node.name })
      guard
        case .success(let t) = Target.make(
          node: quantized.nodes[index], index: index, layer: layer, model: model, weightMax: 127)
      else {
        Issue.record("\(node.name) not refinable")
        continue
      }
      for c in 0..<t.outC {
        for k in 0..<t.kg {
          let j = c * t.kg + k
          let ratio = Double(t.weights[j]) / Double(node.weightScales[c])
          let q = Double(node.weights[j])
          #expect(abs(q) <= 127)
          #expect(q == ratio.rounded(.down) || q == ratio.rounded(.up) || abs(q) == 127, "\(node.name)[\(j)]")
          if node.weights[j] != quantized.nodes[index].weights[j] { changed += 1 }
        }
      }
      #expect(node.weightScales == quantized.nodes[index].weightScales)
      #expect(node.multipliers == quantized.nodes[index].multipliers)
    }
    #expect(changed > 0)
  }

  /// The convolution's uint8 output from the reference executor, on an input unlike the constant
  /// one it was refined on, equals a direct computation with the unfolded bias round(b / (s_in · s_w))
  /// and Σ (q_x − z_in) · w_q (z_in = 85 here): the re-folded bias is right.
  @Test func refoldedBiasGivesTheDirectConvolution() throws {
    let (model, quantized, images) = try Self.builtCase()
    let (refined, _) = try Self.refine(model, quantized, images: images, inputs: .float, iterations: 400)
    let node = try #require(refined.node(named: "conv"))
    let before = try #require(quantized.node(named: "conv"))
    #expect(node.weights.reduce(0) { $0 + Int($1) } != before.weights.reduce(0) { $0 + Int($1) })
    let b = model.weights["conv.bias"]!.floats()
    let inQ = node.inputQuantization![0]
    #expect(inQ.zeroPoint == 85)
    var g = SeededGenerator(seed: testSeed(12))
    let x = Tensor(shape: [1, 5, 5, 3], scalars: g.floats(75, in: -1...2))
    var observed: [UInt8] = []
    _ = try Int8ReferenceExecutor(model: refined).run(x) { name, t in if name == node.name { observed = t.values } }
    #expect(observed.count == 3 * 3 * 2)
    var mismatches = 0
    for oy in 0..<3 {
      for ox in 0..<3 {
        for c in 0..<2 {
          let sw = Double(node.weightScales[c])
          var acc = Int64((Double(b[c]) / (Double(inQ.scale) * sw)).rounded())
          for ky in 0..<3 {
            for kx in 0..<3 {
              for i in 0..<3 {
                let qx = Int64(inQ.quantize(x.scalars[((oy + ky) * 5 + ox + kx) * 3 + i]))
                acc += (qx - Int64(inQ.zeroPoint)) * Int64(node.weights[((c * 3 + ky) * 3 + kx) * 3 + i])
              }
            }
          }
          let m = RequantMultiplier(multiplier: node.multipliers[c], shift: node.shifts[c])
          let q = min(
            max(m.apply(Int32(acc)) + Int64(node.output.zeroPoint), Int64(node.clamp![0])), Int64(node.clamp![1]))
          if UInt8(q) != observed[(oy * 3 + ox) * 2 + c] { mismatches += 1 }
        }
      }
    }
    #expect(mismatches == 0)
  }

  @Test func sameModelFileOnEveryRun() throws {
    let golden = try SmallNetGolden.load()
    let model = golden.model
    let quantized = try Quantizer.quantize(model: model, range: golden.range).model
    let images = Self.inputs(model, count: 12, seed: testSeed(13))
    let first = try Self.refine(model, quantized, images: images).model
    let second = try Self.refine(model, quantized, images: images).model
    #expect(first != quantized)
    #expect(first == second)
    let dir = FileManager.default.temporaryDirectory.appendingPathComponent("adaround-\(UUID().uuidString)")
    try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(at: dir) }
    try QuantizedModelFile.write(first, to: dir.appendingPathComponent("a.safetensors"))
    try QuantizedModelFile.write(second, to: dir.appendingPathComponent("b.safetensors"))
    #expect(
      try Data(contentsOf: dir.appendingPathComponent("a.safetensors"))
        == Data(contentsOf: dir.appendingPathComponent("b.safetensors")))
  }

  @Test func anInt8ModelWhoseWeightsAreNotNearestIsLeftAlone() throws {
    let (model, quantized, images) = try Self.builtCase()
    var changed = quantized
    let i = changed.nodes.firstIndex { $0.name == "conv" }!
    changed.nodes[i].weights[5] = changed.nodes[i].weights[5] &+ 2
    let (refined, layers) = try Self.refine(model, changed, images: images, iterations: 50)
    #expect(layers.first { $0.name == "conv" }?.skipped?.contains("not round-to-nearest") == true)
    #expect(refined.nodes[i] == changed.nodes[i])
  }
}
