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
    iterations: Int = 300, threads: Int = 1, memoryBudget: Int? = nil, maxPositions: Int? = nil
  ) throws -> (model: QuantizedModel, layers: [AdaRoundLayerResult]) {
    var p = AdaRoundParameters()
    p.inputs = inputs
    p.iterations = iterations
    p.batchSize = 64
    if let memoryBudget { p.memoryBudget = memoryBudget }
    if let maxPositions { p.maxPositions = maxPositions }
    return try AdaRound.refine(
      float: model, quantized: quantized, weightBits: .eight, imageCount: images.count, image: { images[$0] },
      parameters: p, threads: threads)
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

  /// Images read on several threads and the layers of a pass optimized on several threads give
  /// the model and the per-layer results of one thread, in one pass and in one pass per layer (a
  /// budget below every layer's samples), with float and with int8 inputs. Three positions per image
  /// and layer, fewer than the layers have: the seeded draws of positions are exercised too.
  @Test(arguments: AdaRoundParameters.Inputs.allCases, [nil, 1])
  func sameModelOnOneTwoAndThreeThreads(inputs: AdaRoundParameters.Inputs, memoryBudget: Int?) throws {
    let golden = try SmallNetGolden.load()
    let model = golden.model
    let quantized = try Quantizer.quantize(model: model, range: golden.range).model
    let images = Self.inputs(model, count: 12, seed: testSeed(14))
    let one = try Self.refine(
      model, quantized, images: images, inputs: inputs, iterations: 120, threads: 1, memoryBudget: memoryBudget,
      maxPositions: 36)
    #expect(one.model != quantized)
    #expect(one.layers.count == 5)
    for threads in [2, 3] {
      let many = try Self.refine(
        model, quantized, images: images, inputs: inputs, iterations: 120, threads: threads,
        memoryBudget: memoryBudget, maxPositions: 36)
      #expect(many.layers == one.layers, "\(threads) threads")
      for (a, b) in zip(many.model.nodes, one.model.nodes) {
        #expect(a.weights == b.weights, "\(a.name), \(threads) threads")
        #expect(a.bias == b.bias, "\(a.name), \(threads) threads")
      }
      #expect(many.model == one.model, "\(threads) threads")
    }
  }

  /// The direct loops of a depthwise layer (`Target.isDepthwise`: patches laid out [kh·kw, C])
  /// compute z[r, c] = Σ_k x[r, c, k] · w[c, k] and dw[c, k] = Σ_r g[r, c] · x[r, c, k], checked
  /// against the formulas in Double on the small network's 3x3 depthwise convolution.
  @Test func depthwiseLoopsComputeTheFormulas() throws {
    let golden = try SmallNetGolden.load()
    let model = golden.model
    let quantized = try Quantizer.quantize(model: model, range: golden.range).model
    let plan = try LayerPlan(model: model)
    // The 3x3 convolution with 8 groups (dw.conv, named after its fused ReLU6).
    let targets = quantized.nodes.indices.compactMap { index -> Target? in
      let node = quantized.nodes[index]
      guard node.op == .conv2d, let layer = plan.layers.first(where: { $0.name == node.name }),
        case .success(let t) = Target.make(node: node, index: index, layer: layer, model: model, weightMax: 127)
      else { return nil }
      return t
    }
    #expect(targets.count == 4)
    let depthwise = targets.filter(\.isDepthwise)
    try #require(depthwise.count == 1, "\(targets.map { ($0.name, $0.groups) })")
    let t = depthwise[0]
    let (o, kg) = (t.outC, t.kg)
    #expect(o == 8 && kg == 9)
    let (rows, row) = (7, 2)
    let kTotal = o * kg
    var g = SeededGenerator(seed: testSeed(15))
    let natural = g.floats((rows + row) * kTotal, in: -2...2)  // [r, c, k]
    var laid = [Float](repeating: 0, count: natural.count)  // [r, k, c]
    for r in 0..<(rows + row) {
      for c in 0..<o { for k in 0..<kg { laid[r * kTotal + k * o + c] = natural[r * kTotal + c * kg + k] } }
    }
    let w = g.floats(o * kg, in: -1...1)
    let grad = g.floats(rows * o, in: -1...1)
    var z = [Float](repeating: .nan, count: rows * o)
    t.forward(x: laid, row: row, rows: rows, kTotal: kTotal, w: w, z: &z)
    var dw = [Float](repeating: .nan, count: o * kg)
    t.backward(x: laid, row: row, rows: rows, kTotal: kTotal, grad: grad, dw: &dw)
    for c in 0..<o {
      for r in 0..<rows {
        var e = 0.0
        for k in 0..<kg { e += Double(natural[(row + r) * kTotal + c * kg + k]) * Double(w[c * kg + k]) }
        #expect(abs(Double(z[r * o + c]) - e) <= 1e-5, "z[\(r), \(c)] = \(z[r * o + c]), expected \(e)")
      }
      for k in 0..<kg {
        var e = 0.0
        for r in 0..<rows { e += Double(grad[r * o + c]) * Double(natural[(row + r) * kTotal + c * kg + k]) }
        #expect(abs(Double(dw[c * kg + k]) - e) <= 1e-5, "dw[\(c), \(k)] = \(dw[c * kg + k]), expected \(e)")
      }
    }
  }

  /// The vector exp2, log2, sigmoid and pow of the Adam loop (`AdaMath`, plain IEEE operations
  /// so that every CPU gets the same bits) against libm in Double, on seeded arguments over the
  /// ranges the loop uses.
  @Test func vectorMathIsCloseToLibm() throws {
    var g = SeededGenerator(seed: testSeed(16))
    var worst = (exp2: 0.0, log2: 0.0, sigmoid: 0.0, pow: 0.0)
    for _ in 0..<2000 {
      let y = AdaVector(g.floats(16, in: -125...126))
      let e = AdaMath.exp2(y)
      let x = AdaVector(g.floats(16, in: 0...1)) * AdaVector(g.floats(16, in: 0...1))
      let l = AdaMath.log2(x.replacing(with: 1e-30, where: x .== 0))
      let v = AdaVector(g.floats(16, in: -30...30))
      let sg = AdaMath.sigmoid(v)
      let a = Float.random(in: 1...19, using: &g)
      let pw = AdaMath.pow(x, a)
      for i in 0..<16 {
        let ey = Foundation.exp2(Double(y[i]))
        worst.exp2 = max(worst.exp2, abs(Double(e[i]) - ey) / ey)
        let xi = x[i] == 0 ? 1e-30 : Double(x[i])
        let lx = Foundation.log2(xi)
        worst.log2 = max(worst.log2, abs(Double(l[i]) - lx) / max(1, abs(lx)))
        let sv = 1 / (1 + Foundation.exp(-Double(v[i])))
        // e^−v = 2^y, y = −v·log2 e: as for pow, y's rounding grows with |v|.
        worst.sigmoid = max(worst.sigmoid, abs(Double(sg[i]) - sv) / (sv * (1 + abs(Double(v[i])))))
        // x^a = 2^y, y = a·log2(x): a float's rounding of y alone is a relative error of about
        // ln 2 · |y| · 6e-8 in x^a, so the bound grows with |y|.
        let pv = Foundation.pow(Double(x[i]), Double(a))
        let py = abs(Double(a) * Foundation.log2(Double(x[i])))
        if pv > 1e-37 { worst.pow = max(worst.pow, abs(Double(pw[i]) - pv) / (pv * (1 + py))) }
        if pv < 1e-39 { #expect(pw[i] < 1e-37) }
      }
    }
    print("AdaMath worst errors: \(worst)")
    #expect(worst.exp2 < 4e-7)
    #expect(worst.log2 < 4e-7)
    #expect(worst.sigmoid < 4e-7)
    #expect(worst.pow < 4e-7)
    #expect(AdaMath.pow(AdaVector(repeating: 0), 1.5) == AdaVector(repeating: 0))
    #expect(AdaMath.exp2(AdaVector(repeating: 0)) == AdaVector(repeating: 1))
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
