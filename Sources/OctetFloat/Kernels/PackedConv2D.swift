import CFloatKernels
import Dispatch
import OctetCore
import Synchronization

/// A 2-D convolution whose weights are packed once, at plan-build time, for the fast kernels.
///
/// Input `[N, H, W, inChannels]` -> output `[N, OH, OW, outChannels]` (NHWC), with `OH, OW` from
/// `Conv2DGeometry.outputSize`. Computes `activation(conv(input) + bias + residual)`.
///
/// Strategy: depthwise convolutions run a direct NHWC kernel; 1x1 stride-1 unpadded convolutions
/// are one GEMM on the input viewed as `[N*H*W, inChannels]`; every other convolution builds an
/// im2col tile (rows = output pixels, K ordered (kh, kw, cin)) in a reused scratch buffer and
/// multiplies it by weights packed as `[kh*kw*cin, cout]`, one GEMM per group. Bias, residual and
/// activation are applied in registers before the GEMM stores (avx2fma), or in one pass over the
/// output right after the OpenBLAS GEMM (portable).
public final class PackedConv2D: @unchecked Sendable {
  public let geometry: Conv2DGeometry
  public let activation: Activation

  private enum Method {
    /// Depthwise kernel; weight `[kh*kw][C]`.
    case depthwise(weight: AlignedFloatBuffer)
    /// GEMM directly on the input (1x1, stride 1, no padding); one B `[cinPerGroup, coutPerGroup]`
    /// per group.
    case pointwise(groups: [GEMMWeights])
    /// im2col + GEMM; one B `[kh*kw*cinPerGroup, coutPerGroup]` per group.
    case im2col(groups: [GEMMWeights])
    /// Winograd F(2x2, 3x3) (avx2fma; 3x3, stride 1, one group, channels multiples of 8): one B
    /// `[cin, cout]` per position ξ of the 4x4 transformed tile, U[ξ] = (G g Gᵀ)[ξ]; the portable
    /// path runs im2col on weights made from `weightOIHW` on first use (`direct`).
    case winograd(u: [GEMMWeights], weightOIHW: [Float])
  }

  private let method: Method
  private let bias: AlignedFloatBuffer?
  /// The im2col tiles, reused across calls; a concurrent call finds them taken and allocates its own.
  private let scratch = Mutex<[AlignedFloatBuffer]>([])
  /// A Winograd convolution's im2col weights, for the portable path (made on first use).
  private let direct = Mutex<[GEMMWeights]?>(nil)

  /// `weightOIHW` is `[outChannels, inChannels / groups, kernelH, kernelW]` (PyTorch layout),
  /// `bias` is `[outChannels]` or nil.
  /// `winograd`: compute 3x3 stride-1 convolutions with Winograd F(2x2, 3x3) on the avx2fma path
  /// (2.25 times fewer multiply-adds, a few more float roundings; `winogradApplies`); otherwise,
  /// and on the portable path, they run as im2col + GEMM.
  public init(
    weightOIHW: [Float], bias: [Float]?, geometry g: Conv2DGeometry, activation: Activation,
    winograd: Bool = false
  ) {
    precondition(
      g.inChannels > 0 && g.outChannels > 0 && g.kernelH > 0 && g.kernelW > 0 && g.strideH > 0
        && g.strideW > 0 && g.dilationH > 0 && g.dilationW > 0 && g.groups > 0,
      "invalid convolution geometry \(g)")
    precondition(
      g.padTop >= 0 && g.padLeft >= 0 && g.padBottom >= 0 && g.padRight >= 0,
      "negative padding in \(g)")
    precondition(
      g.inChannels % g.groups == 0 && g.outChannels % g.groups == 0,
      "groups \(g.groups) must divide inChannels \(g.inChannels) and outChannels \(g.outChannels)")
    let cinG = g.inChannelsPerGroup
    let coutG = g.outChannelsPerGroup
    let taps = g.kernelH * g.kernelW
    precondition(
      weightOIHW.count == g.outChannels * cinG * taps,
      "weight holds \(weightOIHW.count) floats, expected [\(g.outChannels), \(cinG), \(g.kernelH), \(g.kernelW)]"
    )
    if let bias {
      precondition(
        bias.count == g.outChannels, "bias holds \(bias.count) floats, expected \(g.outChannels)")
    }
    FloatKernels.configureOnce()
    self.geometry = g
    self.activation = activation
    self.bias = bias.map(AlignedFloatBuffer.init(copying:))

    if g.isDepthwise {
      // OIHW with I == 1 -> [tap][channel].
      let packed = AlignedFloatBuffer(count: taps * g.outChannels)
      for c in 0..<g.outChannels {
        for tap in 0..<taps { packed.pointer[tap * g.outChannels + c] = weightOIHW[c * taps + tap] }
      }
      method = .depthwise(weight: packed)
      return
    }

    let path = FloatKernels.path
    if winograd && path == .avx2fma && Self.winogradApplies(g) {
      method = .winograd(
        u: Self.winogradWeights(weightOIHW, cin: cinG, cout: coutG, path: path), weightOIHW: weightOIHW)
      return
    }
    method = Self.gemmMethod(weightOIHW, geometry: g, path: path)
  }

  /// Whether this convolution runs Winograd F(2x2, 3x3) on the avx2fma path.
  public var isWinograd: Bool {
    if case .winograd = method { return true }
    return false
  }

  /// Whether `winograd: true` changes how a convolution of this geometry runs: 3x3, stride 1,
  /// dilation 1, one group, input and output channels multiples of 8.
  public static func winogradApplies(_ g: Conv2DGeometry) -> Bool {
    g.kernelH == 3 && g.kernelW == 3 && g.strideH == 1 && g.strideW == 1 && g.dilationH == 1
      && g.dilationW == 1 && g.groups == 1 && g.inChannels % 8 == 0 && g.outChannels % 8 == 0
  }

  /// U[ξ][i][o] = (G g_{o,i} Gᵀ)[ξ] for the 16 positions ξ of the 4x4 tile, as 16 GEMM B matrices
  /// [cin, cout]. Computed in Double, rounded once to Float.
  private static func winogradWeights(_ w: [Float], cin: Int, cout: Int, path: FloatKernels.Path) -> [GEMMWeights] {
    let plane = cin * cout
    var u = [Float](repeating: 0, count: 16 * plane)
    w.withUnsafeBufferPointer { w in
      u.withUnsafeMutableBufferPointer { u in
        for o in 0..<cout {
          for i in 0..<cin {
            let g = w.baseAddress! + (o * cin + i) * 9
            // Row r of t = G g (rows of G: [1 0 0], [½ ½ ½], [½ −½ ½], [0 0 1]), then row r of
            // U = t Gᵀ: the same combination of t's row.
            for r in 0..<4 {
              func rowOfG(_ c: Int) -> Double {
                let (g0, g1, g2) = (Double(g[c]), Double(g[3 + c]), Double(g[6 + c]))
                switch r {
                case 0: return g0
                case 1: return 0.5 * (g0 + g1 + g2)
                case 2: return 0.5 * (g0 - g1 + g2)
                default: return g2
                }
              }
              let t = (rowOfG(0), rowOfG(1), rowOfG(2))
              let at = r * 4 * plane + i * cout + o
              u[at] = Float(t.0)
              u[at + plane] = Float(0.5 * (t.0 + t.1 + t.2))
              u[at + 2 * plane] = Float(0.5 * (t.0 - t.1 + t.2))
              u[at + 3 * plane] = Float(t.2)
            }
          }
        }
      }
    }
    return (0..<16).map { xi in
      GEMMWeights(k: cin, n: cout, rowMajor: Array(u[xi * plane..<(xi + 1) * plane]), eagerPath: path)
    }
  }

  /// The im2col (or, for 1x1 stride-1 unpadded, pointwise) method with its packed weights.
  private static func gemmMethod(_ weightOIHW: [Float], geometry g: Conv2DGeometry, path: FloatKernels.Path) -> Method {
    let cinG = g.inChannelsPerGroup
    let coutG = g.outChannelsPerGroup
    let taps = g.kernelH * g.kernelW
    var groups: [GEMMWeights] = []
    for group in 0..<g.groups {
      // OIHW -> [(kh, kw, cin)][cout] for this group's output channels.
      var b = [Float](repeating: 0, count: taps * cinG * coutG)
      for o in 0..<coutG {
        for i in 0..<cinG {
          for tap in 0..<taps {
            b[(tap * cinG + i) * coutG + o] =
              weightOIHW[((group * coutG + o) * cinG + i) * taps + tap]
          }
        }
      }
      groups.append(GEMMWeights(k: taps * cinG, n: coutG, rowMajor: b, eagerPath: path))
    }
    let pointwise =
      g.kernelH == 1 && g.kernelW == 1 && g.strideH == 1 && g.strideW == 1
      && g.padTop == 0 && g.padLeft == 0 && g.padBottom == 0 && g.padRight == 0
    return pointwise ? .pointwise(groups: groups) : .im2col(groups: groups)
  }

  /// `input [N, H, W, inChannels]` -> `[N, OH, OW, outChannels]`. If `residual` is given (same shape
  /// as the output), the result is `activation(conv + bias + residual)`.
  public func callAsFunction(_ input: Tensor, residual: Tensor? = nil) -> Tensor {
    callAsFunction(input, residual: residual, kernelPath: FloatKernels.path)
  }

  /// As `callAsFunction(_:residual:)`, on the given kernel path (which must be available).
  public func callAsFunction(
    _ input: Tensor, residual: Tensor?, kernelPath path: FloatKernels.Path
  ) -> Tensor {
    let g = geometry
    precondition(
      input.rank == 4 && input.channels == g.inChannels,
      "conv input has shape \(input.shape), expected [N, H, W, \(g.inChannels)]")
    precondition(input.height > 0 && input.width > 0, "conv input \(input.shape) is empty")
    let (oh, ow) = g.outputSize(inputHeight: input.height, inputWidth: input.width)
    precondition(oh > 0 && ow > 0, "conv window \(g) does not fit input \(input.shape)")
    let outShape = [input.batch, oh, ow, g.outChannels]
    if let residual {
      precondition(
        residual.shape == outShape, "residual has shape \(residual.shape), expected \(outShape)")
    }
    precondition(FloatKernels.isAvailable(path), "kernel path \(path) is not supported by this CPU")

    var window = octet_f32_window(
      batch: Int32(input.batch), in_h: Int32(input.height), in_w: Int32(input.width),
      in_stride: Int32(g.inChannels), out_h: Int32(oh), out_w: Int32(ow),
      kernel_h: Int32(g.kernelH), kernel_w: Int32(g.kernelW),
      stride_h: Int32(g.strideH), stride_w: Int32(g.strideW),
      pad_top: Int32(g.padTop), pad_left: Int32(g.padLeft),
      dilation_h: Int32(g.dilationH), dilation_w: Int32(g.dilationW))
    let count = outShape.reduce(1, *)
    guard count > 0 else { return Tensor(zeros: outShape) }  // batch 0 or no channels
    let scalars = [Float](unsafeUninitializedCapacity: count) { out, initialized in
      input.scalars.withUnsafeBufferPointer { x in
        withResidualPointer(residual) { res in
          run(path: path, window: &window, x: x.baseAddress!, residual: res, out: out.baseAddress!)
        }
      }
      initialized = count
    }
    return Tensor(shape: outShape, scalars: scalars)
  }

  private func run(
    path: FloatKernels.Path, window: inout octet_f32_window, x: UnsafePointer<Float>,
    residual: UnsafePointer<Float>?, out: UnsafeMutablePointer<Float>
  ) {
    let g = geometry
    let act = activation

    switch method {
    case .depthwise(let weight):
      switch path {
      case .portable:
        octet_f32_dwconv_nhwc__portable(
          &window, x, weight.pointer, biasPointer, residual, out, act.kernelCode)
      case .avx2fma:
        #if arch(x86_64) || arch(i386)
          octet_f32_dwconv_nhwc__avx2fma(
            &window, x, weight.pointer, biasPointer, residual, out, act.kernelCode)
        #else
          preconditionFailure("the avx2fma path exists only on x86")
        #endif
      }

    case .pointwise(let groups):
      let (cinG, coutG) = (g.inChannelsPerGroup, g.outChannelsPerGroup)
      for (group, b) in groups.enumerated() {
        gemm(
          path: path, m: Self.rows(window), a: x + group * cinG, lda: g.inChannels, b: b,
          c: out + group * coutG, ldc: g.outChannels, bias: biasPointer.map { $0 + group * coutG },
          residual: residual.map { $0 + group * coutG }, ldr: g.outChannels, activation: act)
      }

    case .im2col(let groups):
      runIm2col(groups, path: path, window: window, x: x, residual: residual, out: out)

    case .winograd(let u, let weightOIHW):
      if path == .avx2fma {
        runWinograd(u, window: window, x: x, residual: residual, out: out)
      } else {
        let groups = direct.withLock { made -> [GEMMWeights] in
          if let made { return made }
          guard case .im2col(let groups) = Self.gemmMethod(weightOIHW, geometry: g, path: path) else {
            preconditionFailure("a 3x3 convolution without an im2col method")
          }
          made = groups
          return groups
        }
        runIm2col(groups, path: path, window: window, x: x, residual: residual, out: out)
      }
    }
  }

  /// The bias's floats, or nil.
  private var biasPointer: UnsafePointer<Float>? { bias.map { UnsafePointer($0.pointer) } }

  /// Output pixels of the batch: the GEMM's rows.
  private static func rows(_ window: octet_f32_window) -> Int {
    Int(window.batch) * Int(window.out_h) * Int(window.out_w)
  }

  private func runIm2col(
    _ groups: [GEMMWeights], path: FloatKernels.Path, window: octet_f32_window, x: UnsafePointer<Float>,
    residual: UnsafePointer<Float>?, out: UnsafeMutablePointer<Float>
  ) {
    let g = geometry
    let act = activation
    let (cinG, coutG) = (g.inChannelsPerGroup, g.outChannelsPerGroup)
    let m = Self.rows(window)
    let k = groups[0].k
    let tile = Self.im2colTileRows(m: m, k: k, n: coutG, threads: path == .avx2fma ? FloatKernels.threads : 1)
    let tiles = (m + tile - 1) / tile
    // One tile: im2col, then the GEMM. Several threads and tiles (avx2fma): each thread takes
    // whole tiles (its own scratch, the GEMM on one thread), so im2col runs in parallel too; a
    // row's sums do not depend on which tile or thread computes it, so the output is the same.
    let tileThreads = path == .avx2fma ? min(FloatKernels.threads, tiles) : 1
    let buffers = takeScratch(tileThreads, count: tile * k)
    struct Pointers: @unchecked Sendable {
      let x: UnsafePointer<Float>, out: UnsafeMutablePointer<Float>, residual: UnsafePointer<Float>?
      let bias: UnsafePointer<Float>?
    }
    let p = Pointers(x: x, out: out, residual: residual, bias: biasPointer)
    let w = window
    let runTile = { @Sendable (buffer: AlignedFloatBuffer, m0: Int, singleThread: Bool) in
      var window = w
      let rows = min(tile, m - m0)
      for (group, b) in groups.enumerated() {
        octet_f32_im2col_nhwc(&window, p.x, Int32(group * cinG), Int32(cinG), m0, rows, buffer.pointer)
        let offset = m0 * g.outChannels + group * coutG
        gemm(
          path: path, m: rows, a: buffer.pointer, lda: k, b: b,
          c: p.out + offset, ldc: g.outChannels, bias: p.bias.map { $0 + group * coutG },
          residual: p.residual.map { $0 + offset }, ldr: g.outChannels, activation: act,
          singleThread: singleThread)
      }
    }
    if tileThreads > 1 {
      FloatKernels.parallel(tileThreads) { t in
        for i in stride(from: t, to: tiles, by: tileThreads) { runTile(buffers[t], i * tile, true) }
      }
    } else {
      for i in 0..<tiles { runTile(buffers[0], i * tile, false) }
    }
    scratch.withLock { $0.append(contentsOf: buffers) }
  }

  /// Winograd F(2x2, 3x3) on avx2fma: chunks of tiles, each through the input transform, the 16
  /// GEMMs V[ξ] · U[ξ] and the output transform (bias, residual and activation applied there). With
  /// several threads a chunk's transforms are split by tiles and its GEMMs by ξ; every output is
  /// computed alike whatever the split, so the floats do not depend on the thread count.
  private func runWinograd(
    _ u: [GEMMWeights], window: octet_f32_window, x: UnsafePointer<Float>, residual: UnsafePointer<Float>?,
    out: UnsafeMutablePointer<Float>
  ) {
    #if arch(x86_64) || arch(i386)
      let cin = geometry.inChannels
      let cout = geometry.outChannels
      let tiles = Int(window.batch) * ((Int(window.out_h) + 1) / 2) * ((Int(window.out_w) + 1) / 2)
      // About 512 KB of V per chunk (it and M stay in L2 between the transforms and the GEMMs), at
      // least 48 tiles; one chunk when the layer has few tiles.
      let chunk = min(tiles, max(48, 512 * 1024 / (16 * 4 * max(cin, cout))))
      let buffers = takeScratch(2, count: 16 * chunk * max(cin, cout))
      struct Pointers: @unchecked Sendable {
        let x: UnsafePointer<Float>, out: UnsafeMutablePointer<Float>, residual: UnsafePointer<Float>?
        let bias: UnsafePointer<Float>?, v: UnsafeMutablePointer<Float>, m: UnsafeMutablePointer<Float>
      }
      let p = Pointers(
        x: x, out: out, residual: residual, bias: biasPointer, v: buffers[0].pointer,
        m: buffers[1].pointer)
      let act = activation.kernelCode
      let threads = FloatKernels.threads
      for t0 in stride(from: 0, to: tiles, by: chunk) {
        let count = min(chunk, tiles - t0)
        // Transforms: contiguous tile ranges, four per thread, and the GEMMs one task per ξ, all
        // taken by the pool's threads as they come free, so a thread slowed by the machine takes
        // fewer of them.
        let parts = threads > 1 ? min(count, 4 * threads) : 1
        let perPart = (count + parts - 1) / parts
        FloatKernels.parallel(parts) { part in
          let first = part * perPart
          guard first < count else { return }
          var w = window
          octet_f32_winograd_input__avx2fma(
            &w, p.x, t0 + first, min(perPart, count - first), p.v + first * cin, count)
        }
        FloatKernels.parallel(16) { xi in
          octet_f32_gemm_packed(
            count, cout, cin, p.v + xi * count * cin, cin, u[xi].layout(for: .avx2fma).pointer, 0, cout,
            p.m + xi * count * cout, cout, nil, nil, 0, 0)
        }
        FloatKernels.parallel(parts) { part in
          let first = part * perPart
          guard first < count else { return }
          var w = window
          octet_f32_winograd_output__avx2fma(
            &w, p.m + first * cout, count, t0 + first, min(perPart, count - first), cout, p.bias, p.residual, act,
            p.out)
        }
      }
      scratch.withLock { $0.append(contentsOf: buffers) }
      withExtendedLifetime(u) {}
    #else
      preconditionFailure("the avx2fma path exists only on x86")
    #endif
  }

  /// `n` im2col buffers of at least `count` floats: reused ones from earlier calls, or new. Pooled
  /// buffers too small for this call are dropped (they would be replaced by larger ones anyway).
  private func takeScratch(_ n: Int, count: Int) -> [AlignedFloatBuffer] {
    var taken = scratch.withLock { pool -> [AlignedFloatBuffer] in
      pool.removeAll { $0.count < count }
      let fit = Array(pool.prefix(n))
      pool.removeFirst(fit.count)
      return fit
    }
    while taken.count < n { taken.append(AlignedFloatBuffer(count: count)) }
    return taken
  }

  /// Output pixels per im2col tile: about 256 KB of A so the tile stays in L2 while the GEMM reads
  /// it, but never fewer rows than B has columns, so re-reading B per tile stays cheaper than A.
  /// With several threads and enough rows (at least 96 per thread, the GEMM's own threshold for row
  /// slices), the tile count is a multiple of `threads` and the tiles are equal (to a multiple of 6
  /// rows), so each thread gets the same share and im2col runs in parallel even for one tile's
  /// worth of rows (ResNet50's 14x14 layers); otherwise the tiles are multiples of 72 rows.
  static func im2colTileRows(m: Int, k: Int, n: Int, threads: Int) -> Int {
    let budgetRows = (256 * 1024 / MemoryLayout<Float>.stride) / k
    let rows = max(budgetRows, n, 72)
    guard threads > 1 && m >= 96 * threads else { return min(m, (rows + 71) / 72 * 72) }
    let tiles = ((m + rows - 1) / rows + threads - 1) / threads * threads
    return min(m, ((m + tiles - 1) / tiles + 5) / 6 * 6)
  }
}

/// Calls `body` with the residual's scalars, or nil.
@inline(__always)
func withResidualPointer<R>(_ residual: Tensor?, _ body: (UnsafePointer<Float>?) -> R) -> R {
  guard let residual else { return body(nil) }
  return residual.scalars.withUnsafeBufferPointer { body($0.baseAddress!) }
}
