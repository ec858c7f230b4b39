import Foundation
import OctetInt8

/// What the reports say about the machine they ran on.
enum CPUInfo {
  /// The CPU's name from /proc/cpuinfo ("model name"), nil where there is none.
  static var modelName: String? {
    guard let text = try? String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8) else { return nil }
    for line in text.split(separator: "\n") where line.hasPrefix("model name") {
      if let colon = line.firstIndex(of: ":") {
        return line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces)
      }
    }
    return nil
  }

  /// The int8 instruction sets this CPU and OS offer, by backend name (`avx2`, `avx512vnni`, `amx`),
  /// as the run-time detection sees them.
  static var int8Features: [String] {
    [Int8Backend.avx2, .avx512vnni, .amx].filter(\.isSupported).map(\.rawValue)
  }
}
