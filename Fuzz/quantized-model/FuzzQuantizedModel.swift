// libFuzzer target: an Octet int8 model file — SafeTensors.decode, then QuantizedModelFile.decode
// (the JSON in the metadata, the per-node tensors) and QuantizedModel.validate().
import CFuzzDriver
import OctetModels

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzOne(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
  guard let data else { return 0 }
  let bytes = Array(UnsafeBufferPointer(start: data, count: size))
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
