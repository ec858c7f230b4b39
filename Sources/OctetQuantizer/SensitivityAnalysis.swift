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
/// reference kernel, the result dequantized); everything else stays float. The float run is whole
/// for every layer (no cached prefix): it keeps memory at one image's activations per thread, and
/// on Lite0 costs about as much again as the integer simulation of the layer.
public enum SensitivityAnalysis {
  /// The layers of `int8`, most sensitive first: by mean KL, descending; ties by agreement,
  /// ascending, then network order. `inputs` are preprocessed network inputs `[N, S, S, 3]` (each
  /// row counts as one image); `float` is the model `int8` was quantized from. `progress(done,
  /// total)` is called after each layer. Throws when the models do not match.
  public static func rank(
    float: Model, int8: QuantizedModel, inputs: [Tensor],
    threads: Int = ProcessInfo.processInfo.activeProcessorCount,
    progress: @Sendable (_ done: Int, _ total: Int) -> Void = { _, _ in }
  ) throws -> [LayerSensitivity] {
    let executor = try FloatExecutor(model: float, fuseResidualAdd: false)
    let simulation = try LayerSimulation(model: int8)
    let macs = try LayerCost.macs(of: int8)
    let floatNames = Set(executor.observableNames)
    for node in int8.nodes where node.op != .quantizeInput {
      for name in [node.name] + node.inputs where name != Graph.inputName && !floatNames.contains(name) {
        throw SensitivityError.unmatched(
          node: node.name, tensor: name, model: int8.info.source ?? int8.info.architecture)
      }
    }
    let images = inputs.map { $0.shape.first ?? 0 }.reduce(0, +)
    guard images > 0 else { throw SensitivityError.noImages }

    // The plain float run: each image's log-softmax and top-1.
    let baseline = Mutex([[Double]?](repeating: nil, count: inputs.count))
    concurrentForEach(inputs.count, threads: threads) { i in
      let logits = executor.run(inputs[i])
      baseline.withLock { $0[i] = logSoftmaxRows(logits) }
    }
    let reference = baseline.withLock { $0.map { $0! } }
    let classes = int8.nodes.last.map { $0.outChannels ?? 0 } ?? 0

    var result: [(LayerSensitivity, order: Int)] = []
    for (order, node) in int8.nodes.enumerated() {
      struct Sums {
        var kl = 0.0
        var agree = 0
      }
      let sums = Mutex(Sums())
      concurrentForEach(inputs.count, threads: threads) { i in
        let logits = perturbedLogits(inputs[i], node: node, executor: executor, simulation: simulation)
        let p = reference[i]
        let q = logSoftmaxRows(logits)
        var kl = 0.0
        var agree = 0
        let n = p.count / max(classes, 1)
        for row in 0..<n {
          let r = (row * classes)..<((row + 1) * classes)
          for c in r where p[c] > -.infinity { kl += exp(p[c]) * (p[c] - q[c]) }
          agree += argmax(p[r]) == argmax(q[r]) ? 1 : 0
        }
        sums.withLock {
          $0.kl += kl
          $0.agree += agree
        }
      }
      let s = sums.withLock { $0 }
      result.append(
        (
          LayerSensitivity(
            layer: node.name, agreement: Double(s.agree) / Double(images), kl: finite(max(0, s.kl / Double(images))),
            macs: macs[node.name] ?? 0), order
        ))
      progress(order + 1, int8.nodes.count)
    }
    return result.sorted { a, b in
      if a.0.kl != b.0.kl { return a.0.kl > b.0.kl }
      if a.0.agreement != b.0.agreement { return a.0.agreement < b.0.agreement }
      return a.order < b.order
    }.map(\.0)
  }

  /// The float network's logits on `input` with `node`'s output replaced by its int8 simulation.
  static func perturbedLogits(
    _ input: Tensor, node: QuantizedNode, executor: FloatExecutor, simulation: LayerSimulation
  ) -> Tensor {
    if node.op == .quantizeInput {
      return executor.run(simulation.simulate(node.name, floatInputs: [input]))
    }
    // The layer's float inputs, kept as the run goes (observe sees a step's output after any
    // replacement, and the layer's inputs come before it).
    var captured: [String: Tensor] = [Graph.inputName: input]
    let needed = Set(node.inputs)
    return executor.run(
      input,
      observe: { name, tensor in if needed.contains(name) { captured[name] = tensor } },
      replace: { name, _ in
        name == node.name ? simulation.simulate(name, floatInputs: node.inputs.map { captured[$0]! }) : nil
      })
  }
}

public enum SensitivityError: Error, CustomStringConvertible, Equatable {
  case unmatched(node: String, tensor: String, model: String)
  case noImages

  public var description: String {
    switch self {
    case .unmatched(let node, let tensor, let model):
      "\(model): int8 node '\(node)' needs tensor '\(tensor)', which the float model does not compute: "
        + "it was quantized from another model"
    case .noImages: "sensitivity analysis needs at least one image"
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
