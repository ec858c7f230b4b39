import OctetCore
import OctetModels

// Float kernels of the ONNX operators of issue 15 (sigmoid, hard sigmoid, hard swish, leaky ReLU,
// mul, concat, k x k average pool), plain Swift loops over NHWC: these layers are a small part of
// a CNN's work.

/// `f(x)` elementwise, in Float.
public func applyUnary(_ x: Tensor, _ function: UnaryFunction) -> Tensor {
  Tensor(shape: x.shape, scalars: x.scalars.map { function.apply($0) })
}

/// `a · b` elementwise for equal shapes, or `[N, H, W, C] · [N, 1, 1, C]` (either order): the
/// squeeze-and-excitation scale.
public func multiply(_ a: Tensor, _ b: Tensor) -> Tensor {
  if a.shape == b.shape { return Tensor(shape: a.shape, scalars: zip(a.scalars, b.scalars).map { $0 * $1 }) }
  let (x, s) = a.count >= b.count ? (a, b) : (b, a)
  precondition(
    x.rank == 4 && s.shape == [x.shape[0], 1, 1, x.shape[3]], "mul of shapes \(a.shape) and \(b.shape)")
  let c = x.shape[3]
  let pixels = x.shape[1] * x.shape[2]
  var out = x.scalars
  for n in 0..<x.shape[0] {
    for p in 0..<pixels {
      let base = (n * pixels + p) * c
      for ch in 0..<c { out[base + ch] *= s.scalars[n * c + ch] }
    }
  }
  return Tensor(shape: x.shape, scalars: out)
}

/// `[N, H, W, C_i]` maps concatenated along channels.
public func concatChannels(_ inputs: [Tensor]) -> Tensor {
  let first = inputs[0]
  let (n, h, w) = (first.shape[0], first.shape[1], first.shape[2])
  let total = inputs.reduce(0) { $0 + $1.shape[3] }
  var out = [Float](repeating: 0, count: n * h * w * total)
  var offset = 0
  for x in inputs {
    precondition(Array(x.shape.prefix(3)) == [n, h, w], "concat of \(x.shape) with \(first.shape)")
    let c = x.shape[3]
    for p in 0..<(n * h * w) {
      for ch in 0..<c { out[p * total + offset + ch] = x.scalars[p * c + ch] }
    }
    offset += c
  }
  return Tensor(shape: [n, h, w, total], scalars: out)
}

/// Mean over each k x k window (ONNX AveragePool): padded taps count in the divisor only when
/// `countIncludePad`. Output size as max pool's (floor).
public func averagePool2D(
  _ x: Tensor, kernel: [Int], stride: [Int], padding: [Int], countIncludePad: Bool
) -> Tensor {
  let (n, h, w, c) = (x.shape[0], x.shape[1], x.shape[2], x.shape[3])
  let oh = (h + padding[0] + padding[2] - kernel[0]) / stride[0] + 1
  let ow = (w + padding[1] + padding[3] - kernel[1]) / stride[1] + 1
  var out = [Float](repeating: 0, count: n * oh * ow * c)
  var sum = [Float](repeating: 0, count: c)
  for b in 0..<n {
    for oy in 0..<oh {
      for ox in 0..<ow {
        for ch in 0..<c { sum[ch] = 0 }
        var taps = 0
        for ky in 0..<kernel[0] {
          let iy = oy * stride[0] - padding[0] + ky
          guard iy >= 0, iy < h else { continue }
          for kx in 0..<kernel[1] {
            let ix = ox * stride[1] - padding[1] + kx
            guard ix >= 0, ix < w else { continue }
            taps += 1
            let base = ((b * h + iy) * w + ix) * c
            for ch in 0..<c { sum[ch] += x.scalars[base + ch] }
          }
        }
        // With the floor output size every window lies inside the padded input: it has kh · kw taps.
        let divisor = countIncludePad ? kernel[0] * kernel[1] : taps
        let o = ((b * oh + oy) * ow + ox) * c
        for ch in 0..<c { out[o + ch] = sum[ch] / Float(max(divisor, 1)) }
      }
    }
  }
  return Tensor(shape: [n, oh, ow, c], scalars: out)
}
