import Foundation
import OctetCore
import OctetFloat
import OctetModels
import Testing

/// The float executor on the small network of Scripts/int8_reference.py against the script's
/// float64 NumPy forward pass: three convolutions followed by BatchNorm with epsilon 1e-3, and one
/// with both a bias and a BatchNorm with epsilon 0.1 (short.conv + short.bn), so that BatchNorm
/// folded without its epsilon, with PyTorch's default 1e-5 in its place, or without scaling the
/// conv bias, moves the results far beyond float32 rounding. Needs no data outside the repository.
@Suite struct SmallNetFloatGoldenTests {
  @Test func floatExecutorMatchesNumPyOnEveryTensorAndTheLogits() throws {
    let golden = try SmallNetGolden.load()
    #expect(golden.graph.nodes.contains { $0.name == "short.bn" && $0.epsilon == 0.1 })
    #expect(golden.graph.nodes.contains { $0.name == "short.conv" && $0.bias != nil })
    // Residual adds unfused, so that both of the add's inputs are observed.
    let executor = try FloatExecutor(model: golden.model, fuseResidualAdd: false)
    var seen: Set<String> = []
    let logits = executor.run(golden.inputTensor) { name, tensor in
      guard let expected = golden.floatTensors[name] else { return }  // tensors the script does not keep
      seen.insert(name)
      #expect(tensor.scalars.count == expected.count, "\(name)")
      let worst = zip(tensor.scalars, expected).map { abs(Double($0) - $1) }.max() ?? 0
      // float32 arithmetic on values up to about 6: rounding stays below 1e-5.
      #expect(worst <= 1e-4, "\(name): differs from NumPy by up to \(worst)")
    }
    #expect(seen == Set(golden.floatTensors.keys), "observed \(seen.sorted())")
    let worst = zip(logits.scalars, golden.floatLogits).map { abs(Double($0) - $1) }.max() ?? .infinity
    #expect(
      logits.scalars.count == golden.floatLogits.count && worst <= 1e-4, "logits differ from NumPy by up to \(worst)")
  }
}
