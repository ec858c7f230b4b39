import OctetCore

/// The tensors an architecture expects: name and shape, in checkpoint layout.
public struct TensorSpec: Sendable, Equatable {
  public var name: String
  public var shape: [Int]
  public init(_ name: String, _ shape: [Int]) {
    self.name = name
    self.shape = shape
  }
}

extension TensorSpec {
  /// conv weight [out, in/groups, k, k]
  static func conv(_ name: String, out: Int, in: Int, kernel: Int) -> TensorSpec {
    TensorSpec(name + ".weight", [out, `in`, kernel, kernel])
  }
  /// weight, bias, running_mean, running_var of a BatchNorm over `channels`.
  static func batchNorm(_ prefix: String, channels: Int) -> [TensorSpec] {
    ["weight", "bias", "running_mean", "running_var"].map { TensorSpec("\(prefix).\($0)", [channels]) }
  }
}

/// Bookkeeping tensors that state_dicts carry but inference never reads.
func isIgnorableBookkeeping(_ name: String) -> Bool {
  name.hasSuffix(".num_batches_tracked")
}

/// Checks a checkpoint's tensors against an architecture's list and returns just those tensors, as
/// float32. Every missing, extra, mis-shaped or non-finite tensor is reported, by name, in one error.
func conform(_ weights: TensorDictionary, to specs: [TensorSpec]) throws(ModelError) -> TensorDictionary {
  var errors: [TensorError] = []
  var result = TensorDictionary()
  let expected = Set(specs.map(\.name))
  for spec in specs {
    guard let tensor = weights[spec.name] else {
      errors.append(.missing(name: spec.name))
      continue
    }
    guard tensor.shape == spec.shape else {
      errors.append(.shapeMismatch(name: spec.name, expected: spec.shape, actual: tensor.shape))
      continue
    }
    let values = tensor.floats()
    guard values.allSatisfy(\.isFinite) else {
      errors.append(.nonFinite(name: spec.name))
      continue
    }
    result[spec.name] = tensor.type == .float32 ? tensor : HostTensor(shape: spec.shape, float32: values)
  }
  for name in weights.names where !expected.contains(name) && !isIgnorableBookkeeping(name) {
    errors.append(.unexpected(name: name))
  }
  if !errors.isEmpty { throw .tensors(errors) }
  return result
}
