import Foundation

/// Errors raised while planning a float graph (fusion, names, shapes): they name the layer.
public enum GraphPlanError: Error, CustomStringConvertible, Equatable {
  case layer(String, String)

  public var description: String {
    switch self {
    case .layer(let name, let message): "layer '\(name)': \(message)"
    }
  }
}

/// A float node's operator with its attributes, checked once when a graph is planned. `Node` keeps
/// flat optional fields because that is the model file's JSON (which must not change); planners
/// read this instead of unwrapping them.
public enum Operator: Sendable, Equatable {
  case conv2d(ConvAttributes)
  case batchNorm(BatchNormAttributes)
  case relu
  case relu6
  case add
  case maxPool(PoolAttributes)
  case globalAveragePool
  case flatten
  case linear(LinearAttributes)
  /// sigmoid, hard_sigmoid, hard_swish, leaky_relu (docs/quantization.md §20).
  case unary(UnaryFunction)
  /// Elementwise product of two activations (docs/quantization.md §21).
  case mul
  /// Channel concatenation of two or more activations (docs/quantization.md §22).
  case concat
  /// k x k average pool (docs/quantization.md §23).
  case averagePool(PoolAttributes, countIncludePad: Bool)
}

/// A one-input activation other than relu/relu6, as a function of a real number. The float
/// executor evaluates it in Float, the quantizer in Double to build its lookup table (§20).
public enum UnaryFunction: Sendable, Equatable, Hashable {
  case sigmoid
  /// max(0, min(1, alpha · x + beta))
  case hardSigmoid(alpha: Float, beta: Float)
  /// x · max(0, min(1, x / 6 + 1/2)) (ONNX HardSwish: alpha 1/6, beta 1/2)
  case hardSwish
  /// x < 0 ? alpha · x : x
  case leakyRelu(alpha: Float)

  /// f(x) in Double (the lookup table's arithmetic, §20).
  public func apply(_ x: Double) -> Double {
    switch self {
    case .sigmoid: 1 / (1 + exp(-x))
    case .hardSigmoid(let a, let b): Swift.max(0, Swift.min(1, Double(a) * x + Double(b)))
    case .hardSwish: x * Swift.max(0, Swift.min(1, x / 6 + 0.5))
    case .leakyRelu(let a): x < 0 ? Double(a) * x : x
    }
  }

  /// f(x) in Float (the float executor).
  public func apply(_ x: Float) -> Float {
    switch self {
    case .sigmoid: 1 / (1 + exp(-x))
    case .hardSigmoid(let a, let b): Swift.max(0, Swift.min(1, a * x + b))
    case .hardSwish: x * Swift.max(0, Swift.min(1, x / 6 + 0.5))
    case .leakyRelu(let a): x < 0 ? a * x : x
    }
  }
}

public struct ConvAttributes: Sendable, Equatable {
  public var weight: String
  public var bias: String?
  /// [kh, kw] as the node declares it; nil: whatever the weight says.
  public var kernel: [Int]?
  /// [sh, sw]
  public var stride: [Int]
  /// [dh, dw]
  public var dilation: [Int]
  public var groups: Int
}

public struct BatchNormAttributes: Sendable, Equatable {
  public var weight: String
  public var bias: String
  public var runningMean: String
  public var runningVariance: String
  public var epsilon: Float
}

public struct PoolAttributes: Sendable, Equatable {
  /// [kh, kw]
  public var kernel: [Int]
  /// [sh, sw]
  public var stride: [Int]
}

public struct LinearAttributes: Sendable, Equatable {
  public var weight: String
  public var bias: String?
}

/// A ReLU or ReLU6 fused into the layer before it (docs/quantization.md §7).
public enum FusedActivation: String, Sendable, Equatable {
  case relu
  case relu6
}

extension Node {
  /// The operator and its attributes, with the defaults model files rely on (stride 1, dilation 1,
  /// groups 1, ε 1e-5, a pool's stride its kernel) and every field the operator needs checked.
  public func checkedOperator() throws(GraphPlanError) -> Operator {
    func pair(_ value: [Int]?, _ what: String, default fallback: [Int]) throws(GraphPlanError) -> [Int] {
      let v = value ?? fallback
      guard v.count == 2, v.allSatisfy({ $0 > 0 }) else {
        throw .layer(name, "\(what) \(v) is not two positive numbers")
      }
      return v
    }
    func checkPadding() throws(GraphPlanError) {
      if paddingMode != .same, let p = padding, p.count != 4 || p.contains(where: { $0 < 0 }) {
        throw .layer(name, "padding \(p) is not [top, left, bottom, right] >= 0")
      }
    }
    let inputCount = op == .add || op == .mul ? 2 : 1
    if op == .concat {
      guard !inputs.isEmpty else { throw .layer(name, "concat takes one input or more") }
    } else if inputs.count != inputCount {
      throw .layer(
        name,
        inputCount == 2 ? "\(op.rawValue) takes two inputs" : "\(op.rawValue) takes one input, has \(inputs.count)")
    }
    func parameter(_ value: Float?, _ what: String, default fallback: Float) throws(GraphPlanError) -> Float {
      let v = value ?? fallback
      guard v.isFinite else { throw .layer(name, "\(what) \(v) is not finite") }
      return v
    }
    switch op {
    case .conv2d:
      guard let weight else { throw .layer(name, "weight '?' is missing or not OIHW") }
      var kernel: [Int]? = nil
      if let k = self.kernel { kernel = try pair(k, "kernel", default: k) }
      let stride = try pair(stride, "stride", default: [1, 1])
      let dilation = try pair(dilation, "dilation", default: [1, 1])
      try checkPadding()
      let groups = groups ?? 1
      guard groups > 0 else { throw .layer(name, "groups \(groups) is not positive") }
      return .conv2d(
        ConvAttributes(weight: weight, bias: bias, kernel: kernel, stride: stride, dilation: dilation, groups: groups))
    case .batchNorm:
      guard let weight, let bias, let runningMean, let runningVariance else {
        throw .layer(name, "tensor '?' is missing")
      }
      return .batchNorm(
        BatchNormAttributes(
          weight: weight, bias: bias, runningMean: runningMean, runningVariance: runningVariance,
          epsilon: epsilon ?? 1e-5))
    case .relu:
      guard clampMax == nil else { throw .layer(name, "only relu6 takes per-channel bounds (clampMax)") }
      return .relu
    case .relu6: return .relu6
    case .add: return .add
    case .maxPool:
      let kernel = try pair(kernel, "kernel", default: [1, 1])
      let stride = try pair(stride, "stride", default: kernel)
      try checkPadding()
      return .maxPool(PoolAttributes(kernel: kernel, stride: stride))
    case .globalAveragePool: return .globalAveragePool
    case .flatten: return .flatten
    case .linear:
      guard let weight else { throw .layer(name, "weight '?' does not map its input's features") }
      return .linear(LinearAttributes(weight: weight, bias: bias))
    case .sigmoid: return .unary(.sigmoid)
    case .hardSwish: return .unary(.hardSwish)
    case .hardSigmoid:
      return .unary(
        .hardSigmoid(
          alpha: try parameter(alpha, "alpha", default: 0.2), beta: try parameter(beta, "beta", default: 0.5)))
    case .leakyRelu: return .unary(.leakyRelu(alpha: try parameter(alpha, "alpha", default: 0.01)))
    case .mul: return .mul
    case .concat: return .concat
    case .averagePool:
      let kernel = try pair(kernel, "kernel", default: [1, 1])
      let stride = try pair(stride, "stride", default: kernel)
      try checkPadding()
      return .averagePool(PoolAttributes(kernel: kernel, stride: stride), countIncludePad: countIncludePad ?? false)
    }
  }
}
