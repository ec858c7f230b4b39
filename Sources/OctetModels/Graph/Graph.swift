import OctetCore

/// The operators the supported CNNs need. Raw values are what model files store.
public enum OperatorKind: String, Codable, Sendable {
  case conv2d
  case batchNorm = "batch_norm"
  case relu
  case relu6
  case add
  case maxPool = "max_pool"
  case globalAveragePool = "global_average_pool"
  case flatten
  case linear
  // ONNX operators (issue 15): one-input activations, the elementwise product, channel concat and
  // the k x k average pool. Absent from every model written before them, so old files are unchanged.
  case sigmoid
  case hardSigmoid = "hard_sigmoid"
  case hardSwish = "hard_swish"
  case leakyRelu = "leaky_relu"
  case mul
  case concat
  case averagePool = "average_pool"
}

/// How a convolution or pool pads its input.
/// `explicit` holds [top, left, bottom, right]; `same` is TensorFlow's "SAME" rule, resolved when a
/// plan knows the input size: total = max((ceil(in / stride) - 1) * stride + (k - 1) * dilation + 1 - in, 0),
/// top/left = total / 2 and the remainder goes bottom/right.
public enum PaddingMode: String, Codable, Sendable {
  case explicit
  case same
}

/// One node of a graph. Attributes not used by an operator are nil, so the JSON form stays flat and
/// readable. Tensor attributes (`weight`, `bias`, …) name entries of the model's weight dictionary, in
/// the checkpoint's own names and layout (convolution weights OIHW, linear weights [out, in]).
public struct Node: Codable, Sendable, Equatable {
  public var name: String
  public var op: OperatorKind
  /// Producer node names; the graph input is called `Graph.inputName`.
  public var inputs: [String]

  // conv2d / linear / batch_norm tensors
  public var weight: String?
  public var bias: String?
  public var runningMean: String?
  public var runningVariance: String?
  public var epsilon: Float?

  // conv2d / max_pool geometry
  public var kernel: [Int]?  // [kh, kw]
  public var stride: [Int]?  // [sh, sw]
  public var dilation: [Int]?  // [dh, dw]
  public var paddingMode: PaddingMode?
  public var padding: [Int]?  // [top, left, bottom, right] when explicit
  public var groups: Int?

  /// relu6 only: a weight tensor of per-channel upper bounds `[C]` that replaces 6, so that the
  /// node computes `min(max(x, 0), clampMax[c])`. Cross-layer equalization writes it (scaling
  /// channel c of the layer before by 1/s_c turns ReLU6 into a clamp at 6/s_c, exactly); nil for
  /// every imported model.
  public var clampMax: String?

  /// hard_sigmoid: y = max(0, min(1, alpha · x + beta)); leaky_relu: y = x < 0 ? alpha · x : x.
  /// nil for every other operator (and absent from their JSON).
  public var alpha: Float?
  public var beta: Float?
  /// average_pool: whether padded taps count in the divisor (ONNX `count_include_pad`); nil: false.
  public var countIncludePad: Bool?

  public init(name: String, op: OperatorKind, inputs: [String]) {
    self.name = name
    self.op = op
    self.inputs = inputs
  }

  public static func conv2d(
    _ name: String, input: String, weight: String, bias: String? = nil, kernel: [Int], stride: Int,
    padding: [Int]? = nil, same: Bool = false, groups: Int = 1
  ) -> Node {
    var node = Node(name: name, op: .conv2d, inputs: [input])
    node.weight = weight
    node.bias = bias
    node.kernel = kernel
    node.stride = [stride, stride]
    node.dilation = [1, 1]
    node.paddingMode = same ? .same : .explicit
    node.padding = same ? nil : (padding ?? [0, 0, 0, 0])
    node.groups = groups
    return node
  }

  public static func batchNorm(_ name: String, input: String, prefix: String, epsilon: Float) -> Node {
    var node = Node(name: name, op: .batchNorm, inputs: [input])
    node.weight = prefix + ".weight"
    node.bias = prefix + ".bias"
    node.runningMean = prefix + ".running_mean"
    node.runningVariance = prefix + ".running_var"
    node.epsilon = epsilon
    return node
  }

  public static func maxPool(_ name: String, input: String, kernel: Int, stride: Int, padding: Int) -> Node {
    var node = Node(name: name, op: .maxPool, inputs: [input])
    node.kernel = [kernel, kernel]
    node.stride = [stride, stride]
    node.paddingMode = .explicit
    node.padding = [padding, padding, padding, padding]
    return node
  }

  public static func linear(_ name: String, input: String, weight: String, bias: String?) -> Node {
    var node = Node(name: name, op: .linear, inputs: [input])
    node.weight = weight
    node.bias = bias
    return node
  }

  /// Explicit [top, left, bottom, right] padding for an input of `height` x `width`.
  public func resolvedPadding(height: Int, width: Int) -> [Int] {
    guard paddingMode == .same else { return padding ?? [0, 0, 0, 0] }
    let k = kernel ?? [1, 1]
    let s = stride ?? [1, 1]
    let d = dilation ?? [1, 1]
    func total(_ size: Int, _ k: Int, _ s: Int, _ d: Int) -> Int {
      let out = (size + s - 1) / s
      return max((out - 1) * s + (k - 1) * d + 1 - size, 0)
    }
    let th = total(height, k[0], s[0], d[0])
    let tw = total(width, k[1], s[1], d[1])
    return [th / 2, tw / 2, th - th / 2, tw - tw / 2]
  }
}

/// A directed acyclic graph of nodes in execution (topological) order over NHWC float tensors.
public struct Graph: Codable, Sendable, Equatable {
  public static let inputName = "input"

  public var nodes: [Node]
  public var output: String

  public init(nodes: [Node], output: String) {
    self.nodes = nodes
    self.output = output
  }

  /// Checks that names are unique, every input is produced earlier, and the output exists.
  public func validate() throws(ModelError) {
    var seen: Set<String> = [Graph.inputName]
    for node in nodes {
      for input in node.inputs where !seen.contains(input) {
        throw .invalidGraph("node '\(node.name)' reads '\(input)', which no earlier node produces")
      }
      guard seen.insert(node.name).inserted else {
        throw .invalidGraph("node name '\(node.name)' appears twice")
      }
    }
    guard seen.contains(output) else { throw .invalidGraph("graph output '\(output)' is not a node") }
  }

  /// Every weight-dictionary name the graph refers to.
  public var tensorNames: [String] {
    nodes.flatMap { [$0.weight, $0.bias, $0.runningMean, $0.runningVariance, $0.clampMax].compactMap { $0 } }
  }
}
