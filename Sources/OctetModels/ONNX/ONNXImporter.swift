import Foundation
import OctetCore
import SwiftProtobuf

/// An ONNX model Octet cannot import: one line naming the node, tensor or input, without the path
/// (the caller adds it).
public struct ONNXError: Error, CustomStringConvertible, Equatable {
  public var message: String
  public init(_ message: String) { self.message = message }
  public var description: String { message }
}

/// The preprocessing an ONNX model does not carry, from `octet import`'s flags; what is nil takes
/// torchvision's ImageNet defaults: the crop is the model's fixed input size (224 when the size is
/// symbolic), the resize keeps torchvision's 256/224 ratio to it, mean 0.485,0.456,0.406 and std
/// 0.229,0.224,0.225.
public struct ONNXInputOptions: Sendable, Equatable {
  public var resize: Int?
  public var crop: Int?
  public var mean: [Float]?
  public var std: [Float]?

  public init(resize: Int? = nil, crop: Int? = nil, mean: [Float]? = nil, std: [Float]? = nil) {
    self.resize = resize
    self.crop = crop
    self.mean = mean
    self.std = std
  }

  /// The preprocessing for a model whose input is `size` x `size` (nil: symbolic).
  func resolve(modelSize size: Int?, input: String) throws(ONNXError) -> Preprocessing {
    if let size, let crop, crop != size {
      throw ONNXError("input '\(input)' is \(size)x\(size) but --crop is \(crop); give --crop \(size) or leave it out")
    }
    let crop = crop ?? size ?? Preprocessing.imagenet.cropSize
    let resize = resize ?? Int((Double(crop) * 256 / 224).rounded())
    guard resize >= crop else { throw ONNXError("the resize \(resize) is smaller than the crop \(crop)") }
    return Preprocessing(
      resizeShorter: resize, cropSize: crop, mean: mean ?? Preprocessing.imagenet.mean,
      std: std ?? Preprocessing.imagenet.std)
  }
}

/// Imports a float ONNX CNN (opsets 13…21) onto Octet's float graph: the same IR the PyTorch
/// importers build, so calibrate, quantize, classify and compare run on it unchanged.
///
/// ONNX is NCHW and Octet is NHWC; weights keep ONNX's layouts, which are Octet's checkpoint layouts
/// (convolutions OIHW, linear [out, in]). Initializers and Constant nodes are folded into the nodes
/// that read them; a zero Pad before a Conv becomes the Conv's padding; MatMul followed by the Add of
/// a constant becomes one linear layer. Anything else outside the operator set is refused with the
/// node's name, op type and the model's opset, and nothing is built. The preprocessing, which ONNX
/// does not carry, comes from `ONNXInputOptions`.
public enum ONNXImporter {
  public static let supportedOpsets: ClosedRange<Int64> = 13...21
  /// The biggest ONNX file read (protobuf's own limit is 2 GiB).
  public static let maxFileSize = 2 << 30

  /// True when `url` names an ONNX file: by its extension, or by its first bytes (field 1,
  /// ir_version, as a varint, which no safetensors file or PyTorch checkpoint starts with).
  public static func looksLikeONNX(_ url: URL) -> Bool {
    if url.pathExtension.lowercased() == "onnx" { return true }
    guard let handle = FileHandle(forReadingAtPath: url.path) else { return false }
    defer { try? handle.close() }
    guard let head = try? handle.read(upToCount: 9), head.count >= 2 else { return false }
    let b = Array(head)
    // A safetensors file whose header length starts with these bytes: its 9th byte opens the JSON.
    if b.count == 9, b[8] == UInt8(ascii: "{") { return false }
    // ModelProto starts with ir_version (field 1, varint: tag 0x08) and a small version (3…20).
    return b[0] == 0x08 && (3...20).contains(b[1])
  }

  /// Reads and imports the ONNX file at `url`. Errors are `FileError`s naming the file.
  public static func load(contentsOf url: URL, options: ONNXInputOptions = ONNXInputOptions()) throws -> Model {
    let attributes = try? FileManager.default.attributesOfItem(atPath: url.path)
    if let size = (attributes?[.size] as? NSNumber)?.intValue, size > maxFileSize {
      throw FileError(path: url.path, reason: "is \(size) bytes, more than the \(maxFileSize) an ONNX file can hold")
    }
    let data: Data
    do { data = try Data(contentsOf: url) } catch {
      throw FileError(path: url.path, reason: "cannot be read: \(error.localizedDescription)")
    }
    do {
      var model = try importModel(data, options: options)
      let stem = url.deletingPathExtension().lastPathComponent
      model.info.architecture = "onnx:" + (stem.isEmpty ? "model" : stem)
      model.info.source = url.lastPathComponent
      return model
    } catch {
      throw FileError(path: url.path, reason: error.description)
    }
  }

  /// Imports a serialized ModelProto.
  public static func importModel(_ data: Data, options: ONNXInputOptions = ONNXInputOptions()) throws(ONNXError)
    -> Model
  {
    let proto: Onnx_ModelProto
    do {
      var options = BinaryDecodingOptions()
      options.messageDepthLimit = 64
      proto = try Onnx_ModelProto(serializedBytes: data, options: options)
    } catch {
      throw ONNXError("is not an ONNX model (protobuf: \(error))")
    }
    guard proto.hasGraph else { throw ONNXError("is not an ONNX model: it has no graph") }
    let defaultDomain = proto.opsetImport.filter { $0.domain.isEmpty || $0.domain == "ai.onnx" }
    guard let opset = defaultDomain.first?.version else {
      throw ONNXError("imports no version of the default ONNX operator set")
    }
    guard supportedOpsets.contains(opset) else {
      throw ONNXError(
        "uses opset \(opset); Octet imports opsets \(supportedOpsets.lowerBound)…\(supportedOpsets.upperBound) (re-export with opset_version=17)"
      )
    }
    var builder = ONNXGraphBuilder(opset: opset, options: options)
    return try builder.build(proto.graph)
  }
}
