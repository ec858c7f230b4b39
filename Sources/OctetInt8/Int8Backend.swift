import CInt8Kernels
import Foundation

/// Which integer kernels run an int8 model. All of them give the same bits (the fast ones are tested
/// against `reference` on every layer shape); they differ only in speed and in what CPU they need.
public enum Int8Backend: String, CaseIterable, Sendable, Codable {
  /// The Swift scalar interpreter (`Int8ReferenceExecutor`): the oracle.
  case reference
  /// Portable C kernels on the packed layouts; any CPU.
  case scalar
  /// Three 6x16 GEMM kernels, one picked per layer at load time by a cost model (quads: two vpmaddubsw
  /// summed in int16, any weights via sparse fixups; pairs: vpmaddubsw, weights whose adjacent pairs
  /// cannot saturate; int16: vpmaddwd on widened operands, any weights); docs/quantization.md §2.
  case avx2
  /// vpdpbusd.
  case avx512vnni
  /// AMX-INT8 tiles.
  case amx
  /// `OCTET_INT8_BACKEND` from the environment if set, else the fastest the CPU supports.
  case auto

  /// The environment variable that `auto` obeys (so tests and scripts can force a path).
  public static let environmentVariable = "OCTET_INT8_BACKEND"

  var isa: octet_i8_isa? {
    switch self {
    case .scalar: OCTET_I8_SCALAR
    case .avx2: OCTET_I8_AVX2
    case .avx512vnni: OCTET_I8_AVX512VNNI
    case .amx: OCTET_I8_AMX
    case .reference, .auto: nil
    }
  }

  /// Whether this CPU (and OS) can run the backend; `reference`, `scalar` and `auto` always can.
  public var isSupported: Bool {
    guard let isa else { return true }
    return octet_i8_cpu_supports(isa) != 0
  }

  /// The fastest backend this CPU supports.
  public static var best: Int8Backend {
    [.amx, .avx512vnni, .avx2].first { $0.isSupported } ?? .scalar
  }

  /// Resolves `auto` (environment first, then `best`) and checks that the CPU supports the result.
  public func resolved(environment: [String: String] = ProcessInfo.processInfo.environment) throws(Int8BackendError)
    -> Int8Backend
  {
    var backend = self
    if backend == .auto {
      if let requested = environment[Self.environmentVariable], !requested.isEmpty {
        guard let b = Int8Backend(rawValue: requested), b != .auto else {
          throw .unknown(requested, source: Self.environmentVariable)
        }
        backend = b
      } else {
        backend = Self.best
      }
    }
    guard backend.isSupported else { throw .unsupported(backend) }
    return backend
  }
}

public enum Int8BackendError: Error, CustomStringConvertible, Equatable {
  case unknown(String, source: String)
  case unsupported(Int8Backend)

  public var description: String {
    switch self {
    case .unknown(let name, let source):
      "\(source): unknown int8 backend '\(name)'; choose one of "
        + Int8Backend.allCases.map(\.rawValue).joined(separator: ", ")
    case .unsupported(let backend):
      "this CPU cannot run the int8 backend '\(backend.rawValue)' (supported here: "
        + Int8Backend.allCases.filter(\.isSupported).map(\.rawValue).joined(separator: ", ") + ")"
    }
  }
}
