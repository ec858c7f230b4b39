import CInt8Kernels
import Dispatch
import Foundation
import OctetCore
import OctetModels

/// Runs a `QuantizedModel` on the C integer kernels (CInt8Kernels) of one backend: convolutions as
/// GEMMs over NHWC uint8 (1x1 convolutions read their input directly where the layout allows,
/// others through im2col packing), depthwise convolutions with their own kernel, weights packed once
/// here, and requantization, bias, ReLU/ReLU6 and the residual add fused into the GEMM epilogue.
/// Pooling and the classifier run on the same integer path; nothing in it is float.
///
/// Every backend gives exactly the bits of `Int8ReferenceExecutor` (docs/quantization.md); the
/// tests hold each one to that on every layer shape of ResNet50 and EfficientNet-Lite0.
/// Safe to share between threads: each `run` takes its own workspace.
///
/// By job: this file runs the steps; `FastPlanner` (FastPlanner.swift) turns the reference plan into
/// them, fusing residual adds by `ResidualAddFusion`; FastPlanner+Buffers.swift reuses activation
/// buffers (liveness, best fit); FastPlanner+WeightPacking.swift packs weights and epilogues;
/// GemmKernel.swift chooses each layer's GEMM kernel (the AVX2 cost model);
/// Int8FastExecutor+Scheduling.swift splits a layer's work between threads; Workspace.swift holds
/// the per-run buffers.
public final class Int8FastExecutor: @unchecked Sendable {
  public let model: QuantizedModel
  /// The concrete backend (never `reference` or `auto`).
  public let backend: Int8Backend
  /// Threads each `run` uses (1 for callers that parallelize across images themselves).
  public let threads: Int
  public let inputShape: [Int]
  public let classes: Int
  public let logitScale: Float
  /// Whether residual adds were fused into the convolution before them (off when every node's
  /// output must be observable).
  public let fusesResidualAdds: Bool

  let isa: octet_i8_isa
  let emulatedISA: Bool
  /// Depthwise convolutions on the scalar kernel (int8 weights) rather than the AVX2 one (int16).
  let scalarDepthwise: Bool
  /// Depthwise convolutions on the AVX-512 VNNI kernel (the avx512vnni and amx backends, run natively
  /// on a CPU with VBMI; without it they take the AVX2 kernel).
  let vnniDepthwise: Bool
  let steps: [FastStep]
  /// Bytes per image of each activation buffer.
  let bufferSizes: [Int]
  /// Bytes per image of im2col / padding scratch.
  let scratchSize: Int
  private let pool = WorkspacePool()
  /// Persistent workers for the layers' tasks (threads - 1 of them).
  let workers: WorkerPool

  /// What one step of the plan is, for `octet bench` and the per-layer report.
  public struct Layer: Sendable, Codable {
    public var name: String
    /// conv (GEMM), depthwise, grouped_conv (a GEMM per group), linear, add, max_pool,
    /// global_average_pool, quantize_input, flatten (grouped_conv_reference: a grouped convolution
    /// that reads pixels, on the reference kernel).
    public var kind: String
    /// GEMM shape per image: M rows (output pixels), N columns (output channels), K (taps).
    public var m: Int, n: Int, k: Int
    /// Multiply-adds per image.
    public var macs: Int
    /// Nodes of the integer graph this step computes (a conv with a fused residual add names both).
    public var nodes: [String]
    /// The GEMM kernel of a conv or linear step (e.g. "avx2 (vpmaddubsw)"); empty otherwise.
    public var kernel: String = ""
  }
  public let layers: [Layer]

  public convenience init(model: QuantizedModel, backend: Int8Backend = .auto, threads: Int = 1) throws {
    try self.init(model: model, backend: backend, threads: threads, fuseResidualAdds: true)
  }

  public convenience init(model: QuantizedModel, backend: Int8Backend, threads: Int, fuseResidualAdds: Bool) throws {
    try self.init(
      model: model, backend: backend, threads: threads, fuseResidualAdds: fuseResidualAdds, emulatedISA: false)
  }

  /// `emulatedISA` (tests only) runs the avx512vnni and amx GEMMs compiled against scalar stand-ins
  /// of their intrinsics, so those kernels' loops and layouts are checked on any CPU. `avx2Kernel`
  /// (tests only) makes the avx2 backend use that GEMM kernel wherever it is exact.
  init(
    model: QuantizedModel, backend: Int8Backend, threads: Int, fuseResidualAdds: Bool, emulatedISA: Bool,
    avx2Kernel: GemmKernel? = nil
  ) throws {
    precondition(threads >= 1, "threads must be at least 1")
    let resolved = emulatedISA ? backend : try backend.resolved()
    guard let isa = resolved.isa else {
      throw Int8BackendError.unknown(resolved.rawValue, source: "Int8FastExecutor (use Int8ReferenceExecutor)")
    }
    let reference = try Int8ReferenceExecutor(model: model)
    self.model = model
    self.backend = resolved
    self.isa = isa
    self.threads = threads
    self.fusesResidualAdds = fuseResidualAdds
    self.emulatedISA = emulatedISA
    inputShape = reference.inputShape
    classes = reference.classes
    logitScale = reference.logitScale
    scalarDepthwise = isa == OCTET_I8_SCALAR || (emulatedISA && !Int8Backend.avx2.isSupported)
    // octet_i8_cpu_has_vbmi also requires AVX-512 VNNI (and the OS's zmm state).
    vnniDepthwise =
      !emulatedISA && (isa == OCTET_I8_AVX512VNNI || isa == OCTET_I8_AMX) && octet_i8_cpu_has_vbmi() != 0
    let plan = FastPlanner(
      reference: reference, isa: isa, fuse: fuseResidualAdds, scalarDepthwise: scalarDepthwise, avx2Kernel: avx2Kernel)
    steps = plan.steps
    bufferSizes = plan.bufferSizes
    scratchSize = plan.scratchSize
    layers = plan.layers
    workers = WorkerPool(threads: threads)
  }

  /// Runs the network on `input` `[N, S, S, 3]` and returns int32 logits `[N, classes]`.
  /// `observe` sees every materialized node output (all of them unless residual adds are fused).
  /// `timings`, when given, receives each step's wall time in seconds (same order as `layers`).
  public func run(
    _ input: Tensor, observe: ((String, QuantizedTensor) -> Void)? = nil, timings: UnsafeMutablePointer<Double>?
  ) -> Int32Logits {
    precondition(
      input.rank == 4 && Array(input.shape.dropFirst()) == inputShape,
      "input shape \(input.shape) does not match [N, \(inputShape.map(String.init).joined(separator: ", "))]")
    let batch = input.shape[0]
    let workspace = pool.take(batch: batch, bufferSizes: bufferSizes, scratchSize: scratchSize, threads: threads)
    defer { pool.give(workspace) }
    var logits = [Int32](repeating: 0, count: batch * classes)
    logits.withUnsafeMutableBufferPointer { logits in
      for (index, step) in steps.enumerated() {
        let t0 = timings == nil ? 0 : DispatchTime.now().uptimeNanoseconds
        execute(step, input: input, batch: batch, workspace: workspace, logits: logits.baseAddress!)
        if let timings { timings[index] = Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e9 }
        if let observe, let (name, shape, q, buffer) = step.observable {
          let count = batch * shape.reduce(1, *)
          let values = [UInt8](UnsafeBufferPointer(start: workspace.buffers[buffer], count: count))
          observe(name, QuantizedTensor(shape: [batch] + shape, values: values, quantization: q))
        }
      }
    }
    return Int32Logits(shape: [batch, classes], values: logits, scale: logitScale)
  }
}

// MARK: - Execution

extension Int8FastExecutor {
  func execute(
    _ step: FastStep, input: Tensor, batch: Int, workspace: Workspace, logits: UnsafeMutablePointer<Int32>
  ) {
    switch step.op {
    case .quantizeInput(_, let pixels?, let out):
      let o = workspace.buffers[out]
      input.scalars.withUnsafeBufferPointer { x in
        // One slice per thread, in multiples of 3 · 64 values (whole pixels).
        let slice = max(192, ((x.count + threads - 1) / threads + 191) / 192 * 192)
        parallel((x.count + slice - 1) / slice) { t in
          let start = t * slice
          octet_i8_input_pixels(x.baseAddress! + start, min(slice, x.count - start), pixels.mean, pixels.std, o + start)
        }
      }
    case .quantizeInput(let q, nil, let out):
      let o = workspace.buffers[out]
      input.scalars.withUnsafeBufferPointer { x in
        // One slice per thread, in multiples of 64 values.
        let slice = max(64, ((x.count + threads - 1) / threads + 63) / 64 * 64)
        parallel((x.count + slice - 1) / slice) { t in
          let start = t * slice
          let count = min(slice, x.count - start)
          if isa == OCTET_I8_SCALAR || emulatedISA {
            octet_i8_quantize_input(x.baseAddress! + start, count, q.scale, q.zeroPoint, o + start)
          } else {
            octet_i8_quantize_input__avx2(x.baseAddress! + start, count, q.scale, q.zeroPoint, o + start)
          }
        }
      }
    case .conv(let conv):
      runConv(conv, batch: batch, workspace: workspace, logits: logits)
      if let border = conv.border { fixBorder(conv, border, batch: batch, workspace: workspace) }
      // After the border fix-up, which writes with the kernel's hull clamp (§7.1, §12).
      if let clamp = conv.channelClamp { clampChannels(clamp, conv, batch: batch, workspace: workspace) }
    case .depthwise(let conv):
      runDepthwise(conv, batch: batch, workspace: workspace)
      if let clamp = conv.channelClamp { clampChannels(clamp, conv, batch: batch, workspace: workspace) }
    case .wideConv(let step):
      runWide(step, batch: batch, workspace: workspace)
    case .groupedConv(let grouped):
      runGrouped(grouped, batch: batch, workspace: workspace, logits: logits)
    case .groupedReference(let plan, let input, let out, let inSize, let outSize):
      for n in 0..<batch {
        plan.run(
          UnsafeBufferPointer(start: workspace.buffers[input] + n * inSize, count: inSize),
          UnsafeMutableBufferPointer(start: workspace.buffers[out] + n * outSize, count: outSize))
      }
    case .add(let a, let b, let count, let p, let out):
      octet_i8_add(
        workspace.buffers[a], workspace.buffers[b], batch * count, p.za, p.zb, p.ma, p.mb, p.shift, p.zo, p.lo, p.hi,
        workspace.buffers[out])
    case .maxPool(let window, let input, let out, let inSize, let outSize):
      // Each image in bands of output rows, two bands per thread.
      let height = Int(window.out_h)
      let bands = max(1, min(height, 2 * threads))
      let rows = (height + bands - 1) / bands
      parallel(batch * bands) { t in
        var w = window
        let n = t / bands
        let oy0 = t % bands * rows
        let oy1 = min(height, oy0 + rows)
        if oy1 > oy0 {
          octet_i8_maxpool_rows(
            &w, workspace.buffers[input] + n * inSize, Int32(oy0), Int32(oy1), workspace.buffers[out] + n * outSize)
        }
      }
    case .globalAveragePool(let input, let pixels, let channels, let zIn, let requant, let zOut, let out):
      for n in 0..<batch {
        octet_i8_global_avgpool(
          workspace.buffers[input] + n * pixels * channels, pixels, channels, zIn, requant.multiplier, requant.shift,
          zOut, workspace.buffers[out] + n * channels)
      }
    case .alias:
      break
    case .onnx(let step):
      runONNX(step, batch: batch, workspace: workspace)
    }
  }

  /// The per-channel clamp post-pass (docs/quantization.md §7.1) over the step's uint8 output, in
  /// bands of rows per thread: the AVX2 form where the CPU has it (every backend but scalar), else
  /// its scalar twin.
  func clampChannels(_ clamp: ChannelClamp, _ conv: ConvStep, batch: Int, workspace: Workspace) {
    let out = workspace.buffers[conv.output]
    let rows = batch * conv.m
    let channels = conv.n
    let useAVX2 = isa != OCTET_I8_SCALAR && Int8Backend.avx2.isSupported
    let tasks = max(1, min(threads, rows / 64))
    let band = (rows + tasks - 1) / tasks
    clamp.lo.withUnsafeBufferPointer { lo in
      clamp.hi.withUnsafeBufferPointer { hi in
        parallel(tasks) { t in
          let r0 = t * band
          let r1 = min(rows, r0 + band)
          guard r1 > r0 else { return }
          let base = out + r0 * channels
          #if arch(x86_64)
            if useAVX2 {
              octet_i8_channel_clamp__avx2(base, r1 - r0, channels, lo.baseAddress!, hi.baseAddress!)
              return
            }
          #endif
          octet_i8_channel_clamp(base, r1 - r0, channels, lo.baseAddress!, hi.baseAddress!)
        }
      }
    }
  }

  func gemm(
    _ conv: ConvStep, a: UnsafeRawPointer, lda: Int, m0: Int, m1: Int, n0: Int, n1: Int,
    epilogue: UnsafePointer<octet_i8_epilogue>, out: UnsafeMutableRawPointer
  ) {
    let b = conv.packedWeights.pointer
    let ldc = conv.outputStride ?? conv.n
    let a8 = a.assumingMemoryBound(to: UInt8.self)
    let b8 = b.assumingMemoryBound(to: Int8.self)
    switch conv.kernel {
    case .avx2Int16:
      octet_i8_gemm__avx2(
        a.assumingMemoryBound(to: Int16.self), b.assumingMemoryBound(to: Int16.self), conv.kp, conv.n, m0, m1, n0, n1,
        epilogue, out, ldc)
    case .avx2Pairs:
      octet_i8_gemm__avx2_pairs(a8, lda, b8, conv.kp, conv.n, m0, m1, n0, n1, epilogue, out, ldc)
    case .avx2Quads:
      withUnsafePointer(to: conv.fixups!.table) {
        octet_i8_gemm__avx2_quads(a8, lda, b8, $0, conv.kp, conv.n, m0, m1, n0, n1, epilogue, out, ldc)
      }
    case .avx512vnni where emulatedISA:
      octet_i8_gemm__avx512vnni_emulated(a8, lda, b8, conv.kp, conv.n, m0, m1, n0, n1, epilogue, out, ldc)
    case .amx where emulatedISA:
      octet_i8_gemm__amx_emulated(a8, lda, b8, conv.kp, conv.n, m0, m1, n0, n1, epilogue, out, ldc)
    case .avx512vnni:
      octet_i8_gemm__avx512vnni(a8, lda, b8, conv.kp, conv.n, m0, m1, n0, n1, epilogue, out, ldc)
    case .amx:
      octet_i8_gemm__amx(a8, lda, b8, conv.kp, conv.n, m0, m1, n0, n1, epilogue, out, ldc)
    case .scalar:
      octet_i8_gemm__scalar(a8, lda, b8, conv.kp, conv.n, m0, m1, n0, n1, epilogue, out, ldc)
    }
  }
}

// MARK: - Exact input

extension Int8FastExecutor {
  /// docs/quantization.md §12: the GEMM ran every position with the full-window bias; the border
  /// positions (a few percent of the stem's output) are computed again, per image, with their class
  /// bias by the scalar `octet_i8_conv_border`, on every backend.
  func fixBorder(_ conv: ConvStep, _ border: BorderFixup, batch: Int, workspace: Workspace) {
    let input = workspace.buffers[conv.input]
    let output = workspace.buffers[conv.output]
    let residual = conv.residual.map { workspace.buffers[$0.buffer] }
    parallel(batch) { n in
      var window = conv.window
      var e = conv.epilogue
      if let residual { e.residual = UnsafePointer(residual + n * conv.m * conv.n) }
      octet_i8_conv_border(
        &window, input + n * conv.inSize, border.weights, conv.n, border.classBias, border.rowClass, border.colClass,
        border.colClasses, border.fullClass, &e, output + n * conv.m * conv.n)
    }
  }
}
