import CInt8Kernels
import OctetCore
import OctetModels

// Weight packing: the packed B operands, per-channel epilogue arrays and the C epilogue of each
// GEMM or depthwise step.

/// Bytes aligned to 64, zero-filled, freed with the object.
final class AlignedBytes: @unchecked Sendable {
  let pointer: UnsafeMutableRawPointer
  let count: Int
  init(count: Int) {
    self.count = count
    pointer = .allocate(byteCount: max(count, 64), alignment: 64)
    pointer.initializeMemory(as: UInt8.self, repeating: 0, count: max(count, 64))
  }
  deinit { pointer.deallocate() }
}

/// Per-channel epilogue arrays that the C structs point into; they live as long as the plan.
final class ChannelParameters: @unchecked Sendable {
  let bias: AlignedBytes, multiplier: AlignedBytes, shift: AlignedBytes
  init(bias: [Int32], multiplier: [Int32], shift: [Int32]) {
    // Padded to a multiple of 32 channels (shift 1 keeps the padding's arithmetic defined).
    let padded = (bias.count + 31) / 32 * 32
    self.bias = AlignedBytes(count: padded * 4)
    self.multiplier = AlignedBytes(count: padded * 4)
    self.shift = AlignedBytes(count: padded * 4)
    let s = self.shift.pointer.assumingMemoryBound(to: Int32.self)
    for i in 0..<padded { s[i] = i < shift.count ? shift[i] : 1 }
    let b = self.bias.pointer.assumingMemoryBound(to: Int32.self)
    let m = self.multiplier.pointer.assumingMemoryBound(to: Int32.self)
    for i in 0..<bias.count {
      b[i] = bias[i]
      m[i] = multiplier[i]
    }
  }
}

extension FastPlanner {
  static func convStep(
    _ plan: Int8ConvPlan, inShape: [Int], input: Int, output: Int, residual: (Int, AddParameters)?, isa: octet_i8_isa,
    avx2Kernel: GemmKernel?, scalarDepthwise: Bool
  ) -> ConvStep? {
    let bottom = (plan.outHeight - 1) * plan.strideH + plan.kernelH - plan.inHeight - plan.padTop
    let right = (plan.outWidth - 1) * plan.strideW + plan.kernelW - plan.inWidth - plan.padLeft
    let window = octet_i8_window(
      in_h: Int32(plan.inHeight), in_w: Int32(plan.inWidth), channels: Int32(plan.inChannels),
      out_h: Int32(plan.outHeight), out_w: Int32(plan.outWidth), kernel_h: Int32(plan.kernelH),
      kernel_w: Int32(plan.kernelW), stride_h: Int32(plan.strideH), stride_w: Int32(plan.strideW),
      pad_top: Int32(plan.padTop), pad_left: Int32(plan.padLeft), zero_point: plan.inputZeroPoint)
    let padding = (plan.padTop, plan.padLeft, max(0, bottom), max(0, right))
    let clamp = (plan.outputZeroPoint, plan.clampLo, plan.clampHi)
    if plan.isDepthwise {
      var step = gemmStep(
        weights: [], bias: plan.bias, requant: plan.requant, window: window, padding: padding, n: plan.outChannels,
        input: input, output: output, isa: isa, avx2Kernel: nil, clamp: clamp, int32Output: false,
        residual: residual)
      // Depthwise weights stay tap-major [kh * kw][C] (the reference plan's layout): int8 for the
      // scalar kernel, widened to int16 for the AVX2 one and the AVX-512 VNNI one (which narrows
      // them back to int8 quads).
      let taps = plan.kernelH * plan.kernelW
      step.k = taps
      step.kp = taps
      if scalarDepthwise {
        let bytes = AlignedBytes(count: plan.weights.count)
        for (i, w) in plan.weights.enumerated() { bytes.pointer.storeBytes(of: w, toByteOffset: i, as: Int8.self) }
        step.packedWeights = bytes
      } else {
        let bytes = AlignedBytes(count: plan.weights.count * 2)
        let p = bytes.pointer.assumingMemoryBound(to: Int16.self)
        for (i, w) in plan.weights.enumerated() { p[i] = Int16(w) }
        step.packedWeights = bytes
      }
      return step
    }
    guard plan.groups == 1 else { return nil }
    return gemmStep(
      weights: plan.weights, bias: plan.bias, requant: plan.requant, window: window, padding: padding,
      n: plan.outChannels, input: input, output: output, isa: isa, avx2Kernel: avx2Kernel, clamp: clamp,
      int32Output: false,
      residual: residual)
  }

  static func gemmStep(
    weights: [Int8], bias: [Int32], requant: [RequantMultiplier], window: octet_i8_window,
    padding: (Int, Int, Int, Int), n: Int, input: Int, output: Int, isa: octet_i8_isa, avx2Kernel: GemmKernel?,
    clamp: (Int32, Int32, Int32), int32Output: Bool, residual: (Int, AddParameters)?
  ) -> ConvStep {
    let k = Int(window.kernel_h * window.kernel_w * window.channels)
    var kernel = GemmKernel(isa)
    var fixups: QuadFixups?
    if kernel == .avx2Int16, !weights.isEmpty {
      (kernel, fixups) = chooseAVX2Kernel(weights: weights, k: k, n: n, forced: avx2Kernel)
    }
    let layout = kernel.layout
    let align = octet_i8_k_align(layout)
    let kp = (k + align - 1) / align * align
    let packed = AlignedBytes(count: weights.isEmpty ? 0 : octet_i8_packed_b_size(layout, k, n))
    if !weights.isEmpty {
      (fixups?.fit ?? weights).withUnsafeBufferPointer {
        octet_i8_pack_b(layout, $0.baseAddress, k, n, packed.pointer)
      }
    }
    let parameters = ChannelParameters(
      bias: bias, multiplier: requant.map(\.multiplier), shift: requant.map(\.shift))
    let pointwise =
      window.kernel_h == 1 && window.kernel_w == 1 && window.stride_h == 1 && window.stride_w == 1
      && window.pad_top == 0 && window.pad_left == 0 && window.out_h == window.in_h && window.out_w == window.in_w
    var epilogue = octet_i8_epilogue()
    epilogue.bias = UnsafePointer(parameters.bias.pointer.assumingMemoryBound(to: Int32.self))
    epilogue.multiplier = UnsafePointer(parameters.multiplier.pointer.assumingMemoryBound(to: Int32.self))
    epilogue.shift = UnsafePointer(parameters.shift.pointer.assumingMemoryBound(to: Int32.self))
    epilogue.out_zero_point = clamp.0
    epilogue.lo = clamp.1
    epilogue.hi = clamp.2
    epilogue.int32_output = int32Output ? 1 : 0
    epilogue.shifts_at_least_32 = requant.allSatisfy { $0.shift >= 32 } ? 1 : 0
    epilogue.ld_residual = n
    if let (_, p) = residual {
      epilogue.residual_zero_point = p.zb
      epilogue.add_mult_conv = p.ma
      epilogue.add_mult_residual = p.mb
      epilogue.add_shift = p.shift
      epilogue.add_zero_point = p.zo
      epilogue.add_lo = p.lo
      epilogue.add_hi = p.hi
      precondition(p.za == clamp.0, "a fused add reads the convolution's own zero point")
    }
    return ConvStep(
      window: window, padding: padding, m: Int(window.out_h * window.out_w), k: k, kp: kp, n: n,
      inSize: Int(window.in_h * window.in_w * window.channels),
      direct: pointwise && kernel.aElementSize == 1 && k % align == 0, kernel: kernel, int32Output: int32Output,
      packedWeights: packed, fixups: fixups,
      parameters: parameters, epilogue: epilogue, residual: residual.map { FusedResidual(buffer: $0.0) },
      input: input, output: output)
  }
}
