import ArgumentParser
import Foundation
import Octet

struct BenchCommand: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "bench",
    abstract: "Time the network alone on a preprocessed input (build with -c release).",
    discussion: """
      Float models run on the float kernels; int8 models on --backend's integer kernels. With --layers \
      (int8), each step is also timed on its own (median over the timed runs) and reported with its GEMM \
      shape M x N x K and the multiply-adds per second it reached.
      """)

  @Argument(help: "An Octet model file, float or int8 (or a checkpoint, imported on the fly).")
  var model: String

  @Option(help: "Images per run.")
  var batch: Int = 1

  @Option(help: "Threads for the kernels.")
  var threads: Int = 1

  @Option(help: "Timed runs.")
  var iterations: Int = 50

  @Option(help: "Untimed runs first.")
  var warmup: Int = 5

  @OptionGroup var backendOption: BackendOption

  @Flag(help: "Int8: also time every layer (printed slowest first; all in the JSON).")
  var layers = false

  @Option(help: "Write the timings as JSON to this file.")
  var json: String?

  @Flag(
    help: ArgumentHelp(
      "Run on request, for scripts that interleave Octet with another runtime run by run.",
      discussion: """
        After the warm-up runs, prints one JSON line (model, runtime, backend, threads), then reads \
        standard input line by line: each line holds a count k (1...1000); Octet runs k times and prints \
        the k wall times in ms on one line, separated by spaces. Ends at end of input. --iterations, \
        --layers and --json do not apply.
        """))
  var paced = false

  func validate() throws {
    guard batch >= 1, threads >= 1, iterations >= 1, warmup >= 0 else {
      throw ValidationError("--batch, --threads and --iterations must be at least 1, --warmup at least 0")
    }
    try validateOutputPath(json, option: "--json")
    if paced && (layers || json != nil) {
      throw ValidationError("--paced prints its times on standard output; it takes neither --layers nor --json")
    }
  }

  struct LayerReport: Encodable {
    var name: String
    var kind: String
    var m: Int, n: Int, k: Int
    var median_ms: Double
    var gmacs_per_s: Double
    var share: Double
    var nodes: [String]
    var kernel: String
  }

  struct Report: Encodable {
    var model: String
    var architecture: String
    var runtime: String
    var backend: String
    var batch: Int
    var threads: Int
    var iterations: Int
    var median_ms: Double
    var p10_ms: Double
    var p90_ms: Double
    var min_ms: Double
    var images_per_s: Double
    var gmacs_per_image: Double?
    var layers: [LayerReport]?
    /// The CPU's name (/proc/cpuinfo "model name") and the int8 instruction sets it offers
    /// (`avx2`, `avx512vnni`, `amx`): which fast backends could run here.
    var cpu: String?
    var cpu_int8_features: [String]
    /// Per run, the time `run` spends outside the timed steps (workspace, logits), median.
    var outside_layers_ms: Double?
  }

  func run() throws {
    FloatKernels.setThreads(threads)
    let loaded = try ModelLoader.loadAny(contentsOf: URL(fileURLWithPath: model))
    let size = loaded.info.inputSize
    // A fixed pseudo-random input in the normalized range; the speed does not depend on values.
    var generator = SeededGenerator(seed: 1)
    let input = Tensor(
      shape: [batch, size, size, 3], scalars: generator.floats(batch * size * size * 3, in: -2...2))
    let runOnce: () -> Void
    var runtime = "float32"
    var backend = "float"
    var fast: Int8FastExecutor?
    switch loaded {
    case .float(let m):
      let executor = try FloatExecutor(model: m, winograd: true)
      runOnce = { _ = executor.run(input) }
      // The float kernels' path, and how many 3x3 convolutions run Winograd F(2x2, 3x3).
      backend = "float \(FloatKernels.path)"
      if FloatKernels.path == .avx2fma { backend += " (\(FloatKernels.gemmKernel) gemm)" }
      if executor.winogradConvolutions > 0 { backend += ", winograd 3x3 x\(executor.winogradConvolutions)" }
    case .int8(let m):
      runtime = "int8"
      let runner = try Int8Runtime.make(model: m, backend: backendOption.backend, threads: threads)
      backend = runner.backendName
      fast = runner as? Int8FastExecutor
      runOnce = { _ = runner.run(input, observe: nil) }
    }
    for _ in 0..<warmup { runOnce() }
    if paced {
      try servePaced(
        runOnce,
        header: [
          "model": model, "architecture": loaded.info.architecture, "runtime": runtime, "backend": backend,
          "threads": String(threads), "batch": String(batch), "cpu": CPUInfo.modelName ?? "unknown",
          "cpu_int8_features": CPUInfo.int8Features.joined(separator: ","),
        ])
      return
    }
    var times: [Double] = []
    for _ in 0..<iterations {
      let t0 = DispatchTime.now().uptimeNanoseconds
      runOnce()
      times.append(Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e6)
    }
    let median = quantile(times, 0.5)
    var report = Report(
      model: model, architecture: loaded.info.architecture, runtime: runtime, backend: backend, batch: batch,
      threads: threads, iterations: iterations, median_ms: median, p10_ms: quantile(times, 0.1),
      p90_ms: quantile(times, 0.9), min_ms: times.min()!, images_per_s: Double(batch) / (median / 1000),
      cpu: CPUInfo.modelName, cpu_int8_features: CPUInfo.int8Features)
    if let fast {
      report.gmacs_per_image = Double(fast.layers.map(\.macs).reduce(0, +)) / 1e9
      if layers {
        var outside = 0.0
        report.layers = layerTimes(fast, input: input, outsideLayers: &outside)
        report.outside_layers_ms = outside
      }
    }
    print(
      String(
        format: "%@ %@ (%@) batch %d, %d thread(s): median %.2f ms (p10 %.2f, p90 %.2f), %.1f images/s",
        report.architecture, runtime, backend, batch, threads, median, report.p10_ms, report.p90_ms,
        report.images_per_s))
    if let rows = report.layers {
      print(
        String(
          format: "  steps: %.2f ms in all (sum of medians), %.3f ms per run outside them",
          rows.map(\.median_ms).reduce(0, +), report.outside_layers_ms ?? 0))
      print("  slowest layers: median ms, share, M x N x K, GMAC/s")
      for l in rows.sorted(by: { $0.median_ms > $1.median_ms }).prefix(20) {
        print(
          String(
            format: "  %8.3f  %5.1f%%  %5d x %4d x %4d  %7.1f  %@ (%@%@)", l.median_ms, l.share * 100, l.m, l.n, l.k,
            l.gmacs_per_s, l.name, l.kind, l.kernel.isEmpty ? "" : ", " + l.kernel))
      }
    } else if layers && fast == nil {
      print("  (--layers times the int8 fast kernels only)")
    }
    if let json { try writeJSON(report, to: json) }
  }

  /// --paced: one timed run per requested count, until standard input ends.
  func servePaced(_ runOnce: () -> Void, header: [String: String]) throws {
    let data = try JSONSerialization.data(withJSONObject: header, options: [.sortedKeys])
    // FileHandle writes are unbuffered: the script reads each line as soon as it is written.
    FileHandle.standardOutput.write(data + Data("\n".utf8))
    var lineNumber = 0
    while let line = readLine() {
      lineNumber += 1
      guard let count = Int(line.trimmingCharacters(in: .whitespaces)), (1...1000).contains(count) else {
        throw FileError(
          path: "<standard input>", reason: "line \(lineNumber) is \"\(line)\", not a run count 1...1000 (--paced)")
      }
      var times: [String] = []
      for _ in 0..<count {
        let t0 = DispatchTime.now().uptimeNanoseconds
        runOnce()
        times.append(String(format: "%.4f", Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e6))
      }
      FileHandle.standardOutput.write(Data((times.joined(separator: " ") + "\n").utf8))
    }
  }

  /// Per-step medians over `iterations` runs, each run timing every step.
  func layerTimes(_ executor: Int8FastExecutor, input: Tensor, outsideLayers: inout Double) -> [LayerReport] {
    let count = executor.layers.count
    var samples = [[Double]](repeating: [], count: count)
    var step = [Double](repeating: 0, count: count)
    var unaccounted: [Double] = []
    for _ in 0..<iterations {
      let t0 = DispatchTime.now().uptimeNanoseconds
      step.withUnsafeMutableBufferPointer { _ = executor.run(input, observe: nil, timings: $0.baseAddress!) }
      let whole = Double(DispatchTime.now().uptimeNanoseconds - t0) / 1e9
      unaccounted.append(whole - step.reduce(0, +))
      for i in 0..<count { samples[i].append(step[i]) }
    }
    let medians = samples.map { quantile($0, 0.5) * 1000 }
    let total = medians.reduce(0, +)
    outsideLayers = quantile(unaccounted, 0.5) * 1000
    return zip(executor.layers, medians).map { layer, ms in
      LayerReport(
        name: layer.name, kind: layer.kind, m: layer.m * batch, n: layer.n, k: layer.k, median_ms: ms,
        gmacs_per_s: ms > 0 ? Double(layer.macs * batch) / (ms / 1000) / 1e9 : 0, share: total > 0 ? ms / total : 0,
        nodes: layer.nodes, kernel: layer.kernel)
    }
  }
}

/// The q-quantile of `values` (nearest rank).
private func quantile(_ values: [Double], _ q: Double) -> Double {
  let sorted = values.sorted()
  return sorted[min(sorted.count - 1, Int(q * Double(sorted.count - 1) + 0.5))]
}
