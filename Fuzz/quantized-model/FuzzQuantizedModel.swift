// libFuzzer target: Octet int8 model files. Two kinds of input:
// - a whole file: SafeTensors.decode, then QuantizedModelFile.decode (the JSON in the metadata,
//   the per-node tensors) and QuantizedModel.validate();
// - input starting with '{': the `octet.int8_graph` JSON alone, paired with a fixed model
//   description and with tensors of the sizes its nodes declare (when small), so that mutations
//   of the graph reach validate() instead of failing in the safetensors container first.
import CFuzzDriver
import Foundation
import OctetCore

@testable import OctetModels

let modelJSON =
  #"{"architecture":"tiny","classes":2,"inputSize":1,"preprocessing":{"cropSize":1,"mean":[0.5,0.5,0.5],"resizeShorter":1,"std":[0.5,0.5,0.5]}}"#

/// Tensors for every conv2d/linear node, of the sizes the node declares, or empty when the sizes
/// are absurd (the decoder must then refuse the model without trapping).
func tensors(for graph: QuantizedModelFile.GraphJSON) -> TensorDictionary {
  var result = TensorDictionary()
  for node in graph.nodes where node.op == .conv2d || node.op == .linear {
    let o = node.outChannels ?? 0
    var weights = o
    for f in (node.op == .conv2d ? (node.kernel ?? [1, 1]) : []) + [node.inChannels ?? 0] {
      let (p, overflow) = weights.multipliedReportingOverflow(by: f)
      weights = overflow ? -1 : p
      if weights < 0 { break }
    }
    if node.op == .conv2d, weights > 0, let g = node.groups, g > 0 { weights /= g }
    guard (0...4096).contains(o), (0...65536).contains(weights) else { continue }
    let channel = { (type: ElementType, value: UInt8) in
      HostTensor(type: type, shape: [o], bytes: [UInt8](repeating: value, count: o * 4))
    }
    result["\(node.name).weight"] = HostTensor(
      type: .int8, shape: [weights], bytes: [UInt8](repeating: 1, count: weights))
    result["\(node.name).bias"] = channel(.int32, 0)
    // m = 2^30, n = 31: a valid requantization multiplier.
    result["\(node.name).multiplier"] = HostTensor(
      type: .int32, shape: [o], bytes: Array(repeatElement([0, 0, 0, 0x40] as [UInt8], count: o).joined()))
    result["\(node.name).shift"] = HostTensor(
      type: .int32, shape: [o], bytes: Array(repeatElement([31, 0, 0, 0] as [UInt8], count: o).joined()))
    result["\(node.name).weight_scale"] = channel(.float32, 0x3C)
  }
  return result
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzOne(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
  guard let data else { return 0 }
  let bytes = Array(UnsafeBufferPointer(start: data, count: size))
  if bytes.first == UInt8(ascii: "{") {
    guard let graph = try? JSONDecoder().decode(QuantizedModelFile.GraphJSON.self, from: Data(bytes))
    else { return 0 }
    let metadata = [
      "octet.format": QuantizedModelFile.format, "octet.format_version": QuantizedModelFile.formatVersion,
      "octet.model": modelJSON, "octet.int8_graph": String(decoding: bytes, as: UTF8.self),
    ]
    _ = try? QuantizedModelFile.decode(tensors: tensors(for: graph), metadata: metadata, path: "fuzz.octet")
    return 0
  }
  guard let (tensors, metadata) = try? SafeTensors.decode(bytes) else { return 0 }
  _ = try? QuantizedModelFile.decode(tensors: tensors, metadata: metadata, path: "fuzz.octet")
  return 0
}

@_cdecl("fuzz_quantized_model_main")
public func fuzzMain(_ argc: CInt, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> CInt {
  var argc = argc
  var argv = argv
  return LLVMFuzzerRunDriver(&argc, &argv, fuzzOne)
}
