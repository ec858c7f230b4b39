import OctetCore
import Testing

/// The persistent worker pool (OctetCore's WorkerPool over pool.c) runs every task of every job
/// exactly once, also when jobs follow each other with no pause and a worker is still leaving the
/// previous one.
@Suite struct WorkerPoolTests {
  @Test func everyTaskRunsExactlyOnce() {
    let pool = WorkerPool(threads: 3)
    let slots = UnsafeMutablePointer<Int>.allocate(capacity: 8)
    defer { slots.deallocate() }
    for job in 0..<50_000 {
      let tasks = 2 + job % 7
      slots.initialize(repeating: 0, count: 8)
      let work = job % 5  // work per task, to vary who finishes first
      pool.run(tasks) { task in
        var x = 0
        for i in 0..<(work * 50) { x &+= i }
        slots[task] += 1 + (x & 0)
      }
      for t in 0..<8 where slots[t] != (t < tasks ? 1 : 0) {
        Issue.record("job \(job): task \(t) of \(tasks) ran \(slots[t]) times")
        return
      }
    }
  }

  @Test func oneThreadRunsTheTasksInOrderOnTheCaller() {
    let pool = WorkerPool(threads: 1)
    var order: [Int] = []
    pool.run(5) { order.append($0) }
    #expect(order == [0, 1, 2, 3, 4])
  }
}
