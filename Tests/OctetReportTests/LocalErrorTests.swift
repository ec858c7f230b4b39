import Foundation
import Octet
import OctetTestSupport
import Testing

@testable import OctetReport

/// The local error of `compare`: each int8 layer fed the float values of its own inputs.
@Suite struct LocalErrorTests {
  func comparison(_ net: TinyNet) throws -> DriftComparison {
    let quantized = try Quantizer.quantize(model: net.model, range: net.range).model
    return try DriftComparison(float: net.model, int8: quantized, backend: .reference)
  }

  /// Every float tensor of one run, by name, as `DriftComparison.compare` collects them.
  func floatTensors(_ c: DriftComparison, _ input: Tensor) -> [String: [Float]] {
    var tensors: [String: [Float]] = [Graph.inputName: input.scalars]
    let logits = c.float.run(input) { name, tensor in tensors[name] = tensor.scalars }
    tensors[c.int8.model.output] = logits.scalars
    return tensors
  }

  @Test func localErrorOfAConvolutionEqualsAHandComputation() throws {
    // a's range [0, 100]: its whole-number outputs fall between grid points (and above 100 are
    // clamped), so b's input quantization rounds and clamps.
    let net = TinyNet(aRange: (0, 100))
    let c = try comparison(net)
    let node = try #require(c.int8.model.node(named: "b"))
    let aQuantization = try #require(c.int8.model.node(named: "a")).output
    var local = LayerAccumulator()
    var signal = 0.0
    var noise = 0.0
    for input in TinyNet.inputs(count: 8) {
      let tensors = floatTensors(c, input)
      let errors = c.localErrors(tensors)
      local.merge(try #require(errors["b"]))
      // By hand: quantize a's float output as b reads it, the 1x1 convolution in integers, the
      // requantization with the real multiplier M = s_a · s_w[c] / s_b, clamp, dequantize.
      let x = tensors["a"]!
      let f = tensors["b"]!
      let sOut = Double(node.output.scale)
      let zOut = Double(node.output.zeroPoint)
      for pixel in 0..<4 {
        // The contract's quantize (§1), as every reader of a quantizes it.
        let q = (0..<4).map { i in Double(aQuantization.quantize(x[pixel * 4 + i])) }
        for o in 0..<4 {
          var acc = Double(node.bias[o])
          for i in 0..<4 { acc += q[i] * Double(node.weights[o * 4 + i]) }
          let m = Double(aQuantization.scale) * Double(node.weightScales[o]) / sOut
          let out = min(255, max(0, (m * acc + 0.5).rounded(.down) + zOut))
          let dequantized = Double(Float(sOut) * Float(out - zOut))
          let expected = Double(f[pixel * 4 + o])
          signal += expected * expected
          noise += (expected - dequantized) * (expected - dequantized)
        }
      }
    }
    #expect(aQuantization.zeroPoint == 0 && aQuantization.scale != 1)
    #expect(noise > 0, "the hand computation should see some rounding error in b")
    let handSQNR = 10 * log10(signal / noise)
    #expect(abs(local.sqnrDB - handSQNR) < 1e-9, "local SQNR \(local.sqnrDB) dB, by hand \(handSQNR) dB")
  }

  @Test func exactLayersHaveNoLocalErrorAndTheFirstConvolutionsLocalErrorIsItsAccumulatedError() throws {
    let c = try comparison(TinyNet())
    var accumulated: [String: LayerAccumulator] = [:]
    var local: [String: LayerAccumulator] = [:]
    for input in TinyNet.inputs(count: 8) {
      // The integer network from the quantized input, as `compare(image:)` runs it.
      let tensors = floatTensors(c, input)
      _ = c.int8.run(input) { name, tensor in
        accumulated[name, default: LayerAccumulator()].add(
          float: tensors[name]!, dequantized: tensor.dequantized().scalars)
      }
      for (name, e) in c.localErrors(tensors) { local[name, default: LayerAccumulator()].merge(e) }
    }
    // Whole inputs at scale 1 and 0/1 weights: the input and `a` are exact, locally and accumulated.
    #expect(local["input"]?.sqnrDB == 200 && local["a"]?.sqnrDB == 200)
    #expect(accumulated["a"]?.sqnrDB == 200)
    // b's inputs are exact, so what b computes alone is what it computes in the network.
    #expect(local["b"]?.noise == accumulated["b"]?.noise && local["b"]!.noise > 0)
    // Every node has a local error, the classifier's against the float logits.
    #expect(Set(local.keys) == Set(c.int8.model.nodes.map(\.name)))
    #expect(local["fc"]!.sqnrDB > 20 && local["fc"]!.sqnrDB < 200)
  }

  @Test func sourceTensorsAreTheCheckpointsNamesOfEachLayersWeights() throws {
    let net = TinyNet()
    let quantized = try Quantizer.quantize(model: net.model, range: net.range).model
    let names = DriftComparison.sourceTensors(float: net.model, int8: quantized)
    #expect(names["a"] == ["a.weight"])
    #expect(names["b"] == ["b.weight", "b.bias"])
    #expect(names["fc"] == ["fc.weight", "fc.bias"])
    #expect(names["pool"] == [] && names["input"] == [])
  }

  @Test func jsonRoundTripKeepsTheNewFieldsAndOldReportsStillDecode() throws {
    var report = DriftReport(
      count: 2, float: .init(top1: 0.5, top5: 1), int8: .init(top1: 0.5, top5: 1), top1_agreement: 1,
      layers: [
        .init(
          name: "b", sqnr_db: 12.5, cosine: 0.99, order: 2, local_sqnr_db: 30.25, local_cosine: 0.999,
          source_tensors: ["b.weight", "b.bias"])
      ], unmatched: [], not_quantized: [])
    report.sensitivity = [LayerSensitivity(layer: "b", agreement: 0.5, kl: 0.125, macs: 64)]
    let data = try JSONEncoder().encode(report)
    let object = try #require(try JSONSerialization.jsonObject(with: data) as? [String: Any])
    let layer = try #require((object["layers"] as? [[String: Any]])?.first)
    #expect(layer["order"] as? Int == 2 && layer["local_sqnr_db"] as? Double == 30.25)
    #expect(
      layer["local_cosine"] as? Double == 0.999 && layer["source_tensors"] as? [String] == ["b.weight", "b.bias"])
    let sensitivity = try #require((object["sensitivity"] as? [[String: Any]])?.first)
    #expect(sensitivity["layer"] as? String == "b" && sensitivity["kl"] as? Double == 0.125)
    #expect(sensitivity["agreement"] as? Double == 0.5 && sensitivity["macs"] as? Int == 64)
    let back = try JSONDecoder().decode(DriftReport.self, from: data)
    #expect(back.layers.first?.local_sqnr_db == 30.25 && back.layers.first?.source_tensors == ["b.weight", "b.bias"])
    #expect(back.sensitivity == report.sensitivity)

    // A report written before these fields existed.
    let old = Data(
      """
      {"count": 1, "float": {"top1": 1, "top5": 1}, "int8": {"top1": 1, "top5": 1}, "top1_agreement": 1,
       "layers": [{"name": "b", "sqnr_db": 10, "cosine": 0.9}], "unmatched": [], "not_quantized": []}
      """.utf8)
    let decoded = try JSONDecoder().decode(DriftReport.self, from: old)
    #expect(decoded.layers.first?.order == nil && decoded.layers.first?.local_sqnr_db == nil)
    #expect(decoded.sensitivity == nil)
  }
}
