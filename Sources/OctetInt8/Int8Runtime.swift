import OctetCore
import OctetModels

/// An integer runtime: the reference interpreter or the fast kernels of one backend. All give the
/// same bits.
public protocol Int8Runner: AnyObject, Sendable {
  var model: QuantizedModel { get }
  /// The backend that runs (`reference`, `scalar`, `avx2`, `avx512vnni` or `amx`).
  var backendName: String { get }
  /// Int32 logits `[N, classes]` for `input` `[N, S, S, 3]`; `observe` sees node outputs.
  func run(_ input: Tensor, observe: ((String, QuantizedTensor) -> Void)?) -> Int32Logits
}

extension Int8Runner {
  /// Dequantized logits, row after row.
  public func logits(for input: Tensor) -> [Float] {
    run(input, observe: nil).dequantized().scalars
  }
}

extension Int8ReferenceExecutor: Int8Runner {
  public var backendName: String { Int8Backend.reference.rawValue }
}

extension Int8FastExecutor: Int8Runner {
  public var backendName: String { backend.rawValue }
  public func run(_ input: Tensor, observe: ((String, QuantizedTensor) -> Void)?) -> Int32Logits {
    run(input, observe: observe, timings: nil)
  }
}

public enum Int8Runtime {
  /// The runtime for `backend` (`auto`: `OCTET_INT8_BACKEND`, else the fastest this CPU has).
  /// `observable` keeps every node's output materialized (no fused residual adds), for drift
  /// reports. Throws if the CPU cannot run the backend.
  public static func make(
    model: QuantizedModel, backend: Int8Backend = .auto, threads: Int = 1, observable: Bool = false
  ) throws -> any Int8Runner {
    let resolved = try backend.resolved()
    if resolved == .reference { return try Int8ReferenceExecutor(model: model) }
    return try Int8FastExecutor(model: model, backend: resolved, threads: threads, fuseResidualAdds: !observable)
  }
}
