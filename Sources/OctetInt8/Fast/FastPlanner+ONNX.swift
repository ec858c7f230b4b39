import CInt8Kernels
import OctetCore
import OctetModels

/// A fast step of an ONNX operator (docs/quantization.md §20-§23): lookup, mul, concat, average
/// pool on the C kernels of elementwise.c, which compute the reference's integers on every backend.
struct ONNXStep {
  enum Kind {
    case lookup(table: [UInt8])
    /// `broadcast`: input 1 is one `[C]` factor per image.
    case mul(za: Int32, zb: Int32, RequantMultiplier, zo: Int32, broadcast: Bool, channels: Int)
    /// Per input: channels, z_in, multiplier, and whether it is a plain copy (equal quantizations).
    case concat(channels: [Int], zeroPoints: [Int32], [RequantMultiplier], copy: [Bool], zo: Int32)
    case averagePool(
      octet_i8_window, multipliers: [Int32], shifts: [Int32], countIncludePad: Bool, zo: Int32)
  }
  var kind: Kind
  /// Buffers read, in the node's input order, and written.
  var inputs: [Int]
  var output: Int
  /// Values per image of each input and of the output.
  var inSizes: [Int]
  var outSize: Int

  var kindName: String {
    switch kind {
    case .lookup: "lookup"
    case .mul: "mul"
    case .concat: "concat"
    case .averagePool: "average_pool"
    }
  }
}

extension FastPlanner {
  /// The fast step of reference step `p` (an ONNX operator), nil for any other step.
  static func onnxStep(
    _ p: Int8ReferenceExecutor.PlannedStep, planned: [Int8ReferenceExecutor.PlannedStep], buffer: (Int) -> Int,
    output: Int
  ) -> ONNXStep? {
    let outSize = p.shape.reduce(1, *)
    func size(_ i: Int) -> Int { planned[i].shape.reduce(1, *) }
    switch p.step {
    case .lookup(let table, let input):
      return ONNXStep(
        kind: .lookup(table: table), inputs: [buffer(input)], output: output, inSizes: [size(input)],
        outSize: outSize)
    case .mul(let a0, let b0, let za0, let zb0, let requant, let zo):
      // The operand of the output's shape first, a [1, 1, C] factor second (the product is symmetric).
      let swap = planned[a0].shape != p.shape
      let (a, b, za, zb) = swap ? (b0, a0, zb0, za0) : (a0, b0, za0, zb0)
      return ONNXStep(
        kind: .mul(
          za: za, zb: zb, requant, zo: zo, broadcast: planned[b].shape != p.shape, channels: p.shape.last!),
        inputs: [buffer(a), buffer(b)], output: output, inSizes: [size(a), size(b)], outSize: outSize)
    case .concat(let inputs, let zeroPoints, let requant, let zo):
      let copy = inputs.indices.map { planned[inputs[$0]].quantization == p.quantization }
      return ONNXStep(
        kind: .concat(
          channels: inputs.map { planned[$0].shape[2] }, zeroPoints: zeroPoints, requant, copy: copy, zo: zo),
        inputs: inputs.map(buffer), output: output, inSizes: inputs.map(size), outSize: outSize)
    case .averagePool(let a, let zo, let input):
      let s = planned[input].shape
      let window = octet_i8_window(
        in_h: Int32(s[0]), in_w: Int32(s[1]), channels: Int32(s[2]), out_h: Int32(p.shape[0]),
        out_w: Int32(p.shape[1]), kernel_h: Int32(a.kernel[0]), kernel_w: Int32(a.kernel[1]),
        stride_h: Int32(a.stride[0]), stride_w: Int32(a.stride[1]), pad_top: Int32(a.padding[0]),
        pad_left: Int32(a.padding[1]), zero_point: a.input.zeroPoint)
      return ONNXStep(
        kind: .averagePool(
          window, multipliers: a.requant.map(\.multiplier), shifts: a.requant.map(\.shift),
          countIncludePad: a.countIncludePad, zo: zo),
        inputs: [buffer(input)], output: output, inSizes: [size(input)], outSize: outSize)
    default:
      return nil
    }
  }
}

extension Int8FastExecutor {
  func runONNX(_ step: ONNXStep, batch: Int, workspace: Workspace) {
    let out = workspace.buffers[step.output]
    let x = workspace.buffers[step.inputs[0]]
    switch step.kind {
    case .lookup(let table):
      let count = batch * step.outSize
      let slice = max(4096, (count + threads - 1) / threads)
      table.withUnsafeBufferPointer { t in
        parallel((count + slice - 1) / slice) { i in
          let start = i * slice
          octet_i8_lookup(x + start, min(slice, count - start), t.baseAddress!, out + start)
        }
      }
    case .mul(let za, let zb, let r, let zo, let broadcast, let channels):
      let y = workspace.buffers[step.inputs[1]]
      if broadcast {
        let pixels = step.outSize / channels
        parallel(batch) { n in
          octet_i8_mul_channels(
            x + n * step.outSize, y + n * channels, pixels, channels, za, zb, r.multiplier, r.shift, zo,
            out + n * step.outSize)
        }
      } else {
        octet_i8_mul(x, y, batch * step.outSize, za, zb, r.multiplier, r.shift, zo, out)
      }
    case .concat(let channels, let zeroPoints, let requant, let copy, let zo):
      let total = channels.reduce(0, +)
      let pixels = step.outSize / total
      parallel(batch) { n in
        var offset = 0
        for i in channels.indices {
          octet_i8_concat_into(
            workspace.buffers[step.inputs[i]] + n * step.inSizes[i], pixels, channels[i], offset, total,
            zeroPoints[i], requant[i].multiplier, requant[i].shift, zo, copy[i] ? 1 : 0, out + n * step.outSize)
          offset += channels[i]
        }
      }
    case .averagePool(let window, let multipliers, let shifts, let countIncludePad, let zo):
      var sum = [Int32](repeating: 0, count: Int(window.channels))
      multipliers.withUnsafeBufferPointer { m in
        shifts.withUnsafeBufferPointer { s in
          sum.withUnsafeMutableBufferPointer { sum in
            for n in 0..<batch {
              var w = window
              octet_i8_avgpool_rows(
                &w, x + n * step.inSizes[0], 0, window.out_h, m.baseAddress!, s.baseAddress!,
                countIncludePad ? 1 : 0, zo, sum.baseAddress!, out + n * step.outSize)
            }
          }
        }
      }
    }
  }
}
