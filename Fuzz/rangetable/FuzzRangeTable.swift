// libFuzzer target: RangeTable.decode — the range table JSON (size and nesting limits, then
// JSONDecoder, then validate()).
import CFuzzDriver
import Foundation
import OctetCalibration

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzOne(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
  guard let data else { return 0 }
  guard let table = try? RangeTable.decode(Data(bytes: data, count: size), path: "fuzz.json") else {
    return 0
  }
  // What decodes is valid, and what it encodes to reads back the same.
  let again = try! RangeTable.decode(Data(table.encoded().utf8), path: "again.json")
  precondition(again.tensors.count == table.tensors.count, "round trip changed the table")
  return 0
}

@_cdecl("fuzz_rangetable_main")
public func fuzzMain(_ argc: CInt, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> CInt {
  var argc = argc
  var argv = argv
  return LLVMFuzzerRunDriver(&argc, &argv, fuzzOne)
}
