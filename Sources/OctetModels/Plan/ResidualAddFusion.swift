/// Which residual add an executor fuses into the convolution before it, for the float plan
/// (`LayerPlan.floatResidualAddFusions`) and the int8 fast planner alike: an add fuses into the
/// later of its two producers when that producer is a convolution that can take a residual
/// (`canTakeResidual`, the executor's epilogue), the add is its only reader (reading it once), and
/// it is not the graph's output. The fused step runs where the convolution ran and produces the
/// add's tensor, under the add's name; the convolution's own output is never stored.
public enum ResidualAddFusion {
  /// For steps `0..<count` in execution order, `inputs(i)` the producer indices step i reads
  /// (negative: the graph input): add step index → the producer it fuses into.
  public static func pairs(
    count: Int, inputs: (Int) -> [Int], output: Int, isAdd: (Int) -> Bool, canTakeResidual: (Int) -> Bool
  ) -> [Int: Int] {
    var readers = [[Int]](repeating: [], count: count)
    for i in 0..<count { for p in inputs(i) where p >= 0 { readers[p].append(i) } }
    var fused: [Int: Int] = [:]
    for j in 0..<count where isAdd(j) {
      let producers = inputs(j)
      guard producers.count == 2, let later = producers.max(), later >= 0 else { continue }
      guard later != output, readers[later] == [j], canTakeResidual(later) else { continue }
      fused[j] = later
    }
    return fused
  }
}
