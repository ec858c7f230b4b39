import CInt8Kernels
import Foundation
import OctetCore
import OctetModels
import Testing

@testable import OctetInt8

/// Per-channel output clamps (docs/quantization.md §7.1, cross-layer equalization's ReLU6): the
/// reference clamps channel c to [lo[c], hi[c]]; the fast path runs its kernels with the node's hull
/// clamp and a post-pass. Every backend must give the reference's bits.
@Suite struct ChannelClampTests {
  /// Layer shapes with channel counts that exercise the post-pass's 32-, 16- and 1-channel loops,
  /// dense (1x1 direct, 3x3 through im2col) and depthwise, with and without a residual add after.
  static let cases: [LayerCase] = [
    LayerCase(size: 7, cin: 24, cout: 53, kernel: 1, stride: 1, pad: [0, 0, 0, 0], groups: 1),
    LayerCase(size: 9, cin: 16, cout: 48, kernel: 3, stride: 2, pad: [1, 1, 1, 1], groups: 1),
    LayerCase(size: 10, cin: 37, cout: 37, kernel: 3, stride: 1, pad: [1, 1, 1, 1], groups: 37),
    LayerCase(size: 11, cin: 96, cout: 96, kernel: 5, stride: 2, pad: [1, 1, 2, 2], groups: 96),
    LayerCase(
      size: 8, cin: 40, cout: 40, kernel: 3, stride: 1, pad: [1, 1, 1, 1], groups: 40, residual: .layerSecond),
    LayerCase(size: 6, cin: 20, cout: 33, kernel: 1, stride: 1, pad: [0, 0, 0, 0], groups: 1, residual: .layerFirst),
  ]

  /// `makeLayerModel` with random per-channel bounds nested in the layer's clamp, which the hull
  /// clamp is then set to. Checks that the bounds change the reference's output (else the test
  /// could not fail).
  static func model(_ c: LayerCase, seed: UInt64) throws -> QuantizedModel {
    var model = try makeLayerModel(c, seed: seed)
    var rng = SeededGenerator(seed: seed ^ 0xC1A4)
    let i = model.nodes.firstIndex { $0.name == "layer" }!
    let clamp = model.nodes[i].clamp!
    let o = model.nodes[i].outChannels!
    var lo: [UInt8] = []
    var hi: [UInt8] = []
    for _ in 0..<o {
      let l = Int.random(in: clamp[0]...min(clamp[0] + 40, clamp[1]), using: &rng)
      let h = Int.random(in: max(l, clamp[1] - 150)...clamp[1], using: &rng)
      lo.append(UInt8(l))
      hi.append(UInt8(h))
    }
    model.nodes[i].channelClampLo = lo
    model.nodes[i].channelClampHi = hi
    model.nodes[i].clamp = [Int(lo.min()!), Int(hi.max()!)]
    try model.validate()
    return model
  }

  static func check(_ backend: Int8Backend, emulated: Bool = false) throws {
    for (k, c) in cases.enumerated() {
      let seed = UInt64(0xC1A0 + k)
      let model = try Self.model(c, seed: seed)
      // The bounds matter: without them the reference computes other codes.
      var plain = model
      let i = plain.nodes.firstIndex { $0.name == "layer" }!
      plain.nodes[i].channelClampLo = []
      plain.nodes[i].channelClampHi = []
      let size = model.info.inputSize
      var rng = SeededGenerator(seed: seed)
      let x = Tensor(shape: [1, size, size, 3], scalars: rng.floats(size * size * 3, in: -3...3))
      var clamped: [UInt8] = []
      var unclamped: [UInt8] = []
      _ = try Int8ReferenceExecutor(model: model).run(x) { n, t in if n == "layer" { clamped = t.values } }
      _ = try Int8ReferenceExecutor(model: plain).run(x) { n, t in if n == "layer" { unclamped = t.values } }
      #expect(clamped != unclamped, "case \(k): the per-channel bounds clamp nothing")
      try expectBitExact(
        model, backend: backend, seed: seed, context: "per-channel clamp case \(k) \(c)", emulated: emulated)
    }
  }

  @Test func scalarEqualsReference() throws { try Self.check(.scalar) }

  @Test(.enabled(if: Int8Backend.avx2.isSupported, "this CPU has no AVX2"))
  func avx2EqualsReference() throws { try Self.check(.avx2) }

  @Test(.enabled(if: Int8Backend.avx512vnni.isSupported, "this CPU has no AVX-512 VNNI"))
  func avx512vnniEqualsReference() throws { try Self.check(.avx512vnni) }

  @Test(.enabled(if: Int8Backend.amx.isSupported, "this CPU (or OS) gives no AMX-INT8"))
  func amxEqualsReference() throws { try Self.check(.amx) }

  @Test func emulatedVNNIAndAMXEqualReference() throws {
    try Self.check(.avx512vnni, emulated: true)
    try Self.check(.amx, emulated: true)
  }

  /// The C post-pass, scalar twin and AVX2 form, against a plain Swift clamp.
  @Test func postPassEqualsNaiveClamp() {
    var rng = SeededGenerator(seed: 7)
    for channels in [1, 15, 16, 17, 31, 32, 33, 53, 96, 1152] {
      let rows = 13
      let data = (0..<(rows * channels)).map { _ in UInt8.random(in: 0...255, using: &rng) }
      let lo = (0..<channels).map { _ in UInt8.random(in: 0...120, using: &rng) }
      let hi = lo.map { UInt8.random(in: $0...255, using: &rng) }
      let expected = data.indices.map { Swift.min(Swift.max(data[$0], lo[$0 % channels]), hi[$0 % channels]) }
      var scalar = data
      octet_i8_channel_clamp(&scalar, rows, channels, lo, hi)
      #expect(scalar == expected, "scalar, \(channels) channels")
      #expect(scalar != data, "\(channels) channels: nothing was clamped")
      #if arch(x86_64)
        if Int8Backend.avx2.isSupported {
          var simd = data
          octet_i8_channel_clamp__avx2(&simd, rows, channels, lo, hi)
          #expect(simd == expected, "avx2, \(channels) channels")
        }
      #endif
    }
  }

  @Test func modelFileKeepsTheBoundsAndRefusesBadOnes() throws {
    let model = try Self.model(Self.cases[0], seed: 3)
    let url = FileManager.default.temporaryDirectory.appendingPathComponent("octet-clamp-\(getpid()).safetensors")
    defer { try? FileManager.default.removeItem(at: url) }
    try QuantizedModelFile.write(model, to: url)
    let read = try QuantizedModelFile.read(contentsOf: url)
    #expect(read == model)
    #expect(!read.node(named: "layer")!.channelClampHi.isEmpty)
    // A bound outside the hull clamp, or a count that is not [O], is refused on load.
    var bad = model
    let i = bad.nodes.firstIndex { $0.name == "layer" }!
    bad.nodes[i].channelClampHi[0] = UInt8(bad.nodes[i].clamp![1] + 1 <= 255 ? bad.nodes[i].clamp![1] + 1 : 255)
    bad.nodes[i].channelClampLo[0] = UInt8(bad.nodes[i].clamp![0])
    if bad.nodes[i].clamp![1] < 255 { #expect(throws: QuantizedModelError.self) { try bad.validate() } }
    var short = model
    short.nodes[i].channelClampLo.removeLast()
    #expect(throws: QuantizedModelError.self) { try short.validate() }
    let tensors = QuantizedModelFile.tensors(for: model)
    // Version 1 files carry no checksums, so the damaged bounds reach validation.
    var metadata = try QuantizedModelFile.metadata(for: model)
    metadata["octet.format_version"] = "1"
    var damaged = TensorDictionary()
    for name in tensors.names {
      var t = tensors[name]!
      if name == "layer.clamp_lo" { t.bytes[0] = 200 }
      if name == "layer.clamp_hi" { t.bytes[0] = 100 }
      damaged[name] = t
    }
    _ = try QuantizedModelFile.decode(tensors: tensors, metadata: metadata, path: "intact.safetensors")
    #expect(throws: QuantizedModelError.self) {
      _ = try QuantizedModelFile.decode(tensors: damaged, metadata: metadata, path: "damaged.safetensors")
    }
  }
}
