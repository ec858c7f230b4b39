import Foundation
import OctetCore

/// What an ONNX value is while the graph is mapped.
enum ONNXValue {
  /// An activation Octet computes: the IR node producing it and its per-image shape in ONNX's order.
  case activation(node: String, layout: ONNXLayout)
  /// An activation padded with zeros by a Pad node that only a Conv may consume: [top, left, bottom, right].
  case padded(node: String, layout: ONNXLayout, pads: [Int], by: String)
  case constant(ONNXConstant)
}

enum ONNXLayout: Equatable {
  /// [C, H, W] (NCHW without the batch), NHWC in Octet.
  case spatial(c: Int, h: Int, w: Int)
  /// [F] features; `from` is the [C, H, W] it was flattened from (Octet flattens in HWC order).
  case flat(features: Int, from: [Int]?)

  var description: String {
    switch self {
    case .spatial(let c, let h, let w): "[N, \(c), \(h), \(w)]"
    case .flat(let f, _): "[N, \(f)]"
    }
  }
}

/// Maps one ONNX graph onto Octet's IR (see ONNXImporter).
struct ONNXGraphBuilder {
  let opset: Int64
  let options: ONNXInputOptions
  var values: [String: ONNXValue] = [:]
  var nodes: [Node] = []
  var weights = TensorDictionary()
  var usedNames: Set<String> = [Graph.inputName]
  /// How many nodes read each value (to fold Pad and MatMul+Add only when nothing else reads them).
  var readers: [String: Int] = [:]

  init(opset: Int64, options: ONNXInputOptions) {
    self.opset = opset
    self.options = options
  }

  static let maxNodes = 100_000

  mutating func build(_ graph: Onnx_GraphProto) throws(ONNXError) -> Model {
    guard graph.node.count <= Self.maxNodes else {
      throw ONNXError("has \(graph.node.count) nodes, more than \(Self.maxNodes)")
    }
    for initializer in graph.initializer {
      guard !initializer.name.isEmpty else { throw ONNXError("an initializer has no name") }
      values[initializer.name] = .constant(try ONNXImporter.constant(initializer, name: initializer.name))
    }
    guard graph.sparseInitializer.isEmpty else {
      throw ONNXError("has sparse initializers, which Octet does not read")
    }
    let preprocessing = try readInput(graph)
    guard graph.output.count == 1, let output = graph.output.first else {
      throw ONNXError("has \(graph.output.count) outputs; Octet imports classifiers with one output (the logits)")
    }
    for node in try topologicalOrder(graph) {
      try map(node)
    }
    guard let result = values[output.name] else { throw ONNXError("graph output '\(output.name)' is never produced") }
    guard case .activation(let last, let layout) = result, case .flat(let classes, _) = layout else {
      throw ONNXError(
        "graph output '\(output.name)' is not a [N, classes] activation; Octet imports classifiers ending in Gemm or MatMul"
      )
    }
    let irGraph = Graph(nodes: nodes, output: last)
    do { try irGraph.validate() } catch { throw ONNXError(error.description) }
    let info = ModelInfo(
      architecture: "onnx", inputSize: preprocessing.cropSize, classes: classes, preprocessing: preprocessing)
    return Model(info: info, graph: irGraph, weights: weights)
  }

  /// The one image input: float, [N, 3, H, H] with N fixed or symbolic; H from the model or, when
  /// symbolic, the crop size. Returns the preprocessing.
  mutating func readInput(_ graph: Onnx_GraphProto) throws(ONNXError) -> Preprocessing {
    let inputs = graph.input.filter { values[$0.name] == nil }
    guard inputs.count == 1, let input = inputs.first else {
      throw ONNXError(
        "has \(inputs.count) inputs besides its initializers (\(inputs.prefix(4).map { "'\($0.name)'" }.joined(separator: ", "))); Octet imports models with one image input"
      )
    }
    let name = input.name
    guard input.type.tensorType.elemType == 1 else {
      throw ONNXError(
        "input '\(name)' has element type \(ONNXImporter.dataTypeName(input.type.tensorType.elemType)), not float")
    }
    let dims = input.type.tensorType.shape.dim
    guard dims.count == 4 else {
      throw ONNXError("input '\(name)' has rank \(dims.count); Octet imports NCHW images [N, 3, H, W]")
    }
    func fixed(_ i: Int) -> Int? {
      if case .dimValue(let v) = dims[i].value, v > 0 { return Int(clamping: v) }
      return nil
    }
    if let c = fixed(1), c != 3 {
      throw ONNXError("input '\(name)' has \(c) channels; Octet imports RGB images [N, 3, H, W]")
    }
    let h = fixed(2)
    let w = fixed(3)
    if let h, let w, h != w {
      throw ONNXError("input '\(name)' is \(h)x\(w); Octet imports square inputs")
    }
    let preprocessing = try options.resolve(modelSize: h ?? w, input: name)
    let size = preprocessing.cropSize
    guard (4...4096).contains(size) else { throw ONNXError("input '\(name)' is \(size)x\(size), outside 4…4096") }
    values[name] = .activation(node: Graph.inputName, layout: .spatial(c: 3, h: size, w: size))
    return preprocessing
  }

  /// The nodes in an order where each comes after what it reads; a value nothing produces, a value
  /// produced twice, or a cycle is refused by name.
  mutating func topologicalOrder(_ graph: Onnx_GraphProto) throws(ONNXError) -> [Onnx_NodeProto] {
    var producer: [String: Int] = [:]
    for (i, node) in graph.node.enumerated() {
      for output in node.output where !output.isEmpty {
        guard producer[output] == nil, values[output] == nil else {
          throw ONNXError("value '\(output)' is produced twice (again by node '\(label(node, i))')")
        }
        producer[output] = i
      }
    }
    var pending = [Int](repeating: 0, count: graph.node.count)
    var dependents = [[Int]](repeating: [], count: graph.node.count)
    for (i, node) in graph.node.enumerated() {
      for input in node.input where !input.isEmpty {
        readers[input, default: 0] += 1
        if let p = producer[input] {
          pending[i] += 1
          dependents[p].append(i)
        } else if values[input] == nil {
          throw ONNXError(
            "node '\(label(node, i))' (\(node.opType)) reads '\(input)', which is no input, initializer or node output")
        }
      }
    }
    var ready = (0..<graph.node.count).filter { pending[$0] == 0 }.reversed() as [Int]
    var order: [Onnx_NodeProto] = []
    while let i = ready.popLast() {
      order.append(graph.node[i])
      for d in dependents[i] {
        pending[d] -= 1
        if pending[d] == 0 { ready.append(d) }
      }
    }
    guard order.count == graph.node.count else {
      let stuck = (0..<graph.node.count).first { pending[$0] > 0 }!
      throw ONNXError(
        "the graph has a cycle through node '\(label(graph.node[stuck], stuck))' (\(graph.node[stuck].opType))")
    }
    return order
  }

  func label(_ node: Onnx_NodeProto, _ index: Int) -> String {
    node.name.isEmpty ? (node.output.first.map { $0.isEmpty ? "#\(index)" : $0 } ?? "#\(index)") : node.name
  }

  /// A unique IR node name for an ONNX node: its name, else its first output's.
  mutating func irName(_ node: Onnx_NodeProto, suffix: String = "") -> String {
    let base = (node.name.isEmpty ? (node.output.first ?? "node") : node.name) + suffix
    var name = base
    var n = 1
    while usedNames.contains(name) {
      n += 1
      name = "\(base)_\(n)"
    }
    usedNames.insert(name)
    return name
  }
}
