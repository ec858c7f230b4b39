import CInt8Kernels
import OctetCore
import OctetModels

// Grouped (not depthwise) convolutions on the fast kernels: ResNeXt's 3x3s. Each group is a GEMM of
// its own (docs/quantization.md §5 per group, the same arithmetic as a dense convolution over the
// group's channels): the input's channels are first gathered group by group, then every group runs
// the backend's GEMM with its slice of the weights, bias and requantization, writing its columns of
// the output in place (the epilogue's row stride is the whole convolution's width).

/// A grouped convolution: one GEMM step per group.
struct GroupedConvStep {
  /// One step per group: window over the group's gathered input ([H, W, C / groups]), the
  /// group's weights and epilogue; `outputColumn` and `outputStride` place its columns.
  var groups: [ConvStep]
  var inChannels: Int, inPixels: Int
  var input: Int, output: Int
  /// Per-channel clamp bounds of the whole convolution (§7.1), applied after every group ran.
  var channelClamp: ChannelClamp?
  /// Scratch bytes per image for one group's packed A; the gathered input follows them.
  var packedBytes: Int
  /// Output pixels per image and channels.
  var m: Int, n: Int
}

extension FastPlanner {
  /// nil where the step needs the reference kernel: a grouped convolution that reads pixels
  /// (§12, its border classes), or one that is not grouped.
  static func groupedConvStep(
    _ plan: Int8ConvPlan, input: Int, output: Int, isa: octet_i8_isa, avx2Kernel: GemmKernel?
  ) -> GroupedConvStep? {
    guard plan.groups > 1, !plan.isDepthwise, plan.borderBias.isEmpty else { return nil }
    let groups = plan.groups
    let icg = plan.inChannels / groups
    let ocg = plan.outChannels / groups
    let k = plan.kernelH * plan.kernelW * icg
    let window = octet_i8_window(
      in_h: Int32(plan.inHeight), in_w: Int32(plan.inWidth), channels: Int32(icg),
      out_h: Int32(plan.outHeight), out_w: Int32(plan.outWidth), kernel_h: Int32(plan.kernelH),
      kernel_w: Int32(plan.kernelW), stride_h: Int32(plan.strideH), stride_w: Int32(plan.strideW),
      pad_top: Int32(plan.padTop), pad_left: Int32(plan.padLeft), zero_point: plan.inputZeroPoint)
    let bottom = (plan.outHeight - 1) * plan.strideH + plan.kernelH - plan.inHeight - plan.padTop
    let right = (plan.outWidth - 1) * plan.strideW + plan.kernelW - plan.inWidth - plan.padLeft
    let padding = (plan.padTop, plan.padLeft, max(0, bottom), max(0, right))
    var steps: [ConvStep] = []
    for g in 0..<groups {
      // Weights [O, kh, kw, I / groups]: the group's output channels are consecutive rows.
      let rows = (g * ocg)..<((g + 1) * ocg)
      var step = gemmStep(
        weights: Array(plan.weights[(rows.lowerBound * k)..<(rows.upperBound * k)]), bias: Array(plan.bias[rows]),
        requant: Array(plan.requant[rows]), window: window, padding: padding, n: ocg, input: -1, output: output,
        isa: isa, avx2Kernel: avx2Kernel, clamp: (plan.outputZeroPoint, plan.clampLo, plan.clampHi),
        int32Output: false, residual: nil)
      step.outputColumn = g * ocg
      step.outputStride = plan.outChannels
      steps.append(step)
    }
    let m = plan.outHeight * plan.outWidth
    let packedBytes = steps.map { $0.direct ? 0 : m * $0.kp * $0.kernel.aElementSize }.max() ?? 0
    return GroupedConvStep(
      groups: steps, inChannels: plan.inChannels, inPixels: plan.inHeight * plan.inWidth, input: input,
      output: output,
      channelClamp: plan.channelClampLo.isEmpty ? nil : ChannelClamp(lo: plan.channelClampLo, hi: plan.channelClampHi),
      packedBytes: packedBytes, m: m, n: plan.outChannels)
  }
}

extension Int8FastExecutor {
  func runGrouped(_ step: GroupedConvStep, batch: Int, workspace: Workspace, logits: UnsafeMutablePointer<Int32>) {
    let groups = step.groups.count
    let icg = step.inChannels / groups
    let pixels = step.inPixels
    let input = workspace.buffers[step.input]
    // Gathered input after the packed A of every image: [group][image][pixel][C / groups].
    let gathered = workspace.scratch + batch * step.packedBytes
    let groupBatch = batch * pixels * icg
    parallel(min(threads, batch)) { t in
      var n = t
      while n < batch {
        let source = input + n * pixels * step.inChannels
        for g in 0..<groups {
          var from = source + g * icg
          var to = gathered + g * groupBatch + n * pixels * icg
          for _ in 0..<pixels {
            to.update(from: from, count: icg)
            from += step.inChannels
            to += icg
          }
        }
        n += threads
      }
    }
    for (g, conv) in step.groups.enumerated() {
      runConv(conv, batch: batch, workspace: workspace, logits: logits, input: gathered + g * groupBatch)
    }
    if let clamp = step.channelClamp {
      var whole = step.groups[0]
      whole.n = step.n
      clampChannels(clamp, whole, batch: batch, workspace: workspace)
    }
  }
}
