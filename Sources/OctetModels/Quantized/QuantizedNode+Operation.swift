import OctetCore

/// An integer node's operator with its attributes, checked once when a model is planned.
/// `QuantizedNode` keeps flat optional fields because that is the int8 model file's JSON (which must
/// not change); the int8 planners read this instead of unwrapping them.
public enum QuantizedOperation: Sendable, Equatable {
  case quantizeInput
  case conv2d(Int8ConvAttributes)
  case add(Int8AddAttributes)
  case maxPool(Int8PoolAttributes)
  case globalAveragePool(Int8AveragePoolAttributes)
  case flatten
  case linear(Int8LinearAttributes)
  /// docs/quantization.md §20-§23.
  case lookup(table: [UInt8])
  case mul(Int8MulAttributes)
  case concat(Int8ConcatAttributes)
  case averagePool(Int8WindowAveragePoolAttributes)
}

public struct Int8MulAttributes: Sendable, Equatable {
  public var inputA: ActivationQuantization, inputB: ActivationQuantization
  /// M = s_a · s_b / s_out.
  public var requant: RequantMultiplier
}

public struct Int8ConcatAttributes: Sendable, Equatable {
  public var inputs: [ActivationQuantization]
  /// M_i = s_i / s_out, per input.
  public var requant: [RequantMultiplier]
}

public struct Int8WindowAveragePoolAttributes: Sendable, Equatable {
  public var kernel: [Int], stride: [Int], padding: [Int]
  public var input: ActivationQuantization
  /// Entry t − 1: M_t = s_in / (s_out · t) for a window of t taps.
  public var requant: [RequantMultiplier]
  public var countIncludePad: Bool

  public init(
    kernel: [Int], stride: [Int], padding: [Int], input: ActivationQuantization, requant: [RequantMultiplier],
    countIncludePad: Bool
  ) {
    self.kernel = kernel
    self.stride = stride
    self.padding = padding
    self.input = input
    self.requant = requant
    self.countIncludePad = countIncludePad
  }
}

public struct Int8ConvAttributes: Sendable, Equatable {
  public var inChannels: Int, outChannels: Int
  /// [kh, kw]
  public var kernel: [Int]
  /// [sh, sw]
  public var stride: [Int]
  /// [top, left, bottom, right]
  public var padding: [Int]
  public var groups: Int
  public var input: ActivationQuantization
  /// Output clamp in the uint8 domain.
  public var clampLo: Int32, clampHi: Int32
}

public struct Int8AddAttributes: Sendable, Equatable {
  public var inputA: ActivationQuantization, inputB: ActivationQuantization
  public var multipliers: AddMultipliers
  public var clampLo: Int32, clampHi: Int32
}

public struct Int8PoolAttributes: Sendable, Equatable {
  public var kernel: [Int], stride: [Int], padding: [Int]
}

public struct Int8AveragePoolAttributes: Sendable, Equatable {
  public var input: ActivationQuantization
  public var requant: RequantMultiplier
}

/// The classifier (its input quantization, which it does not need, is in `inputQuantization`).
public struct Int8LinearAttributes: Sendable, Equatable {
  public var inFeatures: Int, outFeatures: Int
}

extension QuantizedNode {
  /// The operator and its attributes; throws for a field the operator needs that is missing or
  /// malformed (`QuantizedModel.validate` checks the same, with the values' ranges).
  public func operation() throws(QuantizedModelError) -> QuantizedOperation {
    func missing(_ what: String) -> QuantizedModelError { .invalidNode(name, "\(op.rawValue) needs \(what)") }
    func window() throws(QuantizedModelError) -> (kernel: [Int], stride: [Int], padding: [Int]) {
      guard let k = kernel, k.count == 2, let s = stride, s.count == 2, let p = padding, p.count == 4 else {
        throw missing("kernel [kh, kw], stride [sh, sw] and padding [t, l, b, r]")
      }
      return (k, s, p)
    }
    func clampBounds() throws(QuantizedModelError) -> (Int32, Int32) {
      guard let c = clamp, c.count == 2 else { throw missing("a clamp [lo, hi]") }
      return (Int32(c[0]), Int32(c[1]))
    }
    switch op {
    case .quantizeInput: return .quantizeInput
    case .flatten: return .flatten
    case .conv2d:
      guard let i = inChannels, let o = outChannels, let q = inputQuantization, q.count == 1 else {
        throw missing("inChannels, outChannels and its input quantization")
      }
      let (k, s, p) = try window()
      let (lo, hi) = try clampBounds()
      return .conv2d(
        Int8ConvAttributes(
          inChannels: i, outChannels: o, kernel: k, stride: s, padding: p, groups: groups ?? 1, input: q[0],
          clampLo: lo, clampHi: hi))
    case .add:
      guard let q = inputQuantization, q.count == 2, let m = addMultipliers else {
        throw missing("two input quantizations and its add multipliers")
      }
      let (lo, hi) = try clampBounds()
      return .add(Int8AddAttributes(inputA: q[0], inputB: q[1], multipliers: m, clampLo: lo, clampHi: hi))
    case .maxPool:
      let (k, s, p) = try window()
      return .maxPool(Int8PoolAttributes(kernel: k, stride: s, padding: p))
    case .globalAveragePool:
      guard let q = inputQuantization, q.count == 1, let r = requant else {
        throw missing("its input quantization and its requantization multiplier")
      }
      return .globalAveragePool(Int8AveragePoolAttributes(input: q[0], requant: r))
    case .linear:
      guard let i = inChannels, let o = outChannels else { throw missing("inChannels and outChannels") }
      return .linear(Int8LinearAttributes(inFeatures: i, outFeatures: o))
    case .lookup:
      guard table.count == 256 else { throw missing("a table of 256 values") }
      return .lookup(table: table)
    case .mul:
      guard let q = inputQuantization, q.count == 2, let r = requant else {
        throw missing("two input quantizations and its requantization multiplier")
      }
      return .mul(Int8MulAttributes(inputA: q[0], inputB: q[1], requant: r))
    case .concat:
      guard let q = inputQuantization, let r = inputRequant, q.count == inputs.count, r.count == inputs.count else {
        throw missing("an input quantization and a multiplier per input")
      }
      return .concat(Int8ConcatAttributes(inputs: q, requant: r))
    case .averagePool:
      let (k, s, p) = try window()
      guard k.allSatisfy({ $0 > 0 && $0 <= 1 << 16 }), let q = inputQuantization, q.count == 1, let r = poolRequant,
        r.count == k[0] * k[1]
      else {
        throw missing("its input quantization and one multiplier per tap count")
      }
      return .averagePool(
        Int8WindowAveragePoolAttributes(
          kernel: k, stride: s, padding: p, input: q[0], requant: r, countIncludePad: countIncludePad ?? false))
    }
  }
}
