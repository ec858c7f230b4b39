import CInt8Kernels
import OctetCore
import OctetModels

// Buffer reuse: liveness of each activation buffer and best-fit assignment of physical buffers.

extension FastStep.Op {
  /// This op with every buffer index it reads passed through `read` and the one it writes through
  /// `write` (-1, "none", as for the int32 logits, is passed too). The one place that knows where
  /// each kind of step keeps its buffer indices: listing them and remapping them both use it.
  func mappingBuffers(read: (Int) -> Int, write: (Int) -> Int) -> Self {
    switch self {
    case .quantizeInput(let q, let pixels, let out): return .quantizeInput(q, pixels, out: write(out))
    case .conv(var c), .depthwise(var c):
      c.input = read(c.input)
      if var r = c.residual {
        r.buffer = read(r.buffer)
        c.residual = r
      }
      c.output = write(c.output)
      if case .conv = self { return .conv(c) }
      return .depthwise(c)
    case .groupedConv(var g):
      g.input = read(g.input)
      g.output = write(g.output)
      for i in g.groups.indices { g.groups[i].output = g.output }
      return .groupedConv(g)
    case .groupedReference(let plan, let input, let out, let inSize, let outSize):
      return .groupedReference(plan, input: read(input), out: write(out), inSize: inSize, outSize: outSize)
    case .wideConv(var w):
      w.input = read(w.input)
      w.output = write(w.output)
      return .wideConv(w)
    case .add(let a, let b, let n, let p, let out): return .add(read(a), read(b), count: n, p, out: write(out))
    case .maxPool(let w, let input, let out, let inSize, let outSize):
      return .maxPool(w, input: read(input), out: write(out), inSize: inSize, outSize: outSize)
    case .globalAveragePool(let input, let pixels, let channels, let zIn, let r, let zOut, let out):
      return .globalAveragePool(
        input: read(input), pixels: pixels, channels: channels, zIn: zIn, r, zOut: zOut, out: write(out))
    case .alias: return self
    case .onnx(var step):
      step.inputs = step.inputs.map(read)
      step.output = write(step.output)
      return .onnx(step)
    }
  }

  /// The buffers this op reads and the one it writes (-1: none).
  var bufferAccesses: (reads: [Int], writes: Int) {
    var reads: [Int] = []
    var writes = -1
    _ = mappingBuffers(
      read: {
        reads.append($0)
        return $0
      },
      write: {
        writes = $0
        return $0
      })
    return (reads, writes)
  }
}

extension FastPlanner {
  /// Gives each node output a buffer that is free by then: one whose last reader ran before the
  /// step that writes it (never one of that step's own inputs). ResNet50 then has 2.4 MB of
  /// activation buffers per image instead of 11.5 MB (EfficientNet-Lite0 2.1 instead of 6.9), less
  /// memory for each run to stream through the caches. Observers copy a step's output before the
  /// next step runs, so they see every value.
  mutating func reuseBuffers() {
    let count = bufferSizes.count
    var lastRead = [Int](repeating: -1, count: count)
    for (i, step) in steps.enumerated() {
      for b in step.op.bufferAccesses.reads where b >= 0 { lastRead[b] = max(lastRead[b], i) }
    }
    var physical = [Int](repeating: -1, count: count)
    var sizes: [Int] = []
    var free: [Int] = []  // physical buffers nobody reads any more
    for (i, step) in steps.enumerated() {
      let (reads, written) = step.op.bufferAccesses
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
      steps[i].op = steps[i].op.mappingBuffers(read: map, write: map)
      if let (name, shape, q, b) = steps[i].observable { steps[i].observable = (name, shape, q, map(b)) }
    }
    bufferSizes = sizes
  }
}
