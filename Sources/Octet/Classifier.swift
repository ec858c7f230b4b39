import Foundation

/// One ranked class of a classification.
public struct Prediction: Codable, Sendable, Equatable {
  public var index: Int
  public var name: String
  public var probability: Float
}

/// A model as loaded from disk: float, or quantized to int8.
public enum LoadedModel: Sendable {
  case float(Model)
  case int8(QuantizedModel)

  public var info: ModelInfo {
    switch self {
    case .float(let model): model.info
    case .int8(let model): model.info
    }
  }
}

/// Loads models and classifies images, with the float executor or, for int8 models, the fast integer
/// kernels of `backend` (`Int8Runtime.make`: `Int8FastExecutor`, or the reference interpreter when the
/// backend is `.reference`).
///
/// ```swift
/// let classifier = try Classifier(contentsOf: URL(fileURLWithPath: "efficientnet-lite0.safetensors"))
/// for p in try classifier.classify(imageAt: URL(fileURLWithPath: "cat.jpg"), top: 5) {
///   print(p.name, p.probability)
/// }
/// ```
public final class Classifier: @unchecked Sendable {
  public enum Runtime: Sendable {
    case float(FloatExecutor)
    case int8(any Int8Runner)
  }

  public let info: ModelInfo
  public let runtime: Runtime

  public init(model: Model) throws {
    info = model.info
    runtime = .float(try FloatExecutor(model: model, winograd: true))
  }

  /// An int8 model on `backend`'s kernels (`auto`: the fastest this CPU supports), `threads`
  /// threads per image.
  public init(quantized model: QuantizedModel, backend: Int8Backend = .auto, threads: Int = 1) throws {
    info = model.info
    runtime = .int8(try Int8Runtime.make(model: model, backend: backend, threads: threads))
  }

  public convenience init(_ loaded: LoadedModel, backend: Int8Backend = .auto, threads: Int = 1) throws {
    switch loaded {
    case .float(let model): try self.init(model: model)
    case .int8(let model): try self.init(quantized: model, backend: backend, threads: threads)
    }
  }

  /// Loads an Octet model file (float or int8), or imports a PyTorch checkpoint / safetensors
  /// state_dict on the fly. `backend` and `threads` apply to int8 models.
  public convenience init(
    contentsOf url: URL, architecture: Architecture? = nil, backend: Int8Backend = .auto, threads: Int = 1
  ) throws {
    try self.init(
      try ModelLoader.loadAny(contentsOf: url, architecture: architecture), backend: backend, threads: threads)
  }

  /// "float32" or "int8 (<backend>)".
  public var runtimeName: String {
    switch runtime {
    case .float: "float32"
    case .int8(let runner): "int8 (\(runner.backendName))"
    }
  }

  /// The network input for one image: `[1, S, S, 3]`.
  public func input(for image: RGBImage) -> Tensor {
    info.preprocessing.apply(to: image)
  }

  /// Logits `[classes]` for one image.
  public func logits(for image: RGBImage) -> [Float] {
    logits(forInput: input(for: image))
  }

  /// Logits (dequantized for int8) for a preprocessed input `[1, S, S, 3]`.
  public func logits(forInput input: Tensor) -> [Float] {
    switch runtime {
    case .float(let executor): executor.run(input).scalars
    case .int8(let executor): executor.logits(for: input)
    }
  }

  public func classify(imageAt url: URL, top k: Int = 5) throws -> [Prediction] {
    Self.top(k, of: logits(for: try ImageDecoder.decode(contentsOf: url)), classes: info.classes)
  }

  /// The `k` most probable classes of `logits` (softmax probabilities), highest first.
  public static func top(_ k: Int, of logits: [Float], classes: Int) -> [Prediction] {
    let maxLogit = logits.max() ?? 0
    let exps = logits.map { Double(exp($0 - maxLogit)) }
    let total = exps.reduce(0, +)
    return topIndices(k, of: logits).map {
      Prediction(index: $0, name: ClassNames.name($0, classes: classes), probability: Float(exps[$0] / total))
    }
  }

  /// Indices of the `k` largest values, largest first; ties go to the lower index.
  public static func topIndices(_ k: Int, of values: [Float]) -> [Int] {
    Array(values.indices.sorted { values[$0] > values[$1] || (values[$0] == values[$1] && $0 < $1) }.prefix(k))
  }
}

/// Turns a path into a model.
public enum ModelLoader {
  /// A float or int8 Octet model file, or a checkpoint imported on the fly.
  public static func loadAny(contentsOf url: URL, architecture: Architecture? = nil) throws -> LoadedModel {
    guard FileManager.default.fileExists(atPath: url.path) else {
      throw FileError(path: url.path, reason: "no such file")
    }
    if try isSafeTensors(url) {
      let (tensors, metadata) = try SafeTensors.read(contentsOf: url)
      if metadata["octet.format"] == QuantizedModelFile.format {
        return .int8(try QuantizedModelFile.decode(tensors: tensors, metadata: metadata, path: url.path))
      }
    }
    return .float(try load(contentsOf: url, architecture: architecture))
  }

  /// An int8 Octet model file.
  public static func loadQuantized(contentsOf url: URL) throws -> QuantizedModel {
    guard case .int8(let model) = try loadAny(contentsOf: url) else {
      throw FileError(
        path: url.path, reason: "is a float model or checkpoint, not an int8 model; make one with `octet quantize`")
    }
    return model
  }

  /// An Octet model file (safetensors with Octet metadata), a PyTorch checkpoint (zip or legacy), a
  /// plain safetensors state_dict, or an ONNX model; checkpoints and ONNX models are imported in
  /// memory. `onnx` gives an ONNX model's preprocessing (ONNX does not carry it; torchvision's
  /// ImageNet defaults where unset).
  public static func load(
    contentsOf url: URL, architecture: Architecture? = nil, resolution: Int? = nil,
    onnx: ONNXInputOptions = ONNXInputOptions()
  ) throws -> Model {
    guard FileManager.default.fileExists(atPath: url.path) else {
      throw FileError(path: url.path, reason: "no such file")
    }
    let safeTensors = try isSafeTensors(url)
    if !safeTensors, ONNXImporter.looksLikeONNX(url) {
      return try ONNXImporter.load(contentsOf: url, options: onnx)
    }
    if safeTensors {
      let (tensors, metadata) = try SafeTensors.read(contentsOf: url)
      if metadata["octet.format"] != nil {
        return try ModelFile.decode(tensors: tensors, metadata: metadata, path: url.path)
      }
      return try importWeights(tensors, from: url, architecture: architecture, resolution: resolution)
    }
    let tensors = try PyTorchCheckpoint.load(contentsOf: url)
    return try importWeights(tensors, from: url, architecture: architecture, resolution: resolution)
  }

  /// Builds a model from a state_dict's tensors, detecting the architecture when not given.
  public static func importWeights(
    _ tensors: TensorDictionary, from url: URL, architecture: Architecture?, resolution: Int? = nil
  ) throws -> Model {
    guard let arch = architecture ?? Architecture.detect(tensors) else {
      throw ModelError.unknownArchitecture(
        "'\(url.path)': the tensor names match no known architecture (torchvision's ResNet family: 'conv1.weight' and 'layer1.0.conv1.weight'; its MobileNetV2: 'features.0.0.weight' and 'features.1.conv.0.0.weight'; EfficientNet-Lite: '_conv_stem.weight' and '_blocks.0._depthwise_conv.weight'); first names: \(tensors.names.prefix(3).joined(separator: ", "))"
      )
    }
    do {
      var model = try arch.build(from: tensors, resolution: resolution)
      model.info.source = url.lastPathComponent
      return model
    } catch {
      // Name the file: the architecture's message names the tensors.
      throw FileError(path: url.path, reason: error.description)
    }
  }

  /// safetensors files start with an 8-byte little-endian header length and a JSON object.
  static func isSafeTensors(_ url: URL) throws -> Bool {
    var isDirectory: ObjCBool = false
    if FileManager.default.fileExists(atPath: url.path, isDirectory: &isDirectory), isDirectory.boolValue {
      throw FileError(path: url.path, reason: "is a folder, not a model file")
    }
    guard let handle = FileHandle(forReadingAtPath: url.path) else {
      throw FileError(path: url.path, reason: "cannot open it for reading")
    }
    defer { try? handle.close() }
    // The throwing read: the old readData(ofLength:) traps on a read error.
    let head: Data
    do { head = try handle.read(upToCount: 9) ?? Data() } catch {
      throw FileError(path: url.path, reason: "cannot be read: \(error.localizedDescription)")
    }
    return head.count == 9 && head[head.startIndex + 8] == UInt8(ascii: "{")
  }
}
