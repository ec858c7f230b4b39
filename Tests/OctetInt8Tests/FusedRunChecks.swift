import Foundation
import OctetCore
import OctetModels
import Testing

@testable import OctetInt8

/// The convolutions whose output a fused run does not materialize, predicted from the graph alone
/// (not from the executor's plan): a residual add is fused into the later, in node order, of its
/// two inputs when that input is a convolution, plain (groups 1) or depthwise (groups = in = out
/// channels), that nothing but the add reads, that has no per-channel clamps (their post-pass
/// needs the convolution's own output) and that is not a 16-bit layer (docs/quantization.md §17:
/// those run their own kernels, without an add epilogue).
func convolutionsFusedAway(_ model: QuantizedModel) -> Set<String> {
  var position: [String: Int] = [:]
  for (i, node) in model.nodes.enumerated() { position[node.name] = i }
  var readers: [String: Int] = [:]
  for node in model.nodes { for input in node.inputs { readers[input, default: 0] += 1 } }
  var fused: Set<String> = []
  for node in model.nodes where node.op == .add {
    guard let later = node.inputs.max(by: { position[$0, default: -1] < position[$1, default: -1] }),
      let conv = model.nodes.first(where: { $0.name == later }), conv.op == .conv2d, !conv.isWide
    else { continue }
    let groups = conv.groups ?? 1
    let depthwise = groups == conv.inChannels && groups == conv.outChannels
    if groups == 1 || depthwise, readers[later] == 1, conv.channelClampLo.isEmpty { fused.insert(later) }
  }
  return fused
}

/// Runs `fused` (an executor that fuses residual adds) with an observer and requires every node
/// output it materializes to equal the reference's (`expected`, by node name), and the set of
/// nodes it materializes to be exactly the reference's minus `convolutionsFusedAway`: the fused
/// epilogues are checked on every node they write, not only through the logits. An unfused run
/// (`fusesResidualAdds` false) must materialize every reference node exactly once. Returns the logits.
@discardableResult
func expectFusedNodesEqual(
  _ fused: Int8FastExecutor, input: Tensor, expected: [String: QuantizedTensor], context: String
) -> Int32Logits {
  var seen: [String] = []
  var differing: [String] = []
  let logits = fused.run(input) { name, t in
    seen.append(name)
    if expected[name] != t { differing.append(name) }
  }
  let predicted = Set(expected.keys).subtracting(fused.fusesResidualAdds ? convolutionsFusedAway(fused.model) : [])
  #expect(differing.isEmpty, "\(context): nodes differ from the reference: \(differing)")
  #expect(seen.count == Set(seen).count, "\(context): some nodes observed twice: \(seen)")
  #expect(
    Set(seen) == predicted,
    """
    \(context): observed nodes are not what fusion predicts: missing \(predicted.subtracting(seen).sorted()), \
    unexpected \(Set(seen).subtracting(predicted).sorted())
    """)
  if fused.fusesResidualAdds {
    // The plan's own account of what it fused agrees with the prediction.
    let planned = Set(fused.layers.filter { $0.nodes.count > 1 }.map { $0.nodes[0] })
    #expect(planned == convolutionsFusedAway(fused.model), "\(context): the plan fused \(planned.sorted())")
  }
  return logits
}
