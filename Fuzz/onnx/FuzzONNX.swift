// libFuzzer target: ONNXImporter.importModel — protobuf decoding (swift-protobuf), opsets, tensor
// dtypes, dims and raw data lengths, external data, the graph's order (missing values, cycles),
// every operator's attributes and shapes. Whatever imports must be a valid Octet graph.
import CFuzzDriver
import Foundation
import OctetCore
import OctetModels

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzOne(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
  guard let data else { return 0 }
  let bytes = Data(UnsafeBufferPointer(start: data, count: size))
  guard let model = try? ONNXImporter.importModel(bytes) else { return 0 }
  try! model.graph.validate()
  for name in model.graph.tensorNames {
    precondition(model.weights.contains(name), "graph names missing tensor \(name)")
  }
  return 0
}

@_cdecl("fuzz_onnx_main")
public func fuzzMain(_ argc: CInt, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> CInt {
  var argc = argc
  var argv = argv
  return LLVMFuzzerRunDriver(&argc, &argv, fuzzOne)
}
