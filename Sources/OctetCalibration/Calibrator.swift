import Foundation
import OctetCore
import OctetFloat
import OctetImages
import OctetModels
import Synchronization

/// Where a calibration run is: images done (observed), skipped (unreadable) and in all.
public struct CalibrationProgress: Sendable {
  public var done: Int
  public var skipped: Int
  public var total: Int
}

/// An image that could not be read, and why. It was skipped.
public struct SkippedImage: Sendable {
  public var url: URL
  public var reason: String
}

public struct CalibrationResult: Sendable {
  public var table: RangeTable
  /// Images observed (the table's `images`).
  public var imagesUsed: Int
  public var skipped: [SkippedImage]
  /// Tensors that held one value over the whole set; their range is that value widened to 0.
  public var constantTensors: [String]
  public var seconds: Double
}

/// Runs the float model over calibration images and records a range for every quantized tensor.
///
/// The quantized tensors are the network input ("input") and every step output of the float executor
/// planned with `fuseResidualAdd: false` (docs/quantization.md: a tensor is named by the node that
/// produces it after fusion; the convolution output before a residual add is quantized too). The
/// last one, the classifier's logits, is int32 in the quantized model: its range is recorded for
/// information.
///
/// Images run in parallel, one per thread. Each thread has its own observers (memory: tensors ×
/// `binCount` × 8 bytes per thread, about 7 MB for ResNet50 with the default 8192 bins, whatever the
/// number of images); they are merged at the end, which is exact (`HistogramObserver.merge`), so the
/// table does not depend on the number of threads.
public final class Calibrator: Sendable {
  public let model: Model
  public let executor: FloatExecutor
  public let method: CalibrationMethod
  public let binCount: Int
  /// "input", then the executor's observable names, in graph order.
  public let tensorNames: [String]
  let indexOf: [String: Int]

  public init(model: Model, method: CalibrationMethod = .default, binCount: Int = HistogramObserver.defaultBinCount)
    throws
  {
    self.model = model
    self.method = method
    self.binCount = binCount
    executor = try FloatExecutor(model: model, fuseResidualAdd: false)
    tensorNames = [Graph.inputName] + executor.observableNames
    indexOf = Dictionary(tensorNames.enumerated().map { ($1, $0) }, uniquingKeysWith: { a, _ in a })
  }

  /// One thread's observers, one per tensor: histograms, or only min/max for `.minmax`.
  struct Observers {
    var histograms: [HistogramObserver]
    var minMax: [MinMaxObserver]

    init(count: Int, method: CalibrationMethod, binCount: Int) {
      histograms = method.needsHistogram ? (0..<count).map { _ in HistogramObserver(binCount: binCount) } : []
      minMax = method.needsHistogram ? [] : [MinMaxObserver](repeating: MinMaxObserver(), count: count)
    }

    init() {
      histograms = []
      minMax = []
    }

    mutating func observe(_ index: Int, _ tensor: Tensor) {
      tensor.scalars.withUnsafeBufferPointer { values in
        if histograms.isEmpty { minMax[index].observe(values) } else { histograms[index].observe(values) }
      }
    }

    mutating func merge(_ other: Observers) {
      for i in histograms.indices { histograms[i].merge(other.histograms[i]) }
      for i in minMax.indices { minMax[i].merge(other.minMax[i]) }
    }
  }

  /// Feeds one network input `[N, S, S, 3]` and every step output to `observers`.
  func observe(_ input: Tensor, into observers: inout Observers) {
    // Moved out, so that the arrays stay uniquely referenced and update in place (no copy per image).
    var local = observers
    observers = Observers()
    local.observe(0, input)
    _ = executor.run(input) { name, tensor in
      if let i = self.indexOf[name] { local.observe(i, tensor) }
    }
    observers = local
  }

  /// Calibrates on `images`, `threads` at a time.
  ///
  /// An image that cannot be decoded is skipped: `skipped` is told (with the reason) and the run goes
  /// on, unless more than half of the images fail, which throws `tooManyUnreadableImages`.
  /// `progress` is called after each image, one call at a time.
  public func calibrate(
    images: [URL], threads: Int = ProcessInfo.processInfo.activeProcessorCount,
    progress: (@Sendable (CalibrationProgress) -> Void)? = nil,
    skipped: (@Sendable (SkippedImage) -> Void)? = nil
  ) throws -> CalibrationResult {
    guard !images.isEmpty else { throw CalibrationError.noImages(folder: "(empty list)") }
    let start = Date()
    struct State {
      var next = 0
      var done = 0
      var skipped: [SkippedImage] = []
      var stop = false
      var merged: Observers?
      /// Per image index, the SHA-256 of its file once observed.
      var digests: [Int: String] = [:]
    }
    let total = images.count
    let state = Mutex(State())
    let preprocessing = model.info.preprocessing
    DispatchQueue.concurrentPerform(iterations: Swift.max(1, Swift.min(threads, total))) { _ in
      var observers = Observers(count: tensorNames.count, method: method, binCount: binCount)
      while true {
        let index: Int? = state.withLock { s in
          guard !s.stop, s.next < total else { return nil }
          defer { s.next += 1 }
          return s.next
        }
        guard let index else { break }
        let url = images[index]
        do {
          // The file's digest goes into the table, so that a later comparison can tell when it runs on
          // calibration images.
          let digest = SHA256.hex(Array(try Data(contentsOf: url)))
          let input = preprocessing.apply(to: try ImageDecoder.decode(contentsOf: url))
          observe(input, into: &observers)
          state.withLock { s in
            s.digests[index] = digest
            s.done += 1
            progress?(CalibrationProgress(done: s.done, skipped: s.skipped.count, total: total))
          }
        } catch {
          let skip = SkippedImage(url: url, reason: "\(error)")
          state.withLock { s in
            s.skipped.append(skip)
            if s.skipped.count * 2 > total { s.stop = true }
            skipped?(skip)
            progress?(CalibrationProgress(done: s.done, skipped: s.skipped.count, total: total))
          }
        }
      }
      state.withLock { s in
        if s.merged == nil { s.merged = observers } else { s.merged!.merge(observers) }
      }
    }
    let (done, skippedImages, stopped, merged, digests) = state.withLock {
      ($0.done, $0.skipped, $0.stop, $0.merged!, $0.digests)
    }
    if stopped || done == 0 {
      let sorted = skippedImages.sorted { $0.url.path < $1.url.path }
      throw CalibrationError.tooManyUnreadableImages(
        failed: skippedImages.count, total: total, first: sorted.first.map { "\($0.url.path): \($0.reason)" } ?? "?")
    }
    var (table, constant) = try makeTable(merged, images: done)
    table.calibrationImages = digests.keys.sorted().map {
      RangeTable.CalibrationImage(file: images[$0].lastPathComponent, sha256: digests[$0]!)
    }
    return CalibrationResult(
      table: table, imagesUsed: done, skipped: skippedImages.sorted { $0.url.path < $1.url.path },
      constantTensors: constant, seconds: Date().timeIntervalSince(start))
  }

  /// Calibrates on ready network inputs, each `[N, S, S, 3]` (already preprocessed), on this thread.
  public func calibrate(inputs: [Tensor]) throws -> RangeTable {
    var observers = Observers(count: tensorNames.count, method: method, binCount: binCount)
    for input in inputs { observe(input, into: &observers) }
    return try makeTable(observers, images: inputs.reduce(0) { $0 + $1.shape[0] }).table
  }

  /// Chooses every tensor's range (in parallel: the entropy search costs ~10 ms a tensor).
  func makeTable(_ observers: Observers, images: Int) throws -> (table: RangeTable, constant: [String]) {
    let count = tensorNames.count
    let entries = Mutex([RangeTable.Entry?](repeating: nil, count: count))
    let failure = Mutex<CalibrationError?>(nil)
    let logits = model.graph.output
    DispatchQueue.concurrentPerform(iterations: count) { i in
      let name = tensorNames[i]
      let observedMin: Float
      let observedMax: Float
      let chosen: (lo: Double, hi: Double)?
      if observers.histograms.isEmpty {
        let o = observers.minMax[i]
        if o.nonFiniteCount > 0 { failure.withLock { $0 = $0 ?? .nonFinite(tensor: name, count: o.nonFiniteCount) } }
        (observedMin, observedMax) = (o.min, o.max)
        chosen = o.range.map { (Double($0.lowerBound), Double($0.upperBound)) }
      } else {
        let o = observers.histograms[i]
        if o.nonFiniteCount > 0 { failure.withLock { $0 = $0 ?? .nonFinite(tensor: name, count: o.nonFiniteCount) } }
        (observedMin, observedMax) = (o.min, o.max)
        chosen = o.range(for: method)
      }
      guard let chosen else { return }
      // Widened to include 0, as the quantizer would (docs/quantization.md §1), so the
      // file says exactly what is used.
      let lo = Swift.min(Float(chosen.lo), 0)
      let hi = Swift.max(Float(chosen.hi), 0)
      let entry = RangeTable.Entry(
        name: name, min: lo, max: Swift.max(lo, hi), observedMin: observedMin, observedMax: observedMax,
        note: name == logits ? "classifier output: int32 logits in the quantized model; range for information" : nil)
      entries.withLock { $0[i] = entry }
    }
    if let error = failure.withLock({ $0 }) { throw error }
    let list = entries.withLock { $0 }
    if let missing = list.firstIndex(where: { $0 == nil }) {
      throw CalibrationError.nonFinite(tensor: tensorNames[missing], count: 0)
    }
    let tensors = list.map { $0! }
    let constant = tensors.filter { $0.observedMin == $0.observedMax }.map(\.name)
    let table = RangeTable(
      model: .init(architecture: model.info.architecture, source: model.info.source),
      method: method.description, images: images, tensors: tensors)
    try table.validate()
    return (table, constant)
  }
}
