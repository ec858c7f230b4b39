import CInt8Kernels
import OctetCore

// Scheduling: how a layer's work is split into tasks for the worker pool (row bands, column
// blocks, per-image depthwise chunks), and the pool itself.

extension Int8FastExecutor {
  /// Runs the tasks of one layer on the executor's workers (the tasks write disjoint parts of
  /// buffers this run owns).
  func parallel(_ tasks: Int, _ body: (Int) -> Void) { workers.run(tasks, body) }

  /// `input` replaces the step's input buffer (a group's gathered channels, FastPlanner+Grouped.swift).
  func runConv(
    _ conv: ConvStep, batch: Int, workspace: Workspace, logits: UnsafeMutablePointer<Int32>,
    input inputOverride: UnsafeMutablePointer<UInt8>? = nil
  ) {
    let m = conv.m
    let kernel = conv.kernel
    let elementSize = kernel.aElementSize
    let aRowBytes = conv.kp * elementSize
    let input = inputOverride ?? workspace.buffers[conv.input]
    let outElement = conv.int32Output ? 4 : 1
    // Output rows are `ldc` elements apart; a group of a grouped convolution starts at its column.
    let ldc = conv.outputStride ?? conv.n
    let outBase: UnsafeMutableRawPointer =
      (conv.int32Output ? UnsafeMutableRawPointer(logits) : UnsafeMutableRawPointer(workspace.buffers[conv.output]))
      + conv.outputColumn * outElement
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
    // Rows `from ..< to` of the batch (all images' rows counted together), cut at the images'
    // boundaries and into pieces of at most `piece` rows: body(image, first row, end row) in it.
    func segments(from: Int, to: Int, piece: Int = .max, _ body: (Int, Int, Int) -> Void) {
      var r = from
      while r < to {
        let n = r / m
        let r0 = r - n * m
        let r1 = min(m, r0 + min(to - r, piece))
        body(n, r0, r1)
        r += r1 - r0
      }
    }
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
        let region = scratch + start * aRowBytes
        segments(from: start, to: min(rows, start + chunk), piece: blockRows) { n, r0, r1 in
          var e = epilogue(n)
          if conv.direct {
            gemm(
              conv, a: UnsafeRawPointer(input + n * conv.inSize), lda: conv.k, m0: r0, m1: r1, n0: 0, n1: conv.n,
              epilogue: &e, out: outBase + n * m * ldc * outElement)
          } else {
            // The block's rows are rows 0..< r1 - r0 of `region`; output and residual move with them.
            octet_i8_pack_a(kernel.layout, &window, input + n * conv.inSize, r0, r1 - r0, region)
            if let residual = e.residual { e.residual = residual + r0 * conv.n }
            gemm(
              conv, a: UnsafeRawPointer(region), lda: conv.kp, m0: 0, m1: r1 - r0, n0: 0, n1: conv.n, epilogue: &e,
              out: outBase + (n * m + r0) * ldc * outElement)
          }
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
        parallel(threads) { t in segments(from: t * perTask, to: min(rows, (t + 1) * perTask), pack) }
      }
      // Columns: distinct panels of B per task, so four tasks per thread cost no extra traffic.
      let columnTasks = min(bands > 1 ? 4 : threads * 4, columnBlocks)
      let perTask = (columnBlocks + columnTasks - 1) / columnTasks
      // Bands of the rows of all images together (with a batch, a band is a run of whole images
      // and parts of images), so the threads get equal shares: per image, 49 rows in two bands of
      // whole 8-row tiles were 32 and 17.
      let bandRows = (rows + bands - 1) / bands
      let bandGrain = (bandRows + rowGrain - 1) / rowGrain * rowGrain
      parallel(columnTasks * bands) { t in
        let n0 = t / bands * perTask * columnGrain
        let n1 = min(conv.n, n0 + perTask * columnGrain)
        guard n0 < n1 else { return }
        let g0 = t % bands * bandGrain
        segments(from: g0, to: min(rows, g0 + bandGrain)) { n, r0, r1 in
          var e = epilogue(n)
          let (a, lda) = aBase(n)
          gemm(
            conv, a: a, lda: lda, m0: r0, m1: r1, n0: n0, n1: n1, epilogue: &e,
            out: outBase + n * m * ldc * outElement)
        }
      }
    }
  }

  func runDepthwise(_ conv: ConvStep, batch: Int, workspace: Workspace) {
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
          } else if vnniDepthwise {
            octet_i8_dwconv__avx512vnni(
              &window, padded, Int32(paddedW), conv.packedWeights.pointer.assumingMemoryBound(to: Int16.self), &e,
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
