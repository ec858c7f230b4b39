import Foundation
import OctetCore

/// Octet int8 model files are safetensors files. Their `__metadata__` holds:
/// - `octet.format`: "octet-int8";
/// - `octet.format_version`: `QuantizedModelFile.formatVersion`;
/// - `octet.model`: `ModelInfo` as JSON;
/// - `octet.int8_graph`: `{"nodes": [QuantizedNode…], "output": name}` as JSON, with every scale and
///   zero point;
/// - `octet.tensor_crc32`: a CRC-32 of every tensor (`TensorChecksums`), verified on load;
/// - `octet.calibration_sha256` (optional): a JSON array of the SHA-256 of every calibration image
///   file (`QuantizedModel.calibrationImages`). Like the other metadata it is not covered by the
///   tensor checksums; files without it (written before it existed) read with `calibrationImages` nil.
/// - `octet.recipe`, `octet.ranges` (optional): how the model was made and the range table it was
///   quantized with (`QuantizedModel.recipe`, `.ranges`, JSON text); nil when absent (older files).
/// The tensors are the per-channel arrays of conv2d and linear nodes: `<node>.weight` I8
/// (conv2d `[O, kh, kw, I/groups]`, linear `[O, I]`), `<node>.bias` I32 `[O]` (zero point folded),
/// `<node>.multiplier` and `<node>.shift` I32 `[O]`, `<node>.weight_scale` F32 `[O]`; and, for a
/// conv2d with per-channel clamps only (cross-layer equalization), `<node>.clamp_lo` and
/// `<node>.clamp_hi` U8 `[O]` (optional: files without them read as before).
///
/// Exact input quantization (docs/quantization.md §12) adds `pixelInput` to the `quantize_input`
/// node, `borderClasses` to the first convolution and its tensor `<node>.border_bias` I32
/// `[classes, O]`. 16-bit layers (§17): a conv2d node with `input_bits` or `output_bits` 16 has
/// `<node>.bias` I64 instead of I32, and one with `weight_bits` 16 has `<node>.weight` I16.
///
/// Versions: "2" added `octet.tensor_crc32`. "3" added exact input quantization, per-channel clamps
/// and 16-bit layers; a model without them is still written as version "2" (the same bytes as
/// before, readable by older Octet), one with them as "3", so that an older Octet refuses it instead
/// of running it wrongly. Version "1" files (no checksums, otherwise the same as "2") are still read,
/// unverified; any other version is refused with a message to upgrade or quantize again.
public enum QuantizedModelFile {
  public static let format = "octet-int8"
  public static let formatVersion = "2"
  /// The version of models that use exact input quantization, per-channel clamps or 16-bit layers.
  public static let exactInputFormatVersion = "3"
  /// The version of files with 16-bit layers (docs/quantization.md §17): the same "3".
  public static let mixedPrecisionFormatVersion = exactInputFormatVersion
  /// The version of models with the ONNX operators lookup, mul, concat or average_pool
  /// (docs/quantization.md §20-§23): "4", everything of "3" plus those, so that an older Octet
  /// refuses such a model with its upgrade message.
  public static let onnxOperatorsFormatVersion = "4"
  /// The versions `decode` accepts.
  public static let readableVersions = ["1", "2", "3", "4"]

  /// The version `model` is written with.
  public static func version(for model: QuantizedModel) -> String {
    if model.nodes.contains(where: { [.lookup, .mul, .concat, .averagePool].contains($0.op) }) {
      return onnxOperatorsFormatVersion
    }
    return model.nodes.contains {
      $0.pixelInput != nil || $0.borderClasses != nil || !$0.channelClampHi.isEmpty || $0.isWide
    }
      ? exactInputFormatVersion : formatVersion
  }

  /// Whether a file of `version` may hold what version 3 added (exact input, per-channel clamps,
  /// 16-bit layers).
  static func hasVersion3Features(_ version: String) -> Bool { version == "3" || version == "4" }

  struct GraphJSON: Codable {
    var nodes: [QuantizedNode]
    var output: String
  }

  static let tensorSuffixes = ["weight", "bias", "multiplier", "shift", "weight_scale"]

  public static func metadata(for model: QuantizedModel) throws -> [String: String] {
    try metadata(for: model, tensors: tensors(for: model))
  }

  static func metadata(for model: QuantizedModel, tensors: TensorDictionary) throws -> [String: String] {
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.sortedKeys]
    var metadata = [
      TensorChecksums.metadataKey: try TensorChecksums.metadataValue(for: tensors),
      "octet.format": format,
      "octet.format_version": version(for: model),
      "octet.model": String(decoding: try encoder.encode(model.info), as: UTF8.self),
      "octet.int8_graph": String(
        decoding: try encoder.encode(GraphJSON(nodes: model.nodes, output: model.output)), as: UTF8.self),
    ]
    if let images = model.calibrationImages {
      metadata[calibrationKey] = String(decoding: try encoder.encode(images), as: UTF8.self)
    }
    if let recipe = model.recipe { metadata[recipeKey] = recipe }
    if let ranges = model.ranges { metadata[rangesKey] = ranges }
    return metadata
  }

  static let calibrationKey = "octet.calibration_sha256"
  static let recipeKey = "octet.recipe"
  static let rangesKey = "octet.ranges"

  public static func tensors(for model: QuantizedModel) -> TensorDictionary {
    var tensors = TensorDictionary()
    for node in model.nodes where node.op == .conv2d || node.op == .linear {
      let o = node.outChannels ?? 0
      let weightShape =
        node.op == .conv2d
        ? [o] + (node.kernel ?? [1, 1]) + [(node.inChannels ?? 0) / max(node.groups ?? 1, 1)]
        : [o, node.inChannels ?? 0]
      tensors["\(node.name).weight"] =
        node.weightBits == 16
        ? HostTensor(type: .int16, shape: weightShape, bytes: littleEndianBytes(node.weights16))
        : HostTensor(type: .int8, shape: weightShape, bytes: node.weights.map { UInt8(bitPattern: $0) })
      tensors["\(node.name).bias"] =
        node.isWide
        ? HostTensor(type: .int64, shape: [o], bytes: littleEndianBytes(node.bias64))
        : HostTensor(type: .int32, shape: [o], bytes: littleEndianBytes(node.bias))
      tensors["\(node.name).multiplier"] = HostTensor(
        type: .int32, shape: [o], bytes: littleEndianBytes(node.multipliers))
      tensors["\(node.name).shift"] = HostTensor(
        type: .int32, shape: [o], bytes: littleEndianBytes(node.shifts))
      tensors["\(node.name).weight_scale"] = HostTensor(
        type: .float32, shape: [o], bytes: littleEndianBytes(node.weightScales.map { $0.bitPattern }))
      if let classes = node.borderClasses {
        tensors["\(node.name).border_bias"] = HostTensor(
          type: .int32, shape: [classes.count, o], bytes: littleEndianBytes(node.borderBias))
      }
      if !node.channelClampLo.isEmpty || !node.channelClampHi.isEmpty {
        tensors["\(node.name).clamp_lo"] = HostTensor(
          type: .uint8, shape: [node.channelClampLo.count], bytes: node.channelClampLo)
        tensors["\(node.name).clamp_hi"] = HostTensor(
          type: .uint8, shape: [node.channelClampHi.count], bytes: node.channelClampHi)
      }
    }
    for node in model.nodes where node.op == .lookup {
      tensors["\(node.name).table"] = HostTensor(type: .uint8, shape: [node.table.count], bytes: node.table)
    }
    return tensors
  }

  /// Validates, then writes atomically: a failure leaves the old file, or none.
  public static func write(_ model: QuantizedModel, to url: URL) throws {
    try model.validate()
    let tensors = tensors(for: model)
    try SafeTensors.write(tensors, metadata: try metadata(for: model, tensors: tensors), to: url)
  }

  public static func read(contentsOf url: URL) throws -> QuantizedModel {
    let (tensors, metadata) = try SafeTensors.read(contentsOf: url)
    return try decode(tensors: tensors, metadata: metadata, path: url.path)
  }

  /// Rebuilds and validates a model from a safetensors file's tensors and metadata.
  public static func decode(tensors: TensorDictionary, metadata: [String: String], path: String) throws
    -> QuantizedModel
  {
    guard let found = metadata["octet.format"] else {
      throw QuantizedModelError.notAQuantizedModel(
        path: path, reason: "its safetensors metadata has no 'octet.format'; make one with `octet quantize`")
    }
    guard found == format else {
      throw ModelError.wrongModelKind(path: path, found: found, expected: format)
    }
    let version = metadata["octet.format_version"] ?? "none"
    guard readableVersions.contains(version) else {
      throw QuantizedModelError.unsupportedFormatVersion(
        path: path, found: version, supported: readableVersions.joined(separator: " and "))
    }
    if version != "1" {
      try TensorChecksums.verify(
        tensors, metadata: metadata, path: path, remedy: "quantize the float model again (`octet quantize`)")
    }
    let info: ModelInfo
    let graph: GraphJSON
    do {
      let decoder = JSONDecoder()
      info = try decoder.decode(ModelInfo.self, from: Data((metadata["octet.model"] ?? "").utf8))
      graph = try decoder.decode(GraphJSON.self, from: Data((metadata["octet.int8_graph"] ?? "").utf8))
    } catch {
      throw QuantizedModelError.notAQuantizedModel(
        path: path, reason: "its int8 graph description is not valid: \(error)")
    }
    var nodes = graph.nodes
    if !hasVersion3Features(version), let wide = nodes.first(where: { $0.isWide }) {
      throw QuantizedModelError.invalidNode(
        wide.name, "is a 16-bit layer in a version \(version) file; 16-bit layers need version 3")
    }
    var used: Set<String> = []
    for i in nodes.indices where nodes[i].op == .conv2d || nodes[i].op == .linear {
      let name = nodes[i].name
      func tensor(_ suffix: String, _ type: ElementType) throws -> HostTensor {
        let key = "\(name).\(suffix)"
        guard let t = tensors[key] else { throw QuantizedModelError.tensor(key, "is missing from '\(path)'") }
        guard t.type == type else {
          throw QuantizedModelError.tensor(key, "is \(t.type.rawValue), expected \(type.rawValue)")
        }
        used.insert(key)
        return t
      }
      if hasVersion3Features(version), nodes[i].weightBits == 16 {
        nodes[i].weights16 = integers(try tensor("weight", .int16))
      } else {
        nodes[i].weights = try tensor("weight", .int8).bytes.map { Int8(bitPattern: $0) }
      }
      if hasVersion3Features(version), nodes[i].isWide {
        nodes[i].bias64 = integers(try tensor("bias", .int64))
      } else {
        nodes[i].bias = int32s(try tensor("bias", .int32))
      }
      nodes[i].multipliers = int32s(try tensor("multiplier", .int32))
      nodes[i].shifts = int32s(try tensor("shift", .int32))
      nodes[i].weightScales = try tensor("weight_scale", .float32).floats()
      if let classes = nodes[i].borderClasses {
        guard hasVersion3Features(version) else {
          throw QuantizedModelError.notAQuantizedModel(
            path: path, reason: "node '\(name)' has border classes, which format version \(version) does not have")
        }
        let t = try tensor("border_bias", .int32)
        guard t.shape == [classes.count, nodes[i].outChannels ?? -1] else {
          throw QuantizedModelError.tensor(
            "\(name).border_bias",
            "has shape \(t.shape), expected [\(classes.count), \(nodes[i].outChannels ?? 0)] (classes, output channels)"
          )
        }
        nodes[i].borderBias = int32s(t)
      }
      if tensors["\(name).clamp_lo"] != nil || tensors["\(name).clamp_hi"] != nil {
        nodes[i].channelClampLo = try tensor("clamp_lo", .uint8).bytes
        nodes[i].channelClampHi = try tensor("clamp_hi", .uint8).bytes
      }
    }
    if version != onnxOperatorsFormatVersion,
      let node = nodes.first(where: { [.lookup, .mul, .concat, .averagePool].contains($0.op) })
    {
      throw QuantizedModelError.notAQuantizedModel(
        path: path,
        reason: "node '\(node.name)' is a \(node.op.rawValue) node, which format version \(version) does not have")
    }
    for i in nodes.indices where nodes[i].op == .lookup {
      let key = "\(nodes[i].name).table"
      guard let t = tensors[key] else { throw QuantizedModelError.tensor(key, "is missing from '\(path)'") }
      guard t.type == .uint8, t.shape == [256] else {
        throw QuantizedModelError.tensor(key, "is \(t.type.rawValue) \(t.shape), expected U8 [256]")
      }
      used.insert(key)
      nodes[i].table = t.bytes
    }
    if let extra = tensors.names.first(where: { !used.contains($0) }) {
      throw QuantizedModelError.tensor(extra, "in '\(path)' belongs to no int8 node")
    }
    var model = QuantizedModel(info: info, nodes: nodes, output: graph.output)
    if let text = metadata[calibrationKey] {
      guard let images = try? JSONDecoder().decode([String].self, from: Data(text.utf8)) else {
        throw QuantizedModelError.notAQuantizedModel(
          path: path, reason: "its '\(calibrationKey)' is not a JSON array of strings")
      }
      model.calibrationImages = images
    }
    model.recipe = metadata[recipeKey]
    model.ranges = metadata[rangesKey]
    try model.validate()
    return model
  }

  static func littleEndianBytes<T: FixedWidthInteger>(_ values: [T]) -> [UInt8] {
    var bytes: [UInt8] = []
    bytes.reserveCapacity(values.count * MemoryLayout<T>.size)
    for v in values { withUnsafeBytes(of: v.littleEndian) { bytes.append(contentsOf: $0) } }
    return bytes
  }

  static func integers<T: FixedWidthInteger>(_ t: HostTensor) -> [T] {
    t.bytes.withUnsafeBytes { raw in
      (0..<t.elementCount).map {
        T(littleEndian: raw.loadUnaligned(fromByteOffset: $0 * MemoryLayout<T>.size, as: T.self))
      }
    }
  }

  static func int32s(_ t: HostTensor) -> [Int32] {
    t.bytes.withUnsafeBytes { raw in
      (0..<t.elementCount).map {
        Int32(littleEndian: raw.loadUnaligned(fromByteOffset: $0 * 4, as: Int32.self))
      }
    }
  }
}
