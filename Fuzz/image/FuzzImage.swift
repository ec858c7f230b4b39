// libFuzzer target: ImageDecoder.decode(data:) — format sniffing, the libjpeg-turbo and libpng glue
// (setjmp error paths), header size checks, and the conversions to RGB8. The pixel limit is lowered
// so that one input cannot take the fuzzer's whole memory budget legitimately.
import CFuzzDriver
import OctetImages

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzOne(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
  guard let data else { return 0 }
  let bytes = Array(UnsafeBufferPointer(start: data, count: size))
  guard let image = try? ImageDecoder.decode(data: bytes, name: "fuzz", pixelLimit: 1 << 22) else {
    return 0
  }
  precondition(image.pixels.count == image.width * image.height * 3, "wrong pixel count")
  return 0
}

@_cdecl("fuzz_image_main")
public func fuzzMain(_ argc: CInt, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> CInt {
  var argc = argc
  var argv = argv
  return LLVMFuzzerRunDriver(&argc, &argv, fuzzOne)
}
