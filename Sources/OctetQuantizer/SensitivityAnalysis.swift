import Dispatch
import Foundation
import OctetCore
import OctetFloat
import OctetModels
import Synchronization

/// How much the network's output moves when one layer alone runs in int8.
public struct LayerSensitivity: Codable, Sendable, Equatable {
  /// The int8 node (the float graph's name of the tensor it produces).
  public var layer: String
  /// Top-1 agreement with the plain float run, 0…1.
  public var agreement: Double
  /// Mean over the images of KL(float softmax ‖ softmax of the run with this layer in int8), in nats.
  public var kl: Double
  /// Multiply-adds per image of the layer (`LayerCost.macs`).
  public var macs: Int

  public init(layer: String, agreement: Double, kl: Double, macs: Int) {
    self.layer = layer
    self.agreement = agreement
    self.kl = kl
    self.macs = macs
  }
}

/// Ranks the layers of an int8 model by how much quantizing each one alone changes the float
/// network's output (docs/debugging.md).
///
/// For every int8 node L and every input, the float network runs with L's output replaced by L's
/// int8 simulation (`LayerSimulation`: L's float inputs quantized as L reads them, L's integer
/// reference kernel, the result dequantized); everything else stays float. Each image runs in float
/// once with every activation kept (`FloatExecutor.activations`), and for each layer only the steps
/// after it run again (`FloatExecutor.resume`): memory is one image's activations per thread.
public enum SensitivityAnalysis {
  /// The layers of `int8`, most sensitive first: by mean KL, descending; ties by agreement,
  /// ascending, then network order. `inputs` are preprocessed network inputs `[N, S, S, 3]` (each
  /// row counts as one image); `float` is the model `int8` was quantized from. `progress(done,
  /// total)` is called after each input. Throws when the models do not match.
  public static func rank(
    float: Model, int8: QuantizedModel, inputs: [Tensor],
    threads: Int = ProcessInfo.processInfo.activeProcessorCount,
    progress: @Sendable (_ done: Int, _ total: Int) -> Void = { _, _ in }
  ) throws -> [LayerSensitivity] {
    let executor = try FloatExecutor(model: float, fuseResidualAdd: false)
    let simulation = try LayerSimulation(model: int8)
    let macs = try LayerCost.macs(of: int8)
    let floatNames = Set(executor.observableNames)
    if let wide = int8.nodes.first(where: \.isWide) { throw SensitivityError.sixteenBit(node: wide.name) }
    for node in int8.nodes where node.op != .quantizeInput {
      for name in [node.name] + node.inputs where name != Graph.inputName && !floatNames.contains(name) {
        throw SensitivityError.unmatched(
          node: node.name, tensor: name, model: int8.info.source ?? int8.info.architecture)
      }
    }
    let images = inputs.map { $0.shape.first ?? 0 }.reduce(0, +)
    guard images > 0 else { throw SensitivityError.noImages }

    // Per image: the float run with every activation kept, then for each layer its int8 simulation
    // on the float inputs and the rest of the network from there. Each image's per-layer KL and
    // agreement are summed in image order at the end, so that the ranking is the same whatever the
    // threads' timing.
    struct PerImage {
      var kl: [[Double]?]
      var agree: [[Int]?]
      var done = 0
    }
    let nodes = int8.nodes
    let perImage = Mutex(
      PerImage(
        kl: [[Double]?](repeating: nil, count: inputs.count), agree: [[Int]?](repeating: nil, count: inputs.count)))
    let classes = int8.nodes.last?.outChannels ?? 0
    concurrentForEach(inputs.count, threads: threads) { i in
      let (logits, activations) = executor.activations(inputs[i])
      let p = logSoftmaxRows(logits)
      var kl = [Double](repeating: 0, count: nodes.count)
      var agree = [Int](repeating: 0, count: nodes.count)
      for (l, node) in nodes.enumerated() {
        let floatInputs =
          node.op == .quantizeInput
          ? [inputs[i]] : node.inputs.map { executor.value($0, in: activations)! }
        let simulated = simulation.simulate(node.name, floatInputs: floatInputs)
        let q = logSoftmaxRows(
          executor.resume(
            activations, replacing: node.op == .quantizeInput ? Graph.inputName : node.name, with: simulated))
        for row in 0..<(p.count / max(classes, 1)) {
          let r = (row * classes)..<((row + 1) * classes)
          for c in r where p[c] > -.infinity { kl[l] += exp(p[c]) * (p[c] - q[c]) }
          agree[l] += argmax(p[r]) == argmax(q[r]) ? 1 : 0
        }
      }
      let done = perImage.withLock { s in
        s.kl[i] = kl
        s.agree[i] = agree
        s.done += 1
        return s.done
      }
      progress(done, inputs.count)
    }
    let s = perImage.withLock { $0 }
    let result = nodes.enumerated().map { l, node in
      let kl = s.kl.reduce(0.0) { $0 + $1![l] }
      let agree = s.agree.reduce(0) { $0 + $1![l] }
      return (
        LayerSensitivity(
          layer: node.name, agreement: Double(agree) / Double(images), kl: finite(max(0, kl / Double(images))),
          macs: macs[node.name] ?? 0), order: l
      )
    }
    return result.sorted { a, b in
      if a.0.kl != b.0.kl { return a.0.kl > b.0.kl }
      if a.0.agreement != b.0.agreement { return a.0.agreement < b.0.agreement }
      return a.order < b.order
    }.map(\.0)
  }
}

public enum SensitivityError: Error, CustomStringConvertible, Equatable {
  case unmatched(node: String, tensor: String, model: String)
  case noImages
  case sixteenBit(node: String)

  public var description: String {
    switch self {
    case .unmatched(let node, let tensor, let model):
      "\(model): int8 node '\(node)' needs tensor '\(tensor)', which the float model does not compute: "
        + "it was quantized from another model"
    case .noImages: "sensitivity analysis needs at least one image"
    case .sixteenBit(let node):
      "int8 node '\(node)' runs at 16 bits: sensitivity is measured on a model quantized with every layer at 8 bits"
    }
  }
}

/// JSON has no infinity: a KL that overflows is reported as the largest Double.
func finite(_ x: Double) -> Double { x.isFinite ? x : .greatestFiniteMagnitude }

/// Log-softmax of every row of `[N, classes]` logits, in Double.
func logSoftmaxRows(_ logits: Tensor) -> [Double] {
  let classes = logits.shape.last ?? 0
  var out = [Double](repeating: 0, count: logits.count)
  guard classes > 0 else { return out }
  for row in 0..<(logits.count / classes) {
    let base = row * classes
    var m = -Double.infinity
    for c in 0..<classes { m = max(m, Double(logits.scalars[base + c])) }
    var sum = 0.0
    for c in 0..<classes { sum += exp(Double(logits.scalars[base + c]) - m) }
    let log = m + Foundation.log(sum)
    for c in 0..<classes { out[base + c] = Double(logits.scalars[base + c]) - log }
  }
  return out
}

/// The first index of the largest value.
func argmax(_ values: ArraySlice<Double>) -> Int {
  var best = values.startIndex
  for i in values.indices where values[i] > values[best] { best = i }
  return best - values.startIndex
}

/// `body(i)` for i in 0..<count on up to `threads` threads.
func concurrentForEach(_ count: Int, threads: Int, _ body: @Sendable (Int) -> Void) {
  let next = Atomic<Int>(0)
  DispatchQueue.concurrentPerform(iterations: max(1, min(threads, count))) { _ in
    while true {
      let i = next.wrappingAdd(1, ordering: .relaxed).oldValue
      if i >= count { return }
      body(i)
    }
  }
}
