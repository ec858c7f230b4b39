// libFuzzer target: PyTorchCheckpoint.load(bytes:) on legacy checkpoints
// (`_use_new_zipfile_serialization=False`): five pickles through PickleMachine, then the storages.
// Inputs start with the pickle PROTO opcode, so mutations land in the unpickler directly.
import CFuzzDriver
import Foundation
import OctetCore
import OctetModels

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzOne(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
  guard let data else { return 0 }
  guard let tensors = try? PyTorchCheckpoint.load(bytes: Data(bytes: data, count: size), name: "fuzz.pth")
  else { return 0 }
  for name in tensors.names {
    let t = tensors[name]!
    precondition(
      t.bytes.count == t.elementCount * t.type.byteSize, "tensor '\(name)' has the wrong byte count")
  }
  return 0
}

@_cdecl("fuzz_checkpoint_legacy_main")
public func fuzzMain(_ argc: CInt, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> CInt {
  var argc = argc
  var argv = argv
  return LLVMFuzzerRunDriver(&argc, &argv, fuzzOne)
}
