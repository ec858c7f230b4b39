import OctetCore
import OctetFloat
import OctetModels
import OctetTestSupport
import Testing

/// `FloatExecutor.run(_:observe:replace:)`: one step's output swapped for another tensor.
@Suite struct ReplaceHookTests {
  @Test func aReplacedOutputIsWhatLaterStepsReadObserveSeesAndTheRunReturns() throws {
    let net = TinyNet()
    let executor = try FloatExecutor(model: net.model, fuseResidualAdd: false)
    let input = TinyNet.inputs(count: 1)[0]
    let plain = executor.run(input)
    #expect(executor.run(input, observe: nil, replace: { _, _ in nil }) == plain)

    // b's output zeroed: the average pool is 0, so the logits are fc's bias.
    var seen: [String: Tensor] = [:]
    let logits = executor.run(
      input, observe: { name, tensor in seen[name] = tensor },
      replace: { name, tensor in name == "b" ? Tensor(zeros: tensor.shape) : nil })
    #expect(seen["b"]?.scalars.allSatisfy { $0 == 0 } == true)
    #expect(seen["pool"]?.scalars.allSatisfy { $0 == 0 } == true)
    #expect(logits.scalars == net.model.weights["fc.bias"]!.floats())
    #expect(logits != plain)

    // The last step replaced: the run returns the replacement.
    let fixed = Tensor(shape: plain.shape, scalars: (0..<plain.count).map(Float.init))
    #expect(executor.run(input, observe: nil, replace: { name, _ in name == "fc" ? fixed : nil }) == fixed)
  }
}
