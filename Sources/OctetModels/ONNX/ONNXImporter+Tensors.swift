import Foundation
import OctetCore

/// A constant of an ONNX graph (an initializer or a Constant node's value), decoded and checked.
struct ONNXConstant {
  var shape: [Int]
  /// Float values (float and double tensors), nil for integer tensors.
  var floats: [Float]?
  /// Integer values (int64, int32 tensors), nil for float tensors.
  var integers: [Int64]?
  var elementCount: Int { shape.reduce(1, *) }
}

extension ONNXImporter {
  /// The largest tensor the importer decodes: 2^31 elements (8 GiB of float32), far above any CNN's
  /// weights, so a forged dimension is refused before anything is allocated.
  static let maxElements = 1 << 31

  /// The element count of `dims`, refusing negative dimensions and products past `maxElements`.
  static func elementCount(_ dims: [Int64], tensor: String) throws(ONNXError) -> Int {
    var count = 1
    for d in dims {
      guard d >= 0, d <= Int64(maxElements) else {
        throw ONNXError("tensor '\(tensor)' has dimension \(d) in \(dims), outside 0...\(maxElements)")
      }
      let (product, overflow) = count.multipliedReportingOverflow(by: Int(d))
      guard !overflow, product <= maxElements else {
        throw ONNXError("tensor '\(tensor)' has shape \(dims), more than \(maxElements) elements")
      }
      count = product
    }
    return count
  }

  /// Decodes a TensorProto held in the model file. External data (a path to another file) is
  /// refused: a model file that points elsewhere on disk is not read from there.
  static func constant(_ t: Onnx_TensorProto, name: String) throws(ONNXError) -> ONNXConstant {
    if t.dataLocation == .external || !t.externalData.isEmpty {
      throw ONNXError(
        "tensor '\(name)' keeps its data in an external file, which Octet does not read; save the model with its data inside (onnx.save(model, path, save_as_external_data=False), under 2 GB)"
      )
    }
    guard t.dims.count <= 8 else { throw ONNXError("tensor '\(name)' has rank \(t.dims.count), more than 8") }
    let count = try elementCount(t.dims, tensor: name)
    let shape = t.dims.map { Int($0) }
    let raw = t.hasRawData ? t.rawData : nil
    func checkCount(_ actual: Int, _ what: String) throws(ONNXError) {
      guard actual == count else {
        throw ONNXError("tensor '\(name)' has shape \(shape) (\(count) elements) but holds \(actual) \(what)")
      }
    }
    func littleEndian<T: FixedWidthInteger>(_ data: Data, as: T.Type) throws(ONNXError) -> [T] {
      let size = MemoryLayout<T>.size
      guard data.count == count * size else {
        throw ONNXError(
          "tensor '\(name)' has shape \(shape) (\(count) elements) but \(data.count) bytes of raw data, not \(count * size)"
        )
      }
      var values = [T](repeating: 0, count: count)
      values.withUnsafeMutableBytes { dst in _ = data.copyBytes(to: dst) }
      return values.map { T(littleEndian: $0) }
    }
    switch Onnx_TensorProto.DataType(rawValue: Int(t.dataType)) {
    case .float:
      if let raw {
        let bits = try littleEndian(raw, as: UInt32.self)
        return ONNXConstant(shape: shape, floats: bits.map(Float.init(bitPattern:)), integers: nil)
      }
      try checkCount(t.floatData.count, "floats")
      return ONNXConstant(shape: shape, floats: t.floatData, integers: nil)
    case .double:
      if let raw {
        let bits = try littleEndian(raw, as: UInt64.self)
        return ONNXConstant(shape: shape, floats: bits.map { Float(Double(bitPattern: $0)) }, integers: nil)
      }
      try checkCount(t.doubleData.count, "doubles")
      return ONNXConstant(shape: shape, floats: t.doubleData.map { Float($0) }, integers: nil)
    case .int64:
      if let raw { return ONNXConstant(shape: shape, floats: nil, integers: try littleEndian(raw, as: Int64.self)) }
      try checkCount(t.int64Data.count, "int64 values")
      return ONNXConstant(shape: shape, floats: nil, integers: t.int64Data)
    case .int32:
      if let raw {
        return ONNXConstant(
          shape: shape, floats: nil, integers: try littleEndian(raw, as: Int32.self).map { Int64($0) })
      }
      try checkCount(t.int32Data.count, "int32 values")
      return ONNXConstant(shape: shape, floats: nil, integers: t.int32Data.map { Int64($0) })
    default:
      throw ONNXError(
        "tensor '\(name)' has element type \(dataTypeName(t.dataType)); Octet reads float, double, int64 and int32 tensors"
      )
    }
  }

  static func dataTypeName(_ raw: Int32) -> String {
    guard let type = Onnx_TensorProto.DataType(rawValue: Int(raw)) else { return "\(raw) (unknown)" }
    return "\(type)".uppercased()
  }

  /// A Constant node's value: the `value` tensor or one of the scalar/list forms.
  static func constant(of node: Onnx_NodeProto, name: String) throws(ONNXError) -> ONNXConstant {
    guard node.attribute.count == 1, let a = node.attribute.first else {
      throw ONNXError("node '\(name)' (Constant) has \(node.attribute.count) attributes, not one value")
    }
    switch a.name {
    case "value": return try constant(a.t, name: name)
    case "value_float": return ONNXConstant(shape: [], floats: [a.f], integers: nil)
    case "value_floats": return ONNXConstant(shape: [a.floats.count], floats: a.floats, integers: nil)
    case "value_int": return ONNXConstant(shape: [], floats: nil, integers: [a.i])
    case "value_ints": return ONNXConstant(shape: [a.ints.count], floats: nil, integers: a.ints)
    default:
      throw ONNXError("node '\(name)' (Constant) holds a '\(a.name)' value; Octet reads tensors, floats and ints")
    }
  }
}
