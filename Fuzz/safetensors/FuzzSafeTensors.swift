// libFuzzer target: SafeTensors.decode — header length, the JSON header, dtypes, shapes,
// data_offsets (bounds, overlaps), and the metadata.
import CFuzzDriver
import OctetCore
import OctetModels

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzOne(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
  guard let data else { return 0 }
  let bytes = Array(UnsafeBufferPointer(start: data, count: size))
  guard let (tensors, metadata) = try? SafeTensors.decode(bytes) else { return 0 }
  // Whatever decodes must survive a round trip unchanged.
  guard let encoded = try? SafeTensors.encode(tensors, metadata: metadata) else { return 0 }
  let again = try! SafeTensors.decode(encoded)
  precondition(again.tensors == tensors && again.metadata == metadata, "round trip changed the file")
  return 0
}

@_cdecl("fuzz_safetensors_main")
public func fuzzMain(_ argc: CInt, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> CInt {
  var argc = argc
  var argv = argv
  return LLVMFuzzerRunDriver(&argc, &argv, fuzzOne)
}
