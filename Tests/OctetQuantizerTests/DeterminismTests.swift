import Dispatch
import OctetCore
import OctetInt8
import OctetQuantizer
import Synchronization
import Testing

/// The integer runtime gives the same bits on every run, whatever runs beside it.
@Suite struct DeterminismTests {
  @Test func sameBitsOnEveryRunAndAcrossThreads() throws {
    let golden = try SmallNetGolden.load()
    let model = try Quantizer.quantize(model: golden.model, range: golden.range).model
    let executor = try Int8ReferenceExecutor(model: model)
    let first = executor.run(golden.inputTensor)
    #expect(executor.run(golden.inputTensor) == first)
    // Four threads share one executor; each result must equal the single-threaded one.
    let results = Mutex<[Int32Logits]>([])
    DispatchQueue.concurrentPerform(iterations: 4) { _ in
      let logits = executor.run(golden.inputTensor)
      results.withLock { $0.append(logits) }
    }
    let all = results.withLock { $0 }
    #expect(all.count == 4)
    #expect(all.allSatisfy { $0 == first })
    // A fresh plan of the same model agrees too.
    #expect(try Int8ReferenceExecutor(model: model).run(golden.inputTensor) == first)
  }
}
