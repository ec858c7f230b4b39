import OctetCore
import OctetFloat
import OctetImages
import OctetModels

/// The first `count` images of `TestData.valImages`'s labels.tsv, preprocessed for `model`.
public func validationInputs(for model: Model, count: Int) throws -> [Tensor] {
  let labels = try String(contentsOf: TestData.valImages.appendingPathComponent("labels.tsv"), encoding: .utf8)
  return try labels.split(separator: "\n").prefix(count).map {
    let file = String($0.split(separator: "\t")[0])
    return model.info.preprocessing.apply(
      to: try ImageDecoder.decode(contentsOf: TestData.valImages.appendingPathComponent(file)))
  }
}

/// The min/max range of every tensor the integer graph quantizes ("input" and each float node's
/// output, residual adds unfused as calibration runs them) over `inputs`: a quick calibration for tests.
public func minMaxRanges(of model: Model, over inputs: [Tensor]) throws -> [String: (lo: Float, hi: Float)] {
  var ranges: [String: (lo: Float, hi: Float)] = [:]
  func observe(_ name: String, _ values: [Float]) {
    var (lo, hi) = ranges[name] ?? (.infinity, -.infinity)
    for v in values {
      lo = min(lo, v)
      hi = max(hi, v)
    }
    ranges[name] = (lo, hi)
  }
  let calibration = try FloatExecutor(model: model, fuseResidualAdd: false)
  for x in inputs {
    observe("input", x.scalars)
    _ = calibration.run(x) { name, t in observe(name, t.scalars) }
  }
  return ranges
}
