// libFuzzer target: PyTorchCheckpoint.load(bytes:) on zip checkpoints (torch >= 1.6): the zip
// directory and records (ZIPFoundation), the byteorder record, and data.pkl through PickleMachine.
import CFuzzDriver
import Foundation
import OctetCore
import OctetModels

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzOne(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
  guard let data else { return 0 }
  guard let tensors = try? PyTorchCheckpoint.load(bytes: Data(bytes: data, count: size), name: "fuzz.pth")
  else { return 0 }
  // A checkpoint that loads is consistent: each tensor holds exactly shape x dtype bytes.
  for name in tensors.names {
    let t = tensors[name]!
    precondition(
      t.bytes.count == t.elementCount * t.type.byteSize, "tensor '\(name)' has the wrong byte count")
  }
  return 0
}

@_cdecl("fuzz_checkpoint_zip_main")
public func fuzzMain(_ argc: CInt, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> CInt {
  var argc = argc
  var argv = argv
  return LLVMFuzzerRunDriver(&argc, &argv, fuzzOne)
}
