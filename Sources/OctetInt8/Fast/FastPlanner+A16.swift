import CInt8Kernels
import OctetCore
import OctetModels

// Convolutions with a 16-bit input or output (docs/quantization.md §17) on the fast path. Dense
// layers: int16 im2col + the a16 GEMM, AVX2 (`octet_a16_gemm__avx2`) on every backend whose CPU
// has AVX2 — avx2, avx512vnni and amx route their 16-bit layers to it — and the scalar twin on
// the scalar backend (and emulated backends on a CPU without AVX2). Depthwise layers: the same
// split, `octet_a16_dwconv__avx2` or its scalar twin. Other grouped layers: the reference plan. All
// give the reference's bits.

struct WideConvStep {
  enum Kind {
    case dense(avx2: Bool)
    case depthwise(avx2: Bool)
    case reference(Int8WideConvPlan)
  }
  var kind: Kind
  var params: octet_a16_conv
  /// Dense: packed [ceil(N/8)][kp/2][8][2]; depthwise: [kh·kw][C].
  var weights: [Int16]
  var bias: [Int64]
  var multipliers: [Int32], shifts: [Int32]
  /// Rows (output pixels) per image; codes per image in and out.
  var m: Int, inCount: Int, outCount: Int
  var input: Int, output: Int

  init(plan: Int8WideConvPlan, avx2: Bool, input: Int, output: Int) {
    let k = plan.kernelH * plan.kernelW * plan.inChannels / plan.groups
    let kp = (k + 1) / 2 * 2
    let n = plan.outChannels
    self.input = input
    self.output = output
    m = plan.outHeight * plan.outWidth
    inCount = plan.inHeight * plan.inWidth * plan.inChannels
    outCount = m * n
    bias = plan.bias
    multipliers = plan.requant.map(\.multiplier)
    shifts = plan.requant.map(\.shift)
    params = octet_a16_conv(
      in_h: Int32(plan.inHeight), in_w: Int32(plan.inWidth), in_c: Int32(plan.inChannels),
      out_h: Int32(plan.outHeight), out_w: Int32(plan.outWidth), out_c: Int32(n), kernel_h: Int32(plan.kernelH),
      kernel_w: Int32(plan.kernelW), stride_h: Int32(plan.strideH), stride_w: Int32(plan.strideW),
      pad_top: Int32(plan.padTop), pad_left: Int32(plan.padLeft), in_bits: Int32(plan.inputBits),
      out_bits: Int32(plan.outputBits), weight_bits: Int32(plan.weightBits), z_in: plan.inputZeroPoint,
      z_out: plan.outputZeroPoint, lo: plan.clampLo, hi: plan.clampHi, k: Int32(k), kp: Int32(kp), weights: nil,
      bias: nil, multiplier: nil, shift: nil)
    if plan.groups == 1 {
      kind = .dense(avx2: avx2)
      var packed = [Int16](repeating: 0, count: (n + 7) / 8 * kp * 8)
      for c in 0..<n {
        for j in 0..<k {
          packed[(c / 8) * (kp / 2) * 16 + (j / 2) * 16 + (c % 8) * 2 + j % 2] = Int16(plan.weights[c * k + j])
        }
      }
      weights = packed
    } else if plan.isDepthwise {
      kind = .depthwise(avx2: avx2)
      let taps = plan.kernelH * plan.kernelW
      var t = [Int16](repeating: 0, count: n * taps)
      for c in 0..<n { for i in 0..<taps { t[i * n + c] = Int16(plan.weights[c * taps + i]) } }
      weights = t
    } else {
      kind = .reference(plan)
      weights = []
    }
  }

  /// `params` with its weight, bias and requantization pointers set, for the duration of `body`.
  func withParams<R>(_ body: (octet_a16_conv) throws -> R) rethrows -> R {
    try weights.withUnsafeBufferPointer { w in
      try bias.withUnsafeBufferPointer { b in
        try multipliers.withUnsafeBufferPointer { m in
          try shifts.withUnsafeBufferPointer { s in
            var p = params
            p.weights = w.baseAddress
            p.bias = b.baseAddress
            p.multiplier = m.baseAddress
            p.shift = s.baseAddress
            return try body(p)
          }
        }
      }
    }
  }

  var kindName: String {
    switch kind {
    case .dense(let avx2): avx2 ? "a16 gemm (avx2)" : "a16 gemm (scalar)"
    case .depthwise(let avx2): avx2 ? "a16 depthwise (avx2)" : "a16 depthwise (scalar)"
    case .reference: "a16 grouped (reference)"
    }
  }
}

extension Int8FastExecutor {
  func runWide(_ step: WideConvStep, batch: Int, workspace: Workspace) {
    let inBytes = Int(step.params.in_bits) / 8
    let outBytes = Int(step.params.out_bits) / 8
    let input = UnsafeRawPointer(workspace.buffers[step.input])
    let output = UnsafeMutableRawPointer(workspace.buffers[step.output])
    step.withParams { params in
      switch step.kind {
      case .dense(let avx2):
        // Bands of 32 rows per task, each with its own im2col scratch.
        let band = 32
        let bands = (step.m + band - 1) / band
        let kp = Int(params.kp)
        parallel(batch * bands) { t in
          let n = t / bands
          let m0 = t % bands * band
          let m1 = min(step.m, m0 + band)
          var a = [Int16](repeating: 0, count: (m1 - m0) * kp)
          withUnsafePointer(to: params) { c in
            a.withUnsafeMutableBufferPointer { a in
              octet_a16_im2col(c, input + n * step.inCount * inBytes, Int32(m0), Int32(m1), a.baseAddress!)
              let out = output + (n * step.outCount + m0 * Int(params.out_c)) * outBytes
              if avx2 {
                octet_a16_gemm__avx2(c, a.baseAddress!, Int32(m1 - m0), out)
              } else {
                octet_a16_gemm__scalar(c, a.baseAddress!, Int32(m1 - m0), out)
              }
            }
          }
        }
      case .depthwise(let avx2):
        let height = Int(params.out_h)
        let bands = max(1, min(height, 2 * threads))
        let rows = (height + bands - 1) / bands
        parallel(batch * bands) { t in
          let n = t / bands
          let oy0 = t % bands * rows
          let oy1 = min(height, oy0 + rows)
          guard oy1 > oy0 else { return }
          withUnsafePointer(to: params) { c in
            let x = input + n * step.inCount * inBytes
            let y = output + n * step.outCount * outBytes
            if avx2 {
              octet_a16_dwconv__avx2(c, x, Int32(oy0), Int32(oy1), y)
            } else {
              octet_a16_dwconv__scalar(c, x, Int32(oy0), Int32(oy1), y)
            }
          }
        }
      case .reference(let plan):
        for n in 0..<batch {
          let x: [Int32] =
            inBytes == 2
            ? (0..<step.inCount).map {
              Int32(input.load(fromByteOffset: (n * step.inCount + $0) * 2, as: Int16.self))
            }
            : (0..<step.inCount).map { Int32(input.load(fromByteOffset: n * step.inCount + $0, as: UInt8.self)) }
          var y = [Int32](repeating: 0, count: step.outCount)
          x.withUnsafeBufferPointer { x in y.withUnsafeMutableBufferPointer { y in plan.run(x, y) } }
          for (i, v) in y.enumerated() {
            if outBytes == 2 {
              output.storeBytes(of: Int16(v), toByteOffset: (n * step.outCount + i) * 2, as: Int16.self)
            } else {
              output.storeBytes(of: UInt8(v), toByteOffset: n * step.outCount + i, as: UInt8.self)
            }
          }
        }
      }
    }
  }
}
