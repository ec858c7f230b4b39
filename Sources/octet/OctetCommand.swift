import ArgumentParser
import Foundation
import Octet

@main
struct OctetCommand: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "octet",
    abstract: "Int8 post-training quantization for ImageNet CNNs: import, classify, evaluate, benchmark.",
    subcommands: [
      ImportCommand.self, ClassifyCommand.self, EvalCommand.self, BenchCommand.self, CalibrateCommand.self,
      QuantizeCommand.self, CompareCommand.self, ExportCommand.self,
    ]
  )
}

/// Encodes a report as pretty, key-sorted JSON and writes it atomically.
func writeJSON(_ value: some Encodable, to path: String) throws {
  let encoder = JSONEncoder()
  encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
  try AtomicFile.write(Array(try encoder.encode(value)) + [UInt8(ascii: "\n")], to: URL(fileURLWithPath: path))
}

/// Checks that a `--json` or `-o` destination's directory exists, so a long run does not fail at the end.
func validateOutputPath(_ path: String?, option: String) throws {
  guard let path else { return }
  let directory = URL(fileURLWithPath: path).deletingLastPathComponent().path
  var isDirectory: ObjCBool = false
  guard FileManager.default.fileExists(atPath: directory, isDirectory: &isDirectory), isDirectory.boolValue else {
    throw ValidationError("\(option) '\(path)': directory '\(directory)' does not exist")
  }
}

/// The bytes of a small file named on the command line (a range table, a recipe); errors name `path`
/// as the user wrote it.
func readSmallFile(_ path: String) throws -> Data {
  do { return try Data(contentsOf: URL(fileURLWithPath: path), options: .alwaysMapped) } catch {
    throw FileError(path: path, reason: "cannot be read: \(error.localizedDescription)")
  }
}

extension Architecture: ExpressibleByArgument {}

extension Int8Backend: ExpressibleByArgument {}

/// `--backend`, shared by the commands that run int8 models.
struct BackendOption: ParsableArguments {
  @Option(
    help: ArgumentHelp(
      "Integer kernels for int8 models: \(Int8Backend.allCases.map(\.rawValue).joined(separator: "|")). auto: $\(Int8Backend.environmentVariable) if set, else the fastest this CPU supports. All give the same bits."
    ))
  var backend: Int8Backend = .auto
}
