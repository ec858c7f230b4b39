import Foundation
import OctetCore

/// Octet model files are safetensors files. Their `__metadata__` holds:
/// - `octet.format`: "octet-float" for a float model;
/// - `octet.format_version`: `ModelFile.formatVersion`;
/// - `octet.model`: `ModelInfo` as JSON;
/// - `octet.graph`: `Graph` as JSON;
/// - `octet.tensor_crc32`: a CRC-32 of every tensor (`TensorChecksums`), verified on load.
/// The tensors are the float32 weights under their checkpoint names.
///
/// Versions: "2" added `octet.tensor_crc32`. Version "1" files (no checksums, otherwise the same) are
/// still read, unverified; any other version is refused with a message to upgrade or re-import.
public enum ModelFile {
  public static let formatVersion = "2"
  /// The version of graphs with the ONNX operators of issue 15 (sigmoid, hard_sigmoid, hard_swish,
  /// leaky_relu, mul, concat, average_pool): "3", the same format, so that an older Octet refuses
  /// them with its upgrade message. Every other model is still written as "2" (the same bytes).
  public static let onnxOperatorsFormatVersion = "3"
  /// The versions `read` accepts.
  public static let readableVersions = ["1", "2", "3"]

  static let onnxOperators: Set<OperatorKind> = [
    .sigmoid, .hardSigmoid, .hardSwish, .leakyRelu, .mul, .concat, .averagePool,
  ]

  /// The version `model` is written with.
  public static func version(for model: Model) -> String {
    model.graph.nodes.contains { onnxOperators.contains($0.op) } ? onnxOperatorsFormatVersion : formatVersion
  }
  public static let floatFormat = "octet-float"

  static let encoder: JSONEncoder = {
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.sortedKeys]
    return encoder
  }()

  public static func metadata(for model: Model) throws -> [String: String] {
    [
      "octet.format": floatFormat,
      "octet.format_version": version(for: model),
      "octet.model": String(decoding: try encoder.encode(model.info), as: UTF8.self),
      "octet.graph": String(decoding: try encoder.encode(model.graph), as: UTF8.self),
      TensorChecksums.metadataKey: try TensorChecksums.metadataValue(for: model.weights),
    ]
  }

  /// Writes atomically: a failure leaves the old file, or none.
  public static func write(_ model: Model, to url: URL) throws {
    try SafeTensors.write(model.weights, metadata: try metadata(for: model), to: url)
  }

  /// Reads a float model file and checks its graph against its tensors.
  public static func read(contentsOf url: URL) throws -> Model {
    let (tensors, metadata) = try SafeTensors.read(contentsOf: url)
    return try decode(tensors: tensors, metadata: metadata, path: url.path)
  }

  /// Rebuilds a float model from a safetensors file's tensors and metadata: checks the format version,
  /// the tensor checksums (version 2), the graph, and that every weight is finite float32.
  public static func decode(tensors: TensorDictionary, metadata: [String: String], path: String) throws -> Model {
    guard let format = metadata["octet.format"] else {
      throw ModelError.notAModelFile(
        path: path,
        reason: "its safetensors metadata has no 'octet.format'; import a checkpoint with `octet import` first")
    }
    guard format == floatFormat else {
      throw ModelError.wrongModelKind(path: path, found: format, expected: floatFormat)
    }
    let version = metadata["octet.format_version"] ?? "none"
    guard readableVersions.contains(version) else {
      throw ModelError.unsupportedFormatVersion(
        path: path, found: version, supported: readableVersions.joined(separator: " and "))
    }
    if version != "1" {
      try TensorChecksums.verify(
        tensors, metadata: metadata, path: path, remedy: "re-import the checkpoint (`octet import`)")
    }
    let decoder = JSONDecoder()
    let info: ModelInfo
    let graph: Graph
    do {
      info = try decoder.decode(ModelInfo.self, from: Data((metadata["octet.model"] ?? "").utf8))
      graph = try decoder.decode(Graph.self, from: Data((metadata["octet.graph"] ?? "").utf8))
    } catch {
      throw ModelError.notAModelFile(path: path, reason: "its model description is not valid: \(error)")
    }
    try graph.validate()
    var missing: [TensorError] = []
    for name in graph.tensorNames {
      guard let t = tensors[name] else {
        missing.append(.missing(name: name))
        continue
      }
      if t.type != .float32 {
        throw ModelError.notAModelFile(path: path, reason: "tensor '\(name)' is \(t.type.rawValue), expected F32")
      }
      // A NaN weight would make every output NaN without a word; a checksum only proves the file is
      // as written, not that what was written is sound.
      if !isFinite(t) {
        throw ModelError.damaged(
          path: path, reason: "tensor '\(name)' holds NaN or infinite values",
          remedy: "re-import the checkpoint (`octet import`)")
      }
    }
    if !missing.isEmpty {
      throw ModelError.notAModelFile(path: path, reason: ModelError.tensors(missing).description)
    }
    return Model(info: info, graph: graph, weights: tensors)
  }

  /// Whether every float32 of `t` is finite: its exponent bits are not all ones.
  static func isFinite(_ t: HostTensor) -> Bool {
    t.bytes.withUnsafeBytes { raw in
      for i in 0..<raw.count / 4
      where UInt32(littleEndian: raw.loadUnaligned(fromByteOffset: i * 4, as: UInt32.self)) & 0x7F80_0000
        == 0x7F80_0000
      {
        return false
      }
      return true
    }
  }
}
