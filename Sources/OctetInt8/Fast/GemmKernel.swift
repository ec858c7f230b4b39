import CInt8Kernels

/// The GEMM kernel of one layer, and the packed layout it reads.
enum GemmKernel: String, Sendable {
  case scalar
  case avx2Int16 = "avx2 (vpmaddwd)"
  case avx2Pairs = "avx2 (vpmaddubsw)"
  case avx2Quads = "avx2 (vpmaddubsw quads)"
  case avx512vnni, amx

  init(_ isa: octet_i8_isa) {
    switch isa {
    case OCTET_I8_AVX2: self = .avx2Int16
    case OCTET_I8_AVX512VNNI: self = .avx512vnni
    case OCTET_I8_AMX: self = .amx
    default: self = .scalar
    }
  }

  /// The ISA whose packing (CInt8Kernels.h layouts) this kernel reads: the pairs kernel reads
  /// the u8-row / VNNI layout of the scalar kernel.
  var layout: octet_i8_isa {
    switch self {
    case .scalar, .avx2Pairs, .avx2Quads: OCTET_I8_SCALAR
    case .avx2Int16: OCTET_I8_AVX2
    case .avx512vnni: OCTET_I8_AVX512VNNI
    case .amx: OCTET_I8_AMX
    }
  }
  var aElementSize: Int { self == .avx2Int16 ? 2 : 1 }
  /// Row and column granularity of the kernel's tiles (for splitting work between threads).
  var rowGrain: Int {
    switch self {
    case .amx: 32
    case .avx512vnni: 8
    case .scalar: 8
    case .avx2Int16, .avx2Pairs, .avx2Quads: 6
    }
  }
  var columnGrain: Int { self == .avx512vnni || self == .amx ? 32 : 16 }
}

// MARK: - AVX2 kernel choice

/// The sparse weight part of the quads kernel (CInt8Kernels.h `octet_i8_quads_split`), and the
/// dense `fit` part that gets packed.
final class QuadFixups: @unchecked Sendable {
  let fit: [Int8]
  /// Pairs of sparse entries of d (k, 16 columns); the kernel adds each pair with one vpmaddwd.
  let pairs: Int
  private let panelStart: AlignedBytes, k: AlignedBytes, d: AlignedBytes
  let table: octet_i8_fixups

  /// nil if the split could not allocate its scratch.
  init?(weights: [Int8], k: Int, n: Int) {
    let panels = (n + Int(OCTET_I8_NR) - 1) / Int(OCTET_I8_NR)
    let panelStart = AlignedBytes(count: (panels + 1) * 4)
    var fit = [Int8](repeating: 0, count: weights.count)
    func split(capacity: Int) -> (count: Int, k: AlignedBytes, d: AlignedBytes) {
      let kBytes = AlignedBytes(count: capacity * 4)
      let dBytes = AlignedBytes(count: capacity * Int(OCTET_I8_NR) * 4)
      let count = weights.withUnsafeBufferPointer { w in
        fit.withUnsafeMutableBufferPointer { f in
          octet_i8_quads_split(
            w.baseAddress, k, n, f.baseAddress, panelStart.pointer.assumingMemoryBound(to: UInt32.self),
            kBytes.pointer.assumingMemoryBound(to: UInt32.self), dBytes.pointer.assumingMemoryBound(to: Int32.self),
            capacity)
        }
      }
      return (count, kBytes, dBytes)
    }
    // One pass with room for a few fixups per panel (7-bit weights need fewer); a second one only
    // when the weights need more.
    let outOfMemory = Int(bitPattern: UInt(bitPattern: -1))
    let capacity = max(64, panels * 8)
    var result = split(capacity: capacity)
    if result.count != outOfMemory, result.count > capacity { result = split(capacity: result.count) }
    guard result.count != outOfMemory else { return nil }
    // The kernel takes the entries two at a time.
    let entryStart = panelStart.pointer.assumingMemoryBound(to: UInt32.self)
    let pairs = octet_i8_quads_pair_count(entryStart, panels)
    let pairStart = AlignedBytes(count: (panels + 1) * 4)
    let pairK = AlignedBytes(count: max(1, pairs) * 4)
    let pairD = AlignedBytes(count: max(1, pairs) * Int(OCTET_I8_NR) * 4)
    guard
      octet_i8_quads_pair(
        entryStart, result.k.pointer.assumingMemoryBound(to: UInt32.self),
        result.d.pointer.assumingMemoryBound(to: Int32.self), panels,
        pairStart.pointer.assumingMemoryBound(to: UInt32.self), pairK.pointer.assumingMemoryBound(to: UInt32.self),
        pairD.pointer.assumingMemoryBound(to: Int32.self)) == 0
    else { return nil }  // K of 65536 or more
    self.fit = fit
    self.panelStart = pairStart
    self.k = pairK
    d = pairD
    self.pairs = pairs
    table = octet_i8_fixups(
      panel_start: pairStart.pointer.assumingMemoryBound(to: UInt32.self),
      k: pairK.pointer.assumingMemoryBound(to: UInt32.self), d: pairD.pointer.assumingMemoryBound(to: Int32.self))
  }
}

/// Picks the AVX2 GEMM kernel for one layer's weights [N][K]: the cheapest of vpmaddwd (any
/// weights), vpmaddubsw pairs (only when no adjacent weight pair can saturate it) and quads (any
/// weights, plus one fixup step per pair of sparse entries), by a cost per 8 k of one 6x16 tile
/// measured on Zen 3 (docs/quantization.md §2). `forced` (tests) takes a kernel whenever it is exact.
func chooseAVX2Kernel(weights: [Int8], k: Int, n: Int, forced: GemmKernel?) -> (GemmKernel, QuadFixups?) {
  let fitsPairs = weights.withUnsafeBufferPointer { octet_i8_weights_fit_pairs($0.baseAddress, k, n) } != 0
  if forced == .avx2Int16 || (forced == .avx2Pairs && !fitsPairs) { return (.avx2Int16, nil) }
  if forced == .avx2Pairs { return (.avx2Pairs, nil) }
  guard let quads = QuadFixups(weights: weights, k: k, n: n) else {
    return (fitsPairs ? .avx2Pairs : .avx2Int16, nil)
  }
  if forced == .avx2Quads { return (.avx2Quads, quads) }
  let steps = Double((k + 7) / 8)
  let panels = Double((n + Int(OCTET_I8_NR) - 1) / Int(OCTET_I8_NR))
  let costQuads = steps + 0.5 * Double(quads.pairs) / panels
  let costPairs = fitsPairs ? 1.25 * steps : .infinity
  let costInt16 = 1.8 * steps
  if costQuads <= min(costPairs, costInt16) { return (.avx2Quads, quads) }
  return (costPairs <= costInt16 ? .avx2Pairs : .avx2Int16, nil)
}
