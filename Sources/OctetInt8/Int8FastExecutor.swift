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
  let steps: [FastStep]
  /// Bytes per image of each activation buffer.
  let bufferSizes: [Int]
  /// Bytes per image of im2col / padding scratch.
  let scratchSize: Int
  private let pool = WorkspacePool()
  /// Persistent workers for the layers' tasks (threads - 1 of them).
  private let workers: WorkerPool

  /// What one step of the plan is, for `octet bench` and the per-layer report.
  public struct Layer: Sendable, Codable {
    public var name: String
    /// conv (GEMM), depthwise, linear, add, max_pool, global_average_pool, quantize_input, flatten.
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

  // MARK: - Execution

  private func parallel(_ tasks: Int, _ body: (Int) -> Void) {
    if tasks <= 1 {
      if tasks == 1 { body(0) }
      return
    }
    // The tasks write disjoint parts of buffers this run owns; octet_pool_run returns only when
    // all are done, so nothing escapes.
    withoutActuallyEscaping(body) { body in
      var body = body
      withUnsafeMutablePointer(to: &body) { context in
        octet_pool_run(
          workers.raw, tasks,
          { context, task in context!.assumingMemoryBound(to: ((Int) -> Void).self).pointee(task) }, context)
      }
    }
  }

  private func execute(
    _ step: FastStep, input: Tensor, batch: Int, workspace: Workspace, logits: UnsafeMutablePointer<Int32>
  ) {
    switch step.op {
    case .quantizeInput(let q, let out):
      let o = workspace.buffers[out]
      input.scalars.withUnsafeBufferPointer { x in
        // One slice per thread, in multiples of 64 values.
        let slice = max(64, ((x.count + threads - 1) / threads + 63) / 64 * 64)
        parallel((x.count + slice - 1) / slice) { t in
          let start = t * slice, count = min(slice, x.count - start)
          if isa == OCTET_I8_SCALAR || emulatedISA {
            octet_i8_quantize_input(x.baseAddress! + start, count, q.scale, q.zeroPoint, o + start)
          } else {
            octet_i8_quantize_input__avx2(x.baseAddress! + start, count, q.scale, q.zeroPoint, o + start)
          }
        }
      }
    case .conv(let conv):
      runConv(conv, batch: batch, workspace: workspace, logits: logits)
    case .depthwise(let conv):
      runDepthwise(conv, batch: batch, workspace: workspace)
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
        let n = t / bands, oy0 = t % bands * rows, oy1 = min(height, oy0 + rows)
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
    }
  }

  private func gemm(
    _ conv: ConvStep, a: UnsafeRawPointer, lda: Int, m0: Int, m1: Int, n0: Int, n1: Int,
    epilogue: UnsafePointer<octet_i8_epilogue>, out: UnsafeMutableRawPointer
  ) {
    let b = conv.packedWeights.pointer
    let a8 = a.assumingMemoryBound(to: UInt8.self)
    let b8 = b.assumingMemoryBound(to: Int8.self)
    switch conv.kernel {
    case .avx2Int16:
      octet_i8_gemm__avx2(
        a.assumingMemoryBound(to: Int16.self), b.assumingMemoryBound(to: Int16.self), conv.kp, conv.n, m0, m1, n0, n1,
        epilogue, out, conv.n)
    case .avx2Pairs:
      octet_i8_gemm__avx2_pairs(a8, lda, b8, conv.kp, conv.n, m0, m1, n0, n1, epilogue, out, conv.n)
    case .avx2Quads:
      withUnsafePointer(to: conv.fixups!.table) {
        octet_i8_gemm__avx2_quads(a8, lda, b8, $0, conv.kp, conv.n, m0, m1, n0, n1, epilogue, out, conv.n)
      }
    case .avx512vnni where emulatedISA:
      octet_i8_gemm__avx512vnni_emulated(a8, lda, b8, conv.kp, conv.n, m0, m1, n0, n1, epilogue, out, conv.n)
    case .amx where emulatedISA:
      octet_i8_gemm__amx_emulated(a8, lda, b8, conv.kp, conv.n, m0, m1, n0, n1, epilogue, out, conv.n)
    case .avx512vnni:
      octet_i8_gemm__avx512vnni(a8, lda, b8, conv.kp, conv.n, m0, m1, n0, n1, epilogue, out, conv.n)
    case .amx:
      octet_i8_gemm__amx(a8, lda, b8, conv.kp, conv.n, m0, m1, n0, n1, epilogue, out, conv.n)
    case .scalar:
      octet_i8_gemm__scalar(a8, lda, b8, conv.kp, conv.n, m0, m1, n0, n1, epilogue, out, conv.n)
    }
  }

  private func runConv(_ conv: ConvStep, batch: Int, workspace: Workspace, logits: UnsafeMutablePointer<Int32>) {
    let m = conv.m
    let kernel = conv.kernel
    let elementSize = kernel.aElementSize
    let aRowBytes = conv.kp * elementSize
    let input = workspace.buffers[conv.input]
    let outElement = conv.int32Output ? 4 : 1
    let outBase: UnsafeMutableRawPointer =
      conv.int32Output ? UnsafeMutableRawPointer(logits) : UnsafeMutableRawPointer(workspace.buffers[conv.output])
    let residual = conv.residual.map { workspace.buffers[$0.buffer] }
    let scratch = workspace.scratch
    var window = conv.window

    // Epilogue for image n (the residual pointer moves with the image).
    func epilogue(_ n: Int) -> octet_i8_epilogue {
      var e = conv.epilogue
      if let residual { e.residual = UnsafePointer(residual + n * m * conv.n) }
      return e
    }
    // A for image n: the input itself (1x1 direct) or its packed rows in the scratch.
    func aBase(_ n: Int) -> (UnsafeRawPointer, Int) {
      if conv.direct { return (UnsafeRawPointer(input + n * conv.inSize), conv.k) }
      return (UnsafeRawPointer(scratch + n * m * aRowBytes), conv.kp)
    }
    func pack(_ n: Int, _ r0: Int, _ r1: Int) {
      guard !conv.direct, r1 > r0 else { return }
      octet_i8_pack_a(
        kernel.layout, &window, input + n * conv.inSize, r0, r1 - r0, scratch + (n * m + r0) * aRowBytes)
    }
    let rows = batch * m
    let rowGrain = kernel.rowGrain
    let columnGrain = kernel.columnGrain
    let columnBlocks = (conv.n + columnGrain - 1) / columnGrain
    let nr = Int(OCTET_I8_NR)
    let smallB = conv.kp * elementSize * ((conv.n + nr - 1) / nr * nr) <= Int(OCTET_I8_TILE_B_LIMIT)
    let manyRows = rows >= rowGrain * 8 * threads
    // Large B and many rows: a band of rows per thread, each band in column blocks (below).
    let bands = !smallB && manyRows && threads > 1 && columnBlocks >= 2 * 4 ? threads : 1
    if threads == 1 || (manyRows && bands == 1) || columnBlocks < threads {
      // Split the rows (all images counted together): each task packs and multiplies its own rows.
      // Where B is small enough to stay in L2 (the GEMM then runs a tile's rows at a time), four
      // tasks per thread, taken dynamically: a core slowed by another tenant takes fewer.
      let tasks = min(threads * (smallB && threads > 1 ? 4 : 1), max(1, rows / rowGrain))
      let perTask = (rows + tasks - 1) / tasks
      let chunk = (perTask + rowGrain - 1) / rowGrain * rowGrain
      // Packed A goes through the scratch a block of rows at a time (about 48 KB, so it is still in
      // L2 when the GEMM reads it), into the task's own part of the scratch.
      let blockRows = conv.direct ? rows : max(rowGrain, 48 * 1024 / aRowBytes / rowGrain * rowGrain)
      parallel(tasks) { t in
        let start = t * chunk
        var r = start
        let end = min(rows, r + chunk)
        let region = scratch + start * aRowBytes
        while r < end {
          let n = r / m
          let r0 = r - n * m
          let r1 = min(m, r0 + (end - r), r0 + blockRows)
          var e = epilogue(n)
          if conv.direct {
            gemm(
              conv, a: UnsafeRawPointer(input + n * conv.inSize), lda: conv.k, m0: r0, m1: r1, n0: 0, n1: conv.n,
              epilogue: &e, out: outBase + n * m * conv.n * outElement)
          } else {
            // The block's rows are rows 0..< r1 - r0 of `region`; output and residual move with them.
            octet_i8_pack_a(kernel.layout, &window, input + n * conv.inSize, r0, r1 - r0, region)
            if let residual = e.residual { e.residual = residual + r0 * conv.n }
            gemm(
              conv, a: UnsafeRawPointer(region), lda: conv.kp, m0: 0, m1: r1 - r0, n0: 0, n1: conv.n, epilogue: &e,
              out: outBase + (n * m + r0) * conv.n * outElement)
          }
          r += r1 - r0
        }
      }
    } else {
      // Few rows, or large B: pack the rows once (the threads share them), then split the columns;
      // with large B also the rows, into `bands` bands. A task is one band and one block of
      // columns: the threads run the bands of one column block side by side, so each streams only
      // its block of B, and a core slowed by another tenant takes fewer tasks (one band per thread
      // over all columns, as before, let the faster core wait).
      if !conv.direct {
        let perTask = (rows + threads - 1) / threads
        parallel(threads) { t in
          var r = t * perTask
          let end = min(rows, r + perTask)
          while r < end {
            let n = r / m
            let r0 = r - n * m
            let r1 = min(m, r0 + (end - r))
            pack(n, r0, r1)
            r += r1 - r0
          }
        }
      }
      // Columns: distinct panels of B per task, so four tasks per thread cost no extra traffic.
      let columnTasks = min(bands > 1 ? 4 : threads * 4, columnBlocks)
      let perTask = (columnBlocks + columnTasks - 1) / columnTasks
      let bandRows = (m + bands - 1) / bands
      let bandGrain = (bandRows + rowGrain - 1) / rowGrain * rowGrain
      parallel(columnTasks * bands) { t in
        let n0 = t / bands * perTask * columnGrain
        let n1 = min(conv.n, n0 + perTask * columnGrain)
        let m0 = t % bands * bandGrain, m1 = min(m, m0 + bandGrain)
        guard n0 < n1, m0 < m1 else { return }
        for n in 0..<batch {
          var e = epilogue(n)
          let (a, lda) = aBase(n)
          gemm(
            conv, a: a, lda: lda, m0: m0, m1: m1, n0: n0, n1: n1, epilogue: &e,
            out: outBase + n * m * conv.n * outElement)
        }
      }
    }
  }

  private func runDepthwise(_ conv: ConvStep, batch: Int, workspace: Workspace) {
    let input = workspace.buffers[conv.input]
    let output = workspace.buffers[conv.output]
    let residual = conv.residual.map { workspace.buffers[$0.buffer] }
    let w = conv.window
    let p = conv.padding
    let paddedW = Int(w.in_w) + p.left + p.right
    let paddedSize = (Int(w.in_h) + p.top + p.bottom) * paddedW * Int(w.channels)
    let scratch = workspace.scratch
    parallel(min(threads, batch)) { t in
      var n = t
      while n < batch {
        octet_i8_pad_image(
          input + n * conv.inSize, w.in_h, w.in_w, w.channels, Int32(p.top), Int32(p.left), Int32(p.bottom),
          Int32(p.right), UInt8(w.zero_point), scratch + n * paddedSize)
        n += threads
      }
    }
    let outH = Int(w.out_h)
    let chunks = threads == 1 ? 1 : min(outH, threads * 2)
    let rowsPerChunk = (outH + chunks - 1) / chunks
    let tasks = batch * chunks
    let imageOut = conv.m * conv.n
    parallel(min(threads, tasks)) { t in
      var task = t
      while task < tasks {
        let n = task / chunks
        let oy0 = (task % chunks) * rowsPerChunk
        let oy1 = min(outH, oy0 + rowsPerChunk)
        if oy0 < oy1 {
          var e = conv.epilogue
          if let residual { e.residual = UnsafePointer(residual + n * imageOut) }
          var window = w
          let padded = scratch + n * paddedSize
          if scalarDepthwise {
            octet_i8_dwconv__scalar(
              &window, padded, Int32(paddedW), conv.packedWeights.pointer.assumingMemoryBound(to: Int8.self), &e,
              Int32(oy0), Int32(oy1), output + n * imageOut)
          } else {
            octet_i8_dwconv__avx2(
              &window, padded, Int32(paddedW), conv.packedWeights.pointer.assumingMemoryBound(to: Int16.self), &e,
              Int32(oy0), Int32(oy1), output + n * imageOut)
          }
        }
        task += min(threads, tasks)
      }
    }
  }
}

// MARK: - Plan

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

/// The GEMM kernel of one layer, and the packed layout it reads.
enum GemmKernel: String, Sendable {
  case scalar, avx2Int16 = "avx2 (vpmaddwd)", avx2Pairs = "avx2 (vpmaddubsw)"
  case avx2Quads = "avx2 (vpmaddubsw quads)", avx512vnni, amx

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

struct FusedResidual {
  var buffer: Int
}

struct ConvStep {
  var window: octet_i8_window
  var padding: (top: Int, left: Int, bottom: Int, right: Int)
  /// Rows per image (output pixels), K, padded K, N.
  var m: Int, k: Int, kp: Int, n: Int
  var inSize: Int
  var direct: Bool
  var kernel: GemmKernel
  var int32Output: Bool
  var packedWeights: AlignedBytes
  /// The quads kernel's sparse weight part (nil for the other kernels).
  var fixups: QuadFixups? = nil
  var parameters: ChannelParameters
  var epilogue: octet_i8_epilogue
  var residual: FusedResidual?
  var input: Int, output: Int
}

struct AddParameters {
  var za: Int32, zb: Int32, ma: Int32, mb: Int32, shift: Int32, zo: Int32, lo: Int32, hi: Int32
}

struct FastStep {
  enum Op {
    case quantizeInput(ActivationQuantization, out: Int)
    case conv(ConvStep)
    case depthwise(ConvStep)
    case groupedReference(Int8ConvPlan, input: Int, out: Int, inSize: Int, outSize: Int)
    case add(Int, Int, count: Int, AddParameters, out: Int)
    case maxPool(octet_i8_window, input: Int, out: Int, inSize: Int, outSize: Int)
    case globalAveragePool(
      input: Int, pixels: Int, channels: Int, zIn: Int32, RequantMultiplier, zOut: Int32, out: Int)
    case alias
  }
  var op: Op
  /// Name, per-image shape, quantization and buffer of the node output this step materializes.
  var observable: (String, [Int], ActivationQuantization, Int)?
}

/// Turns the reference plan into fast steps: packs weights, fuses residual adds, assigns buffers.
struct FastPlanner {
  var steps: [FastStep] = []
  var bufferSizes: [Int] = []
  var scratchSize = 0
  var layers: [Int8FastExecutor.Layer] = []

  init(
    reference: Int8ReferenceExecutor, isa: octet_i8_isa, fuse: Bool, scalarDepthwise: Bool, avx2Kernel: GemmKernel? = nil
  ) {
    let planned = reference.steps
    // Readers of each step's output.
    var readers = [[Int]](repeating: [], count: planned.count)
    for (i, p) in planned.enumerated() {
      for s in Int8ReferenceExecutor.inputs(of: p.step) { readers[s].append(i) }
    }
    // Residual adds fused into the later of their two producers, when that producer is a
    // convolution read by nothing else.
    var fusedInto: [Int: Int] = [:]  // add index -> conv index
    var fusedAdd: [Int: Int] = [:]  // conv index -> add index
    if fuse {
      for (j, p) in planned.enumerated() {
        guard case .add(let a, let b, _, _, _, _, _, _) = p.step else { continue }
        let later = max(a, b)
        guard case .conv(let plan, _) = planned[later].step, plan.groups == 1 || plan.isDepthwise,
          readers[later] == [j]
        else { continue }
        fusedInto[j] = later
        fusedAdd[later] = j
      }
    }
    // Buffers: each materialized output gets one; flatten shares its input's.
    var bufferOf: [Int: Int] = [:]
    func newBuffer(_ bytes: Int) -> Int {
      bufferSizes.append(bytes)
      return bufferSizes.count - 1
    }
    for (i, p) in planned.enumerated() {
      let size = p.shape.reduce(1, *)
      switch p.step {
      case .flatten(let input): bufferOf[i] = bufferOf[input]
      case .linear: break
      case .add where fusedInto[i] != nil: bufferOf[i] = newBuffer(size)
      default: if fusedAdd[i] == nil { bufferOf[i] = newBuffer(size) }
      }
    }
    for (i, p) in planned.enumerated() {
      if fusedInto[i] != nil { continue }
      let name = p.name
      let shape = p.shape
      var observable: (String, [Int], ActivationQuantization, Int)? =
        bufferOf[i].map { (name, shape, p.quantization, $0) }
      switch p.step {
      case .quantizeInput(let q):
        steps.append(FastStep(op: .quantizeInput(q, out: bufferOf[i]!), observable: observable))
        layers.append(.init(name: name, kind: "quantize_input", m: 0, n: 0, k: 0, macs: 0, nodes: [name]))
      case .conv(let plan, let input):
        let inShape = planned[input].shape
        var nodes = [name]
        var out = bufferOf[i] ?? -1
        var residual: (Int, AddParameters)?
        if let j = fusedAdd[i], case .add(let a, let b, let za, let zb, let mult, let zo, let lo, let hi) =
          planned[j].step
        {
          let convIsA = a == i
          let other = convIsA ? b : a
          residual = (
            bufferOf[other]!,
            AddParameters(
              za: convIsA ? za : zb, zb: convIsA ? zb : za, ma: convIsA ? mult.a : mult.b,
              mb: convIsA ? mult.b : mult.a, shift: mult.shift, zo: zo, lo: lo, hi: hi)
          )
          out = bufferOf[j]!
          nodes.append(planned[j].name)
          observable = (planned[j].name, planned[j].shape, planned[j].quantization, out)
        }
        let step = Self.convStep(
          plan, inShape: inShape, input: bufferOf[input]!, output: out, residual: residual, isa: isa,
          avx2Kernel: avx2Kernel, scalarDepthwise: scalarDepthwise)
        if let step {
          if plan.isDepthwise {
            let paddedBytes =
              (Int(step.window.in_h) + step.padding.top + step.padding.bottom)
              * (Int(step.window.in_w) + step.padding.left + step.padding.right) * Int(step.window.channels)
            scratchSize = max(scratchSize, paddedBytes)
            steps.append(FastStep(op: .depthwise(step), observable: observable))
            layers.append(
              .init(name: name, kind: "depthwise", m: step.m, n: step.n, k: step.k, macs: step.m * step.n * step.k, nodes: nodes))
          } else {
            if !step.direct { scratchSize = max(scratchSize, step.m * step.kp * step.kernel.aElementSize) }
            steps.append(FastStep(op: .conv(step), observable: observable))
            layers.append(
              .init(
                name: name, kind: "conv", m: step.m, n: step.n, k: step.k, macs: step.m * step.n * step.k, nodes: nodes,
                kernel: step.kernel.rawValue))
          }
        } else {
          // Grouped (not depthwise) convolutions: the reference kernel, per image. Neither model has one.
          steps.append(
            FastStep(
              op: .groupedReference(
                plan, input: bufferOf[input]!, out: out, inSize: inShape.reduce(1, *), outSize: shape.reduce(1, *)),
              observable: observable))
          layers.append(.init(name: name, kind: "grouped_conv_reference", m: 0, n: 0, k: 0, macs: 0, nodes: nodes))
        }
      case .add(let a, let b, let za, let zb, let mult, let zo, let lo, let hi):
        let p = AddParameters(za: za, zb: zb, ma: mult.a, mb: mult.b, shift: mult.shift, zo: zo, lo: lo, hi: hi)
        steps.append(
          FastStep(
            op: .add(bufferOf[a]!, bufferOf[b]!, count: shape.reduce(1, *), p, out: bufferOf[i]!), observable: observable))
        layers.append(.init(name: name, kind: "add", m: 0, n: 0, k: 0, macs: 0, nodes: [name]))
      case .maxPool(let kernel, let stride, let padding, let input):
        let s = planned[input].shape
        let window = octet_i8_window(
          in_h: Int32(s[0]), in_w: Int32(s[1]), channels: Int32(s[2]), out_h: Int32(shape[0]), out_w: Int32(shape[1]),
          kernel_h: Int32(kernel[0]), kernel_w: Int32(kernel[1]), stride_h: Int32(stride[0]),
          stride_w: Int32(stride[1]), pad_top: Int32(padding[0]), pad_left: Int32(padding[1]), zero_point: 0)
        steps.append(
          FastStep(
            op: .maxPool(
              window, input: bufferOf[input]!, out: bufferOf[i]!, inSize: s.reduce(1, *), outSize: shape.reduce(1, *)),
            observable: observable))
        layers.append(.init(name: name, kind: "max_pool", m: 0, n: 0, k: 0, macs: 0, nodes: [name]))
      case .globalAveragePool(let input, let zIn, let requant, let zOut):
        let s = planned[input].shape
        steps.append(
          FastStep(
            op: .globalAveragePool(
              input: bufferOf[input]!, pixels: s[0] * s[1], channels: s[2], zIn: zIn, requant, zOut: zOut,
              out: bufferOf[i]!),
            observable: observable))
        layers.append(.init(name: name, kind: "global_average_pool", m: 0, n: 0, k: 0, macs: 0, nodes: [name]))
      case .flatten:
        steps.append(FastStep(op: .alias, observable: observable))
        layers.append(.init(name: name, kind: "flatten", m: 0, n: 0, k: 0, macs: 0, nodes: [name]))
      case .linear(let plan, let input):
        let features = plan.inFeatures
        let window = octet_i8_window(
          in_h: 1, in_w: 1, channels: Int32(features), out_h: 1, out_w: 1, kernel_h: 1, kernel_w: 1, stride_h: 1,
          stride_w: 1, pad_top: 0, pad_left: 0, zero_point: 0)
        let step = Self.gemmStep(
          weights: plan.weights, bias: plan.bias, requant: plan.requant, window: window,
          padding: (0, 0, 0, 0), n: plan.outFeatures, input: bufferOf[input]!, output: -1, isa: isa,
          avx2Kernel: avx2Kernel, clamp: (0, 0, 0), int32Output: true, residual: nil)
        if !step.direct { scratchSize = max(scratchSize, step.kp * step.kernel.aElementSize) }
        steps.append(FastStep(op: .conv(step), observable: nil))
        layers.append(
          .init(
            name: name, kind: "linear", m: 1, n: step.n, k: step.k, macs: step.n * step.k, nodes: [name],
            kernel: step.kernel.rawValue))
      }
    }
    reuseBuffers()
  }

  /// The buffers each step reads and the one it writes (-1: none, as for the int32 logits).
  static func buffers(of op: FastStep.Op) -> (reads: [Int], writes: Int) {
    switch op {
    case .quantizeInput(_, let out): return ([], out)
    case .conv(let c), .depthwise(let c): return ([c.input] + (c.residual.map { [$0.buffer] } ?? []), c.output)
    case .groupedReference(_, let input, let out, _, _): return ([input], out)
    case .add(let a, let b, _, _, let out): return ([a, b], out)
    case .maxPool(_, let input, let out, _, _): return ([input], out)
    case .globalAveragePool(let input, _, _, _, _, _, let out): return ([input], out)
    case .alias: return ([], -1)
    }
  }

  /// Gives each node output a buffer that is free by then: one whose last reader ran before the
  /// step that writes it (never one of that step's own inputs). ResNet50 then has 2.4 MB of
  /// activation buffers per image instead of 11.5 MB (EfficientNet-Lite0 2.1 instead of 6.9), less
  /// memory for each run to stream through the caches. Observers copy a step's output before the
  /// next step runs, so they see every value.
  mutating func reuseBuffers() {
    let count = bufferSizes.count
    var lastRead = [Int](repeating: -1, count: count)
    for (i, step) in steps.enumerated() {
      for b in Self.buffers(of: step.op).reads where b >= 0 { lastRead[b] = max(lastRead[b], i) }
    }
    var physical = [Int](repeating: -1, count: count)
    var sizes: [Int] = []
    var free: [Int] = []  // physical buffers nobody reads any more
    for (i, step) in steps.enumerated() {
      let (reads, written) = Self.buffers(of: step.op)
      if written >= 0, physical[written] < 0 {
        let need = bufferSizes[written]
        // The smallest free buffer that holds it, else the largest free one (grown), else a new one.
        if let best = free.filter({ sizes[$0] >= need }).min(by: { sizes[$0] < sizes[$1] })
          ?? free.max(by: { sizes[$0] < sizes[$1] })
        {
          free.removeAll { $0 == best }
          sizes[best] = max(sizes[best], need)
          physical[written] = best
        } else {
          sizes.append(need)
          physical[written] = sizes.count - 1
        }
      }
      // Buffers whose last reader is this step are free for the steps after it.
      for b in Set(reads) where b >= 0 && lastRead[b] == i && physical[b] >= 0 && !free.contains(physical[b]) {
        free.append(physical[b])
      }
    }
    // Outputs nobody reads (the last materialized node before the logits) still get a buffer.
    for b in 0..<count where physical[b] < 0 {
      sizes.append(bufferSizes[b])
      physical[b] = sizes.count - 1
    }
    func map(_ b: Int) -> Int { b >= 0 ? physical[b] : b }
    for i in steps.indices {
      switch steps[i].op {
      case .quantizeInput(let q, let out): steps[i].op = .quantizeInput(q, out: map(out))
      case .conv(var c), .depthwise(var c):
        c.input = map(c.input)
        c.output = map(c.output)
        if var r = c.residual {
          r.buffer = map(r.buffer)
          c.residual = r
        }
        if case .conv = steps[i].op { steps[i].op = .conv(c) } else { steps[i].op = .depthwise(c) }
      case .groupedReference(let plan, let input, let out, let inSize, let outSize):
        steps[i].op = .groupedReference(plan, input: map(input), out: map(out), inSize: inSize, outSize: outSize)
      case .add(let a, let b, let n, let p, let out): steps[i].op = .add(map(a), map(b), count: n, p, out: map(out))
      case .maxPool(let w, let input, let out, let inSize, let outSize):
        steps[i].op = .maxPool(w, input: map(input), out: map(out), inSize: inSize, outSize: outSize)
      case .globalAveragePool(let input, let pixels, let channels, let zIn, let r, let zOut, let out):
        steps[i].op = .globalAveragePool(
          input: map(input), pixels: pixels, channels: channels, zIn: zIn, r, zOut: zOut, out: map(out))
      case .alias: break
      }
      if let (name, shape, q, b) = steps[i].observable { steps[i].observable = (name, shape, q, map(b)) }
    }
    bufferSizes = sizes
  }

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
      // scalar kernel, widened to int16 for the AVX2 one (which the VNNI and AMX backends use too).
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

// MARK: - Workspaces

/// The C worker pool (CInt8Kernels pool.c), destroyed with the executor.
final class WorkerPool: @unchecked Sendable {
  let raw: OpaquePointer?
  init(threads: Int) { raw = threads > 1 ? octet_pool_create(threads) : nil }
  deinit { octet_pool_destroy(raw) }
}

final class Workspace: @unchecked Sendable {
  let batch: Int
  var buffers: [UnsafeMutablePointer<UInt8>]
  let scratch: UnsafeMutablePointer<UInt8>
  private let storage: [AlignedBytes]

  init(batch: Int, bufferSizes: [Int], scratchSize: Int) {
    self.batch = batch
    var storage = bufferSizes.map { AlignedBytes(count: $0 * batch + 64) }
    storage.append(AlignedBytes(count: scratchSize * batch + 64))
    self.storage = storage
    buffers = storage.dropLast().map { $0.pointer.assumingMemoryBound(to: UInt8.self) }
    scratch = storage.last!.pointer.assumingMemoryBound(to: UInt8.self)
  }
}

/// Reuses workspaces between runs (allocation and page faults cost milliseconds per run otherwise);
/// concurrent runs each get their own.
final class WorkspacePool: @unchecked Sendable {
  private let lock = NSLock()
  private var free: [Workspace] = []

  func take(batch: Int, bufferSizes: [Int], scratchSize: Int, threads: Int) -> Workspace {
    lock.lock()
    if let i = free.firstIndex(where: { $0.batch == batch }) {
      let w = free.remove(at: i)
      lock.unlock()
      return w
    }
    lock.unlock()
    return Workspace(batch: batch, bufferSizes: bufferSizes, scratchSize: scratchSize)
  }

  func give(_ workspace: Workspace) {
    lock.lock()
    if free.count < 8 { free.append(workspace) }
    lock.unlock()
  }
}

// MARK: - AVX2 kernel choice

/// The sparse weight part of the quads kernel (CInt8Kernels.h `octet_i8_quads_split`), and the
/// dense `fit` part that gets packed.
final class QuadFixups: @unchecked Sendable {
  let fit: [Int8]
  /// Entries of d (k, 16 columns), and the pairs of them the kernel adds one vpmaddwd each.
  let entries: Int, pairs: Int
  private let panelStart: AlignedBytes, k: AlignedBytes, d: AlignedBytes
  let table: octet_i8_fixups

  /// nil if the split could not allocate its scratch.
  init?(weights: [Int8], k: Int, n: Int) {
    let panels = (n + Int(OCTET_I8_NR) - 1) / Int(OCTET_I8_NR)
    let panelStart = AlignedBytes(count: (panels + 1) * 4)
    var fit = [Int8](repeating: 0, count: weights.count)
    func split(capacity: Int) -> (count: Int, k: AlignedBytes, d: AlignedBytes) {
      let kBytes = AlignedBytes(count: capacity * 4), dBytes = AlignedBytes(count: capacity * Int(OCTET_I8_NR) * 4)
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
    let pairK = AlignedBytes(count: max(1, pairs) * 4), pairD = AlignedBytes(count: max(1, pairs) * Int(OCTET_I8_NR) * 4)
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
    entries = result.count
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
