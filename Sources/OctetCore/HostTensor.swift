/// The element types that checkpoint and model files can carry.
/// Raw values are the safetensors dtype names.
public enum ElementType: String, Sendable, CaseIterable, Codable {
  case float64 = "F64"
  case float32 = "F32"
  case float16 = "F16"
  case bfloat16 = "BF16"
  case int64 = "I64"
  case int32 = "I32"
  case int16 = "I16"
  case int8 = "I8"
  case uint8 = "U8"
  case bool = "BOOL"

  public var byteSize: Int {
    switch self {
    case .float64, .int64: 8
    case .float32, .int32: 4
    case .float16, .bfloat16, .int16: 2
    case .int8, .uint8, .bool: 1
    }
  }
}

/// A tensor as it is stored in a file: element type, shape and little-endian bytes, contiguous
/// row-major. This is what the checkpoint importers produce and the model-file writer consumes.
public struct HostTensor: Sendable, Equatable {
  public var type: ElementType
  public var shape: [Int]
  public var bytes: [UInt8]

  public init(type: ElementType, shape: [Int], bytes: [UInt8]) {
    precondition(shape.reduce(1, *) * type.byteSize == bytes.count, "byte count does not match shape")
    self.type = type
    self.shape = shape
    self.bytes = bytes
  }

  public init(float32 tensor: Tensor) {
    self.type = .float32
    self.shape = tensor.shape
    self.bytes = tensor.scalars.withUnsafeBytes { Array($0) }
  }

  public init(shape: [Int], float32 scalars: [Float]) {
    self.init(float32: Tensor(shape: shape, scalars: scalars))
  }

  public var elementCount: Int { shape.reduce(1, *) }

  /// The values widened or narrowed to Float. Integer types convert exactly where Float can hold them.
  public func floats() -> [Float] {
    let n = elementCount
    return bytes.withUnsafeBytes { raw -> [Float] in
      switch type {
      case .float32:
        return (0..<n).map {
          Float(bitPattern: raw.loadUnaligned(fromByteOffset: $0 * 4, as: UInt32.self).littleEndian)
        }
      case .float64:
        return (0..<n).map {
          Float(Double(bitPattern: raw.loadUnaligned(fromByteOffset: $0 * 8, as: UInt64.self).littleEndian))
        }
      case .float16:
        return (0..<n).map { Float(halfBits: raw.loadUnaligned(fromByteOffset: $0 * 2, as: UInt16.self).littleEndian) }
      case .bfloat16:
        return (0..<n).map {
          Float(bitPattern: UInt32(raw.loadUnaligned(fromByteOffset: $0 * 2, as: UInt16.self).littleEndian) << 16)
        }
      case .int64:
        return (0..<n).map { Float(Int64(littleEndian: raw.loadUnaligned(fromByteOffset: $0 * 8, as: Int64.self))) }
      case .int32:
        return (0..<n).map { Float(Int32(littleEndian: raw.loadUnaligned(fromByteOffset: $0 * 4, as: Int32.self))) }
      case .int16:
        return (0..<n).map { Float(Int16(littleEndian: raw.loadUnaligned(fromByteOffset: $0 * 2, as: Int16.self))) }
      case .int8: return (0..<n).map { Float(raw.load(fromByteOffset: $0, as: Int8.self)) }
      case .uint8, .bool: return (0..<n).map { Float(raw[$0]) }
      }
    }
  }

  /// A float32 tensor of the same shape.
  public func float32Tensor() -> Tensor { Tensor(shape: shape, scalars: floats()) }
}

extension Float {
  /// IEEE 754 binary16 to binary32, exact (no Float16 type on all Linux targets).
  public init(halfBits h: UInt16) {
    let sign = UInt32(h >> 15) << 31
    let exponent = Int((h >> 10) & 0x1F)
    let mantissa = UInt32(h & 0x3FF)
    if exponent == 0 {
      // zero or subnormal: value = mantissa * 2^-24
      let magnitude = Float(mantissa) * Float(sign: .plus, exponent: -24, significand: 1)
      self = sign != 0 ? -magnitude : magnitude
    } else if exponent == 31 {
      self = Float(bitPattern: sign | 0x7F80_0000 | (mantissa << 13))
    } else {
      self = Float(bitPattern: sign | UInt32(exponent - 15 + 127) << 23 | (mantissa << 13))
    }
  }
}

/// Named tensors in file order, as a state_dict or a safetensors file holds them.
public struct TensorDictionary: Sendable, Equatable {
  public private(set) var names: [String] = []
  public private(set) var storage: [String: HostTensor] = [:]

  public init() {}

  public init(_ pairs: [(String, HostTensor)]) {
    for (name, tensor) in pairs { self[name] = tensor }
  }

  public var count: Int { names.count }

  public subscript(name: String) -> HostTensor? {
    get { storage[name] }
    set {
      if let newValue {
        if storage.updateValue(newValue, forKey: name) == nil { names.append(name) }
      } else if storage.removeValue(forKey: name) != nil {
        names.removeAll { $0 == name }
      }
    }
  }

  public func contains(_ name: String) -> Bool { storage[name] != nil }
}
