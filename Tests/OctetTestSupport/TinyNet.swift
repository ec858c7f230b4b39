import OctetCore
import OctetModels

/// A four-layer float network small enough to reason about by hand, for the debugger's tests:
/// input [N, 2, 2, 3] → `a` (1x1 conv 3→4, weights 0 or 1, no bias) → `b` (1x1 conv 4→4, seeded
/// weights and bias) → `pool` (global average) → `flatten` → `fc` (linear 4→5).
///
/// With `ranges`, the input and `a` are quantized exactly: inputs whole numbers in [0, 80] at scale 1,
/// zero point 0; `a`'s weights are 127 · (1/127) and its outputs whole sums of at most three inputs.
/// `b`'s range is `bRange`: widen it to coarsen that layer alone.
public struct TinyNet: Sendable {
  public var model: Model
  public var aRange: (lo: Float, hi: Float)
  public var bRange: (lo: Float, hi: Float)

  /// `aRange` other than [0, 255] puts `a`'s outputs off its grid, so that `b` reads rounded inputs.
  public init(seed: UInt64 = 7, aRange: (lo: Float, hi: Float) = (0, 255), bRange: (lo: Float, hi: Float) = (-200, 200))
  {
    var generator = SeededGenerator(seed: seed)
    // Every output channel of `a` reads at least one input, so none is all zero.
    let a: [Float] = [1, 0, 0, 0, 1, 0, 0, 0, 1, 1, 1, 0]
    let b = generator.floats(16, in: -1...1)
    let bBias = generator.floats(4, in: -5...5)
    let fc = generator.floats(20, in: -0.2...0.2)
    let fcBias = generator.floats(5, in: -1...1)
    let graph = Graph(
      nodes: [
        .conv2d("a", input: Graph.inputName, weight: "a.weight", kernel: [1, 1], stride: 1),
        .conv2d("b", input: "a", weight: "b.weight", bias: "b.bias", kernel: [1, 1], stride: 1),
        Node(name: "pool", op: .globalAveragePool, inputs: ["b"]),
        Node(name: "flatten", op: .flatten, inputs: ["pool"]),
        .linear("fc", input: "flatten", weight: "fc.weight", bias: "fc.bias"),
      ], output: "fc")
    let weights = TensorDictionary([
      ("a.weight", HostTensor(shape: [4, 3, 1, 1], float32: a)),
      ("b.weight", HostTensor(shape: [4, 4, 1, 1], float32: b)),
      ("b.bias", HostTensor(shape: [4], float32: bBias)),
      ("fc.weight", HostTensor(shape: [5, 4], float32: fc)),
      ("fc.bias", HostTensor(shape: [5], float32: fcBias)),
    ])
    model = Model(
      info: ModelInfo(architecture: "tiny-net", inputSize: 2, classes: 5, preprocessing: .imagenet, source: "tiny"),
      graph: graph, weights: weights)
    self.aRange = aRange
    self.bRange = bRange
  }

  /// Activation ranges: the input at scale 1 and zero point 0, `a` `aRange`, `b` and `pool` `bRange`.
  public func range(_ name: String) -> (lo: Float, hi: Float)? {
    switch name {
    case Graph.inputName: (0, 255)
    case "a": aRange
    case "b", "pool": bRange
    default: nil
    }
  }

  /// `count` seeded inputs `[1, 2, 2, 3]` of whole numbers in [0, 80].
  public static func inputs(count: Int, seed: UInt64 = 11) -> [Tensor] {
    var generator = SeededGenerator(seed: seed)
    return (0..<count).map { _ in
      Tensor(shape: [1, 2, 2, 3], scalars: (0..<12).map { _ in Float(Int.random(in: 0...80, using: &generator)) })
    }
  }
}
