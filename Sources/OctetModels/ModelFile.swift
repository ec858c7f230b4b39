import Foundation
import OctetCore

/// Octet model files are safetensors files. Their `__metadata__` holds:
/// - `octet.format`: "octet-float" for a float model;
/// - `octet.format_version`: `ModelFile.formatVersion`;
/// - `octet.model`: `ModelInfo` as JSON;
/// - `octet.graph`: `Graph` as JSON.
/// The tensors are the float32 weights under their checkpoint names.
public enum ModelFile {
  public static let formatVersion = "1"
  public static let floatFormat = "octet-float"

  static let encoder: JSONEncoder = {
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.sortedKeys]
    return encoder
  }()

  public static func metadata(for model: Model) throws -> [String: String] {
    [
      "octet.format": floatFormat,
      "octet.format_version": formatVersion,
      "octet.model": String(decoding: try encoder.encode(model.info), as: UTF8.self),
      "octet.graph": String(decoding: try encoder.encode(model.graph), as: UTF8.self),
    ]
  }

  /// Writes atomically: a failure leaves the old file, or none.
  public static func write(_ model: Model, to url: URL) throws {
    try SafeTensors.write(model.weights, metadata: try metadata(for: model), to: url)
  }

  /// Reads a float model file and checks its graph against its tensors.
  public static func read(contentsOf url: URL) throws -> Model {
    let path = url.path
    let (tensors, metadata) = try SafeTensors.read(contentsOf: url)
    guard let format = metadata["octet.format"] else {
      throw ModelError.notAModelFile(path: path, reason: "its safetensors metadata has no 'octet.format'; import a checkpoint with `octet import` first")
    }
    guard format == floatFormat else {
      throw ModelError.notAModelFile(path: path, reason: "it holds format '\(format)', not a float model")
    }
    guard metadata["octet.format_version"] == formatVersion else {
      throw ModelError.unsupportedFormatVersion(path: path, found: metadata["octet.format_version"] ?? "none", supported: formatVersion)
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
      guard let t = tensors[name] else { missing.append(.missing(name: name)); continue }
      if t.type != .float32 {
        throw ModelError.notAModelFile(path: path, reason: "tensor '\(name)' is \(t.type.rawValue), expected F32")
      }
    }
    if !missing.isEmpty { throw ModelError.tensors(missing) }
    return Model(info: info, graph: graph, weights: tensors)
  }
}
