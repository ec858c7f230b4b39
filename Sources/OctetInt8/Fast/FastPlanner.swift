import CInt8Kernels
import OctetCore
import OctetModels

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
  /// Exact input (docs/quantization.md §12): the positions to recompute with their class bias.
  var border: BorderFixup? = nil
  /// Per-channel clamp bounds (docs/quantization.md §7.1), applied by a post-pass after the kernel,
  /// whose own clamp is the node's hull of them; nil for every other convolution.
  var channelClamp: ChannelClamp? = nil
  /// First output channel and output row stride (channels): one group of a grouped convolution
  /// writes its columns of the whole output (FastPlanner+Grouped.swift); nil: `n`, the whole row.
  var outputColumn = 0
  var outputStride: Int? = nil
}

/// What `octet_i8_conv_border` needs for a convolution that reads pixels: its weights unpacked
/// ([N][kh][kw][C]), the class biases and the class of each output row and column.
final class BorderFixup: @unchecked Sendable {
  let weights: [Int8]
  let classBias: [Int32]
  let rowClass: [Int32], colClass: [Int32]
  let colClasses: Int32
  /// The class whose window is wholly inside the input (-1: none), which the GEMM already computed.
  let fullClass: Int32

  init?(_ plan: Int8ConvPlan, classes: BorderClasses?) {
    guard let classes, !plan.borderBias.isEmpty else { return nil }
    weights = plan.weights
    classBias = plan.borderBias
    rowClass = plan.rowClass.map(Int32.init)
    colClass = plan.colClass.map(Int32.init)
    colClasses = Int32(plan.colClasses)
    let fullRow = classes.rowTaps.firstIndex(of: [0, plan.kernelH])
    let fullCol = classes.colTaps.firstIndex(of: [0, plan.kernelW])
    if let fullRow, let fullCol { fullClass = Int32(fullRow * classes.colTaps.count + fullCol) } else { fullClass = -1 }
  }
}

/// A convolution's per-channel clamp bounds `[N]`, for `octet_i8_channel_clamp`.
final class ChannelClamp: @unchecked Sendable {
  let lo: [UInt8], hi: [UInt8]
  init(lo: [Int32], hi: [Int32]) {
    self.lo = lo.map { UInt8($0) }
    self.hi = hi.map { UInt8($0) }
  }
}

struct AddParameters {
  var za: Int32, zb: Int32, ma: Int32, mb: Int32, shift: Int32, zo: Int32, lo: Int32, hi: Int32
}

struct FastStep {
  enum Op {
    case quantizeInput(ActivationQuantization, PixelNormalization?, out: Int)
    case conv(ConvStep)
    case depthwise(ConvStep)
    /// A grouped (not depthwise) convolution, one GEMM per group (FastPlanner+Grouped.swift).
    case groupedConv(GroupedConvStep)
    /// A grouped convolution that reads pixels (§12): the reference kernel, per image.
    case groupedReference(Int8ConvPlan, input: Int, out: Int, inSize: Int, outSize: Int)
    /// A convolution with a 16-bit input or output (FastPlanner+A16.swift).
    case wideConv(WideConvStep)
    case add(Int, Int, count: Int, AddParameters, out: Int)
    case maxPool(octet_i8_window, input: Int, out: Int, inSize: Int, outSize: Int)
    case globalAveragePool(
      input: Int, pixels: Int, channels: Int, zIn: Int32, RequantMultiplier, zOut: Int32, out: Int)
    case alias
    /// lookup, mul, concat, average pool (FastPlanner+ONNX.swift).
    case onnx(ONNXStep)
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
    reference: Int8ReferenceExecutor, isa: octet_i8_isa, fuse: Bool, scalarDepthwise: Bool,
    avx2Kernel: GemmKernel? = nil
  ) {
    let planned = reference.steps
    // Residual adds fused into the convolution before them (the shared rule, `ResidualAddFusion`),
    // for the convolutions the fast kernels give an add epilogue: dense and depthwise ones.
    let fusedInto =  // add index -> conv index
      fuse
      ? ResidualAddFusion.pairs(
        count: planned.count, inputs: { Int8ReferenceExecutor.inputs(of: planned[$0].step) },
        output: planned.count - 1,
        isAdd: { if case .add = planned[$0].step { true } else { false } },
        canTakeResidual: {
          // Not a convolution with per-channel clamps: the post-pass needs its own output stored.
          if case .conv(let plan, _) = planned[$0].step {
            (plan.groups == 1 || plan.isDepthwise) && plan.channelClampLo.isEmpty
          } else {
            false
          }
        })
      : [:]
    let fusedAdd = Dictionary(uniqueKeysWithValues: fusedInto.map { ($0.value, $0.key) })  // conv index -> add index
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
      default: if fusedAdd[i] == nil { bufferOf[i] = newBuffer(size * p.bits / 8) }
      }
    }
    for (i, p) in planned.enumerated() {
      if fusedInto[i] != nil { continue }
      let name = p.name
      let shape = p.shape
      var observable: (String, [Int], ActivationQuantization, Int)? =
        p.bits == 8 ? bufferOf[i].map { (name, shape, p.quantization, $0) } : nil
      switch p.step {
      case .wideConv(let plan, let input):
        // docs/quantization.md §17: AVX2 on every backend whose CPU has it (scalar: the plain twin).
        let avx2 = isa != OCTET_I8_SCALAR && Int8Backend.avx2.isSupported
        let step = WideConvStep(plan: plan, avx2: avx2, input: bufferOf[input]!, output: bufferOf[i]!)
        steps.append(FastStep(op: .wideConv(step), observable: observable))
        let k = Int(step.params.k)
        layers.append(
          .init(
            name: name, kind: plan.isDepthwise ? "depthwise" : "conv", m: step.m, n: plan.outChannels, k: k,
            macs: step.m * plan.outChannels * k, nodes: [name], kernel: step.kindName))
      case .quantizeInput(let q, let pixels):
        // A pixel input (§12) is the image, not a quantized tensor: not observed, as in the reference.
        if pixels != nil { observable = nil }
        steps.append(FastStep(op: .quantizeInput(q, pixels, out: bufferOf[i]!), observable: observable))
        layers.append(.init(name: name, kind: "quantize_input", m: 0, n: 0, k: 0, macs: 0, nodes: [name]))
      case .conv(let plan, let input):
        // A flat [F] input is [1, 1, F] (a hidden fully-connected layer, docs/quantization.md §24).
        let inShape = planned[input].shape.count == 1 ? [1, 1] + planned[input].shape : planned[input].shape
        var nodes = [name]
        var out = bufferOf[i] ?? -1
        var residual: (Int, AddParameters)?
        if let j = fusedAdd[i],
          case .add(let a, let b, let za, let zb, let mult, let zo, let lo, let hi) =
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
        var step = Self.convStep(
          plan, inShape: inShape, input: bufferOf[input]!, output: out, residual: residual, isa: isa,
          avx2Kernel: avx2Kernel, scalarDepthwise: scalarDepthwise)
        if !plan.channelClampLo.isEmpty {
          step?.channelClamp = ChannelClamp(lo: plan.channelClampLo, hi: plan.channelClampHi)
        }
        if var step {
          step.border = BorderFixup(plan, classes: reference.model.node(named: name)?.borderClasses)
          if plan.isDepthwise {
            let paddedBytes =
              (Int(step.window.in_h) + step.padding.top + step.padding.bottom)
              * (Int(step.window.in_w) + step.padding.left + step.padding.right) * Int(step.window.channels)
            scratchSize = max(scratchSize, paddedBytes)
            steps.append(FastStep(op: .depthwise(step), observable: observable))
            layers.append(
              .init(
                name: name, kind: "depthwise", m: step.m, n: step.n, k: step.k, macs: step.m * step.n * step.k,
                nodes: nodes))
          } else {
            if !step.direct { scratchSize = max(scratchSize, step.m * step.kp * step.kernel.aElementSize) }
            steps.append(FastStep(op: .conv(step), observable: observable))
            layers.append(
              .init(
                name: name, kind: "conv", m: step.m, n: step.n, k: step.k, macs: step.m * step.n * step.k, nodes: nodes,
                kernel: step.kernel.rawValue))
          }
        } else if let grouped = Self.groupedConvStep(
          plan, input: bufferOf[input]!, output: out, isa: isa, avx2Kernel: avx2Kernel)
        {
          scratchSize = max(scratchSize, grouped.packedBytes + grouped.inPixels * grouped.inChannels)
          steps.append(FastStep(op: .groupedConv(grouped), observable: observable))
          let k = grouped.groups[0].k
          let kernels = Set(grouped.groups.map(\.kernel.rawValue)).sorted()
          layers.append(
            .init(
              name: name, kind: "grouped_conv", m: grouped.m, n: grouped.n, k: k, macs: grouped.m * grouped.n * k,
              nodes: nodes, kernel: kernels.joined(separator: ", ")))
        } else {
          // A grouped convolution that reads pixels (exact input, §12): the reference kernel, per image.
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
            op: .add(bufferOf[a]!, bufferOf[b]!, count: shape.reduce(1, *), p, out: bufferOf[i]!),
            observable: observable))
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
      case .lookup, .mul, .concat, .averagePool:
        let step = Self.onnxStep(p, planned: planned, buffer: { bufferOf[$0]! }, output: bufferOf[i]!)!
        steps.append(FastStep(op: .onnx(step), observable: observable))
        layers.append(.init(name: name, kind: step.kindName, m: 0, n: 0, k: 0, macs: 0, nodes: [name]))
      }
    }
    reuseBuffers()
  }

}
