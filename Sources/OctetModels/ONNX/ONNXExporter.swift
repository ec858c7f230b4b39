import Foundation
import OctetCore
import SwiftProtobuf

/// An int8 model that has no exact QDQ ONNX form, or a graph the exporter does not know: one line
/// naming the node and what to do (the caller adds the path).
public struct ONNXExportError: Error, CustomStringConvertible, Equatable {
  public var message: String
  public init(_ message: String) { self.message = message }
  public var description: String { message }
}

/// Writes an int8 model as a standard QDQ ONNX graph (opset 13) that ONNX Runtime loads and runs
/// with the model's scales and zero points (docs/quantization.md §25; docs/cli.md, `octet export`):
///
/// - the graph input is the float, normalized image `[N, 3, S, S]` (NCHW); the resize, crop and
///   normalization stay outside ONNX and are written into the model's `metadata_props`
///   (`octet.preprocessing`);
/// - `QuantizeLinear` of the input with the model's input scale and zero point (uint8);
/// - every convolution and the classifier read `DequantizeLinear`s of their uint8 input, of their
///   int8 per-channel weights (axis 0, zero point 0) and of their int32 biases (scale
///   `s_in · s_w[c]`, docs/quantization.md §5, with the input zero point unfolded from Octet's
///   stored bias: `b_q = b_q' + z_in · Σ w_q`); a float `Conv` or `Gemm`; then `QuantizeLinear`
///   with the node's output scale and zero point. A fused ReLU/ReLU6 whose clamp (§7) is the whole
///   uint8 range is the `QuantizeLinear`'s own saturation and gets no node; a narrower clamp is a
///   `Relu` (lo = z_out) or a `Clip` to the clamp's real bounds; per-channel clamps (§7.1) are a
///   `Max` and `Min` with `[1, C, 1, 1]` bounds;
/// - residual adds, max pools and the global average pool sit between `DequantizeLinear` and
///   `QuantizeLinear` pairs; flatten reorders the uint8 tensor to Octet's NHWC order first;
/// - the classifier's output is the float logits `s_in · s_w[c] · acc[c]`, where Octet keeps int32
///   logits at one common scale (§11).
///
/// The uint8 tensors are named after Octet's integer nodes (the input's is `input.q`), so an
/// intermediate tensor can be compared layer by layer. ONNX Runtime requantizes in float with
/// round-half-to-even where Octet uses a fixed-point multiplier with ties toward +infinity (§3):
/// codes can differ by one step, so the two are close but not bit-exact.
///
/// Exact input quantization (§12) has no pure QDQ form (the pixel input's zero point `255 · mean_c` is
/// not a whole number, and the stem's border biases depend on the position): the input becomes
/// `Mul` by `255 · std_c`, `Add` of `255 · mean_c` and a `QuantizeLinear` at scale 1 (the pixels), and
/// the stem reads `DequantizeLinear(p) − 255 · mean_c`, which ONNX's zero padding pads correctly,
/// with a float bias `s_w · (b + Σ w_q · 255 · mean_c)`; ORT runs that one convolution in float.
///
/// Refused, one line, nothing written: 16-bit layers (§17; QDQ's int16 needs opset 21 and ORT has no
/// int16 convolution kernels).
public enum ONNXExporter {
  /// The opset the exported graph declares: per-channel `DequantizeLinear` (axis) needs 13.
  public static let opset: Int64 = 13
  /// IR version 7 is the one that goes with opset 13.
  public static let irVersion: Int64 = 7
  /// The uint8 tensor of the network input.
  public static let inputTensor = "input.q"

  /// The serialized ONNX model.
  public static func export(_ model: QuantizedModel) throws(ONNXExportError) -> Data {
    let proto = try modelProto(model)
    do { return try proto.serializedData() } catch {
      throw ONNXExportError("cannot serialize the ONNX model: \(error)")
    }
  }

  /// Exports and writes the ONNX file whole or not at all (`AtomicFile`).
  public static func write(_ model: QuantizedModel, to url: URL) throws {
    let data = try export(model)
    try AtomicFile.write(data, to: url)
  }

  /// The name of the uint8 ONNX tensor that holds integer node `name`'s output.
  public static func tensorName(of name: String) -> String { name == Graph.inputName ? inputTensor : name }

  static func modelProto(_ model: QuantizedModel) throws(ONNXExportError) -> Onnx_ModelProto {
    do { try model.validate() } catch { throw ONNXExportError("the int8 model is invalid: \(error)") }
    try checkExportable(model)
    var builder = QDQGraphBuilder(model: model)
    for node in model.nodes { try builder.add(node) }

    var graph = Onnx_GraphProto()
    graph.name = model.info.architecture
    graph.node = builder.nodes
    graph.initializer = builder.initializers
    let size = Int64(model.info.inputSize)
    graph.input = [valueInfo(Graph.inputName, elementType: .float, dims: [nil, 3, size, size])]
    graph.output = [valueInfo(model.output, elementType: .float, dims: [nil, Int64(model.info.classes)])]

    var proto = Onnx_ModelProto()
    proto.irVersion = irVersion
    var opsetID = Onnx_OperatorSetIdProto()
    opsetID.domain = ""
    opsetID.version = opset
    proto.opsetImport = [opsetID]
    proto.producerName = "octet"
    proto.docString =
      "Octet int8 model as QDQ (QuantizeLinear/DequantizeLinear around float operators). Input: the float image "
      + "[N, 3, \(size), \(size)] after the preprocessing in metadata 'octet.preprocessing'; output: float logits."
    proto.graph = graph
    proto.metadataProps = metadata(model).map { key, value in
      var entry = Onnx_StringStringEntryProto()
      entry.key = key
      entry.value = value
      return entry
    }
    return proto
  }

  /// What the exporter refuses before building anything (one line, naming the node).
  static func checkExportable(_ model: QuantizedModel) throws(ONNXExportError) {
    if let wide = model.nodes.first(where: { $0.isWide || $0.weightBits == 16 }) {
      throw ONNXExportError(
        "node '\(wide.name)' is a 16-bit layer (\(wide.inputBits == 16 ? wide.precision : "16-bit output"), docs/quantization.md §17), which QDQ export does not write (ONNX Runtime has no int16 convolution); quantize without --a16-layers/--a16-budget to export the model"
      )
    }
  }

  /// The model's description in `metadata_props`: what ONNX does not carry (the preprocessing).
  static func metadata(_ model: QuantizedModel) -> [(String, String)] {
    let p = model.info.preprocessing
    func list(_ values: [Float]) -> String { "[" + values.map { "\($0)" }.joined(separator: ", ") + "]" }
    let preprocessing =
      "{\"resize_shorter\": \(p.resizeShorter), \"crop\": \(p.cropSize), \"mean\": \(list(p.mean)), "
      + "\"std\": \(list(p.std)), \"resize\": \"bilinear (PIL), shorter side\", "
      + "\"input\": \"NCHW float32 RGB, (pixel / 255 - mean) / std\"}"
    var entries: [(String, String)] = [
      ("octet.preprocessing", preprocessing),
      ("octet.architecture", model.info.architecture),
      ("octet.classes", "\(model.info.classes)"),
      ("octet.input_size", "\(model.info.inputSize)"),
    ]
    if let source = model.info.source { entries.append(("octet.source", source)) }
    if let recipe = model.recipe { entries.append(("octet.recipe", recipe)) }
    return entries
  }

  static func valueInfo(_ name: String, elementType: Onnx_TensorProto.DataType, dims: [Int64?]) -> Onnx_ValueInfoProto {
    var tensorType = Onnx_TypeProto.Tensor()
    tensorType.elemType = Int32(elementType.rawValue)
    var shape = Onnx_TensorShapeProto()
    shape.dim = dims.map { d in
      var dim = Onnx_TensorShapeProto.Dimension()
      if let d { dim.dimValue = d } else { dim.dimParam = "N" }
      return dim
    }
    tensorType.shape = shape
    var type = Onnx_TypeProto()
    type.tensorType = tensorType
    var info = Onnx_ValueInfoProto()
    info.name = name
    info.type = type
    return info
  }
}
