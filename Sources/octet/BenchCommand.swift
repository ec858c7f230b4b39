import ArgumentParser
import Foundation
import Octet

struct BenchCommand: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "bench",
    abstract: "Time the network alone on a preprocessed input (build with -c release).")

  @Argument(help: "An Octet model file (or a checkpoint, imported on the fly).")
  var model: String

  @Option(help: "Images per run.")
  var batch: Int = 1

  @Option(help: "Threads for the kernels.")
  var threads: Int = 1

  @Option(help: "Timed runs.")
  var iterations: Int = 50

  @Option(help: "Untimed runs first.")
  var warmup: Int = 5

  @Option(help: "Write the timings as JSON to this file.")
  var json: String?

  func validate() throws {
    guard batch >= 1, threads >= 1, iterations >= 1, warmup >= 0 else {
      throw ValidationError("--batch, --threads and --iterations must be at least 1, --warmup at least 0")
    }
    try validateOutputPath(json, option: "--json")
  }

  struct Report: Encodable {
    var model: String
    var architecture: String
    var runtime = "float32"
    var batch: Int
    var threads: Int
    var iterations: Int
    var median_ms: Double
    var p10_ms: Double
    var p90_ms: Double
    var min_ms: Double
    var images_per_s: Double
  }

  func run() throws {
    FloatKernels.setThreads(threads)
    let loaded = try ModelLoader.load(contentsOf: URL(fileURLWithPath: model))
    let executor = try FloatExecutor(model: loaded)
    let size = loaded.info.inputSize
    // A fixed pseudo-random input in the normalized range; the float path's speed does not depend on values.
    var generator = SeededGenerator(seed: 1)
    let scalars = generator.floats(batch * size * size * 3, in: -2...2)
    let input = Tensor(shape: [batch, size, size, 3], scalars: scalars)
    for _ in 0..<warmup { _ = executor.run(input) }
    var times: [Double] = []
    for _ in 0..<iterations {
      let t0 = DispatchTime.now().uptimeNanoseconds
      _ = executor.run(input)
      times.append(Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e6)
    }
    times.sort()
    func quantile(_ q: Double) -> Double { times[min(times.count - 1, Int(q * Double(times.count - 1) + 0.5))] }
    let median = quantile(0.5)
    let report = Report(
      model: model, architecture: loaded.info.architecture, batch: batch, threads: threads, iterations: iterations,
      median_ms: median, p10_ms: quantile(0.1), p90_ms: quantile(0.9), min_ms: times[0],
      images_per_s: Double(batch) / (median / 1000))
    print(
      String(
        format: "%@ float32 batch %d, %d thread(s): median %.2f ms (p10 %.2f, p90 %.2f), %.1f images/s",
        report.architecture, batch, threads, median, report.p10_ms, report.p90_ms, report.images_per_s))
    if let json { try writeJSON(report, to: json) }
  }
}
