import COpenBLAS
import Foundation
import OctetCore
import OctetModels

/// The rectified sigmoid of AdaRound: h(V) = clamp(σ(V)·(ζ − γ) + γ, 0, 1), ζ = 1.1, γ = −0.1.
/// h(V) ≥ 1/2 exactly when V ≥ 0, which is the final rounding decision.
let adaZeta: Float = 1.1
let adaGamma: Float = -0.1

struct OptimizeOutcome {
  var result: AdaRoundLayerResult
  /// The new int8 weights and re-folded int32 biases, and the channels reverted to nearest.
  var apply: (weights: [Int8], bias: [Int32], reverted: Int)?
}

extension Target {
  /// Learns the rounding of this layer's weights on `samples` (docs/quantization.md §18): Adam on V
  /// over minibatches, loss (1/B) Σ_b Σ_c (act(W̃x̃ + b) − y)² + λ Σ (1 − |2h(V) − 1|^β), then
  /// w_q = floor(w/s) + [V ≥ 0], kept only if its error on the samples is below nearest's.
  func optimize(_ samples: Samples, parameters p: AdaRoundParameters) -> OptimizeOutcome {
    let n = samples.count
    let kTotal = groups * kg
    let o = outC
    let weightCount = o * kg
    var result = AdaRoundLayerResult(
      name: name, positions: n, lossNearest: 0, lossAdaRound: 0, changedWeights: 0, weights: weightCount,
      revertedChannels: 0, skipped: nil)
    guard n > 0 else {
      result.skipped = "no samples"
      return OptimizeOutcome(result: result, apply: nil)
    }
    // The rows come image after image. The last fifth of them (the last fifth of the images, when
    // there are at least 50 rows) is held out: the learned rounding is kept only if it lowers the
    // error there, on images it was not fitted on, so a layer with few samples for its weights (the
    // classifier: one position per image) cannot keep a rounding that fits only its training images.
    let heldOut = n >= 50 ? n / 5 : 0
    let train = n - heldOut
    let evalStart = heldOut > 0 ? train : 0
    // The training rows are shuffled (seeded), so that each minibatch, a contiguous block, mixes
    // images and positions. X is [n, kTotal], Y [n, o].
    var order = Array(0..<n)
    var g = SeededGenerator(seed: p.seed ^ (UInt64(nodeIndex) &* 0xA24B_AED4_963E_E407))
    order[0..<train].shuffle(using: &g)
    var x = [Float](repeating: 0, count: n * kTotal)
    var y = [Float](repeating: 0, count: n * o)
    let rf = rowFloats
    let rows = samples.rows
    for (r, src) in order.enumerated() {
      if isDepthwise {
        // [kg, C] within the row: the direct depthwise loops run along the channels.
        for c in 0..<o { for k in 0..<kg { x[r * kTotal + k * o + c] = rows[src * rf + c * kg + k] } }
      } else {
        for k in 0..<kTotal { x[r * kTotal + k] = rows[src * rf + k] }
      }
      for c in 0..<o { y[r * o + c] = rows[src * rf + kTotal + c] }
    }

    // floor(w/s) within the grid; a weight at the grid's edge (floor = ±max) is frozen there.
    var floors = [Float](repeating: 0, count: weightCount)
    var frozen = [Bool](repeating: false, count: weightCount)
    var v = [Float](repeating: 0, count: weightCount)
    let limit = Double(weightMax)
    for c in 0..<o {
      let s = Double(scales[c])
      for k in 0..<kg {
        let j = c * kg + k
        let ratio = Double(weights[j]) / s
        var f = ratio.rounded(.down)
        if f >= limit || f < -limit {
          f = min(max(f, -limit), limit)
          frozen[j] = true
        }
        floors[j] = Float(f)
        // h(V) starts at the fractional part, so W̃ starts at the float weight.
        let rest = Float(min(max(ratio - f, 0), 1))
        let q = min(max((rest - adaGamma) / (adaZeta - adaGamma), 1e-4), 1 - 1e-4)
        v[j] = log(q / (1 - q))
      }
    }
    let nearest: [Float] = self.nearest.map(Float.init)

    // Hard-rounded loss on the held-out rows (all rows when none are) for integer weights `q`.
    func hardLoss(_ q: [Float]) -> Double {
      var wt = [Float](repeating: 0, count: weightCount)
      for c in 0..<o { for k in 0..<kg { wt[c * kg + k] = scales[c] * q[c * kg + k] } }
      var total = 0.0
      let chunk = 1024
      var z = [Float](repeating: 0, count: chunk * o)
      var start = evalStart
      while start < n {
        let b = min(chunk, n - start)
        forward(x: x, row: start, rows: b, kTotal: kTotal, w: wt, z: &z)
        for r in 0..<b {
          for c in 0..<o {
            let e = activate(z[r * o + c] + bias[c]) - y[(start + r) * o + c]
            total += Double(e * e)
          }
        }
        start += b
      }
      return total / Double(n - evalStart)
    }
    result.lossNearest = hardLoss(nearest)

    // Adam, on the per-weight state in vectors of 16 (the tail of the last one is padding that
    // stays out of the sums: scale 0, frozen).
    let batch = min(p.batchSize, train)
    let batches = train / batch
    let lanes = AdaVector.scalarCount
    let vectors = (weightCount + lanes - 1) / lanes
    func vectorBuffer(_ value: (Int) -> Float) -> UnsafeMutableBufferPointer<AdaVector> {
      let b = UnsafeMutableBufferPointer<AdaVector>.allocate(capacity: vectors)
      for i in 0..<vectors {
        var e = AdaVector()
        for l in 0..<lanes where i * lanes + l < weightCount { e[l] = value(i * lanes + l) }
        b[i] = e
      }
      return b
    }
    let vv = vectorBuffer { v[$0] }
    let floorsV = vectorBuffer { floors[$0] }
    let scaleV = vectorBuffer { scales[$0 / kg] }
    let liveV = vectorBuffer { frozen[$0] ? 0 : 1 }
    let (m1, m2, sig, wt, dw) = (
      vectorBuffer { _ in 0 }, vectorBuffer { _ in 0 }, vectorBuffer { _ in 0 }, vectorBuffer { _ in 0 },
      vectorBuffer { _ in 0 }
    )
    defer { for b in [vv, floorsV, scaleV, liveV, m1, m2, sig, wt, dw] { b.deallocate() } }
    let wtFloats = UnsafeMutableRawPointer(wt.baseAddress!).assumingMemoryBound(to: Float.self)
    let dwFloats = UnsafeMutableRawPointer(dw.baseAddress!).assumingMemoryBound(to: Float.self)
    var z = [Float](repeating: 0, count: batch * o)
    let (b1, b2, eps) = (Float(0.9), Float(0.999), Float(1e-8))
    let warm = Int(Float(p.iterations) * p.warmup)
    let span = adaZeta - adaGamma
    let one = AdaVector(repeating: 1)
    for it in 0..<p.iterations {
      // W̃ = s·(floor + h(V)) (s·floor for a frozen weight).
      for i in 0..<vectors {
        let e = AdaMath.sigmoid(vv[i])
        sig[i] = e
        let h = AdaMath.clamp(e * span + adaGamma, 0, 1)
        wt[i] = scaleV[i] * (floorsV[i] + h * liveV[i])
      }
      let row = (it % batches) * batch
      forward(x: x, row: row, rows: batch, kTotal: kTotal, w: wtFloats, z: &z)
      // z becomes dL/dz = (2/B)(act(z + b) − y)·act'(z + b).
      let scale = 2 / Float(batch)
      for r in 0..<batch {
        for c in 0..<o {
          let pre = z[r * o + c] + bias[c]
          let a = activate(pre)
          let pass: Bool
          switch activation {
          case nil: pass = true
          case .relu: pass = pre > 0
          case .relu6: pass = pre > 0 && pre < 6
          }
          z[r * o + c] = pass ? scale * (a - y[(row + r) * o + c]) : 0
        }
      }
      backward(x: x, row: row, rows: batch, kTotal: kTotal, grad: z, dw: dwFloats)
      let regularize = it >= warm
      let progress = regularize ? Float(it - warm) / Float(max(1, p.iterations - warm)) : 0
      let beta = p.betaStart + (p.betaEnd - p.betaStart) * progress
      let t = Float(it + 1)
      let c1 = 1 - pow(b1, t)
      let c2 = 1 - pow(b2, t)
      for i in 0..<vectors {
        let e = sig[i]
        let raw = e * span + adaGamma
        // A frozen weight, or h clamped (no gradient through it): no step.
        let active = (liveV[i] .> 0) .& (raw .> 0) .& (raw .< 1)
        var gh = dw[i] * scaleV[i]
        if regularize {
          let r = 2 * raw - 1
          let negative = r .< 0
          let mag = AdaMath.select(r, -r, where: negative)
          let sign = AdaMath.select(one, -one, where: negative)
          // d/dh (1 − |2h − 1|^β) = −2β |2h − 1|^(β−1) sign(2h − 1)
          gh += p.regularization * (-2 * beta * AdaMath.pow(mag, beta - 1) * sign)
        }
        let grad = gh * span * e * (1 - e)
        let n1 = b1 * m1[i] + (1 - b1) * grad
        let n2 = b2 * m2[i] + (1 - b2) * grad * grad
        let step = vv[i] - p.learningRate * (n1 / c1) / ((n2 / c2).squareRoot() + eps)
        m1[i] = AdaMath.select(m1[i], n1, where: active)
        m2[i] = AdaMath.select(m2[i], n2, where: active)
        vv[i] = AdaMath.select(vv[i], step, where: active)
      }
    }
    for j in 0..<weightCount { v[j] = vv[j / lanes][j % lanes] }

    // The decision: up exactly when h(V) ≥ 1/2, i.e. V ≥ 0.
    var learned = [Float](repeating: 0, count: weightCount)
    for j in 0..<weightCount { learned[j] = frozen[j] ? floors[j] : floors[j] + (v[j] >= 0 ? 1 : 0) }
    for j in 0..<weightCount { learned[j] = min(max(learned[j], -Float(weightMax)), Float(weightMax)) }
    result.lossAdaRound = hardLoss(learned)
    guard result.lossAdaRound < result.lossNearest else {
      result.skipped = nil
      result.changedWeights = 0
      result.lossAdaRound = result.lossNearest
      return OptimizeOutcome(result: result, apply: nil)
    }
    // Re-fold the bias (§5): b_q' = b_q − z_in·Σ w_q, so b_q' changes by z_in·(Σ old − Σ new); a
    // channel whose new bias would break §14's headroom (or whose old bias was saturated or clamped)
    // keeps its nearest weights.
    var q = self.nearest
    var newBias = oldBias
    var reverted = 0
    for c in 0..<o {
      var oldSum: Int64 = 0
      var newSum: Int64 = 0
      var newAbs: Int64 = 0
      var oldAbs: Int64 = 0
      for k in 0..<kg {
        let j = c * kg + k
        oldSum += Int64(self.nearest[j])
        oldAbs += abs(Int64(self.nearest[j]))
        newSum += Int64(learned[j])
        newAbs += abs(Int64(learned[j]))
      }
      if oldSum == newSum && learned[(c * kg)..<((c + 1) * kg)].elementsEqual(nearest[(c * kg)..<((c + 1) * kg)]) {
        continue
      }
      let old = Int64(oldBias[c])
      let oldHeadroom = Int64(Int32.max) - 255 * oldAbs
      let folded = old + Int64(zeroPoint) * (oldSum - newSum)
      let headroom = Int64(Int32.max) - 255 * newAbs
      if old.magnitude >= oldHeadroom.magnitude || old == Int64(Int32.min) || folded.magnitude > max(headroom, 0) {
        reverted += 1
        continue
      }
      newBias[c] = Int32(folded)
      for k in 0..<kg { q[c * kg + k] = Int8(learned[c * kg + k]) }
    }
    var changed = 0
    for j in 0..<weightCount where q[j] != self.nearest[j] { changed += 1 }
    result.changedWeights = changed
    if reverted > 0 { result.lossAdaRound = hardLoss(q.map(Float.init)) }
    return OptimizeOutcome(result: result, apply: changed > 0 ? (q, newBias, reverted) : nil)
  }

  func activate(_ v: Float) -> Float {
    switch activation {
    case nil: v
    case .relu: max(v, 0)
    case .relu6: min(max(v, 0), 6)
    }
  }

  /// One input channel per output channel (a depthwise convolution): `forward` and `backward`
  /// run direct loops along the channels instead of one tiny GEMM per channel, and `optimize` lays
  /// each sampled patch out as [kh·kw, C] for them.
  var isDepthwise: Bool { groups > 1 && ocg == 1 && icg == 1 }

  /// z[r, c] = Σ_k x[row + r, group(c) k] · w[c, k], per group (no bias).
  func forward(x: [Float], row: Int, rows: Int, kTotal: Int, w: [Float], z: inout [Float]) {
    w.withUnsafeBufferPointer { w in forward(x: x, row: row, rows: rows, kTotal: kTotal, w: w.baseAddress!, z: &z) }
  }

  func forward(x: [Float], row: Int, rows: Int, kTotal: Int, w: UnsafePointer<Float>, z: inout [Float]) {
    let (o, kg, ocg) = (outC, self.kg, self.ocg)
    if isDepthwise {
      // z[r, c] = Σ_k x[row + r, k, c] · w[c, k], k in order.
      var wt = [Float](repeating: 0, count: o * kg)
      for c in 0..<o { for k in 0..<kg { wt[k * o + c] = w[c * kg + k] } }
      x.withUnsafeBufferPointer { x in
        wt.withUnsafeBufferPointer { wt in
          z.withUnsafeMutableBufferPointer { z in
            let (x, wt, z) = (x.baseAddress!, wt.baseAddress!, z.baseAddress!)
            for r in 0..<rows {
              let zr = z + r * o
              zr.update(repeating: 0, count: o)
              let xr = x + (row + r) * kTotal
              for k in 0..<kg {
                let (xk, wk) = (xr + k * o, wt + k * o)
                for c in 0..<o { zr[c] += xk[c] * wk[c] }
              }
            }
          }
        }
      }
      return
    }
    x.withUnsafeBufferPointer { x in
      z.withUnsafeMutableBufferPointer { z in
        for g in 0..<groups {
          cblas_sgemm(
            CblasRowMajor, CblasNoTrans, CblasTrans, Int32(rows), Int32(ocg), Int32(kg), 1,
            x.baseAddress! + row * kTotal + g * kg, Int32(kTotal), w + g * ocg * kg, Int32(kg), 0,
            z.baseAddress! + g * ocg, Int32(o))
        }
      }
    }
  }

  /// dw[c, k] = Σ_r grad[r, c] · x[row + r, group(c) k], per group.
  func backward(x: [Float], row: Int, rows: Int, kTotal: Int, grad: [Float], dw: inout [Float]) {
    dw.withUnsafeMutableBufferPointer { dw in
      backward(x: x, row: row, rows: rows, kTotal: kTotal, grad: grad, dw: dw.baseAddress!)
    }
  }

  func backward(x: [Float], row: Int, rows: Int, kTotal: Int, grad: [Float], dw: UnsafeMutablePointer<Float>) {
    let (o, kg, ocg) = (outC, self.kg, self.ocg)
    if isDepthwise {
      // dw[c, k] = Σ_r grad[r, c] · x[row + r, k, c], r in order.
      var dwt = [Float](repeating: 0, count: o * kg)
      x.withUnsafeBufferPointer { x in
        grad.withUnsafeBufferPointer { grad in
          dwt.withUnsafeMutableBufferPointer { dwt in
            let (x, grad, dwt) = (x.baseAddress!, grad.baseAddress!, dwt.baseAddress!)
            for r in 0..<rows {
              let (gr, xr) = (grad + r * o, x + (row + r) * kTotal)
              for k in 0..<kg {
                let (xk, dk) = (xr + k * o, dwt + k * o)
                for c in 0..<o { dk[c] += gr[c] * xk[c] }
              }
            }
          }
        }
      }
      for c in 0..<o { for k in 0..<kg { dw[c * kg + k] = dwt[k * o + c] } }
      return
    }
    x.withUnsafeBufferPointer { x in
      grad.withUnsafeBufferPointer { grad in
        for g in 0..<groups {
          cblas_sgemm(
            CblasRowMajor, CblasTrans, CblasNoTrans, Int32(ocg), Int32(kg), Int32(rows), 1,
            grad.baseAddress! + g * ocg, Int32(o), x.baseAddress! + row * kTotal + g * kg, Int32(kTotal), 0,
            dw + g * ocg * kg, Int32(kg))
        }
      }
    }
  }
}
