import Foundation
import OctetCore
import OctetModels
import OctetTestSupport
import Testing

#if canImport(Glibc)
  import Glibc
#endif

/// `octet quantize` SIGKILLed at many moments while it writes over an existing model file: the
/// destination is always the old file byte for byte or the complete new one, and the temporaries a
/// kill leaves are stale (their process is gone) and removed by the next write.
@Suite(.enabled(if: TestData.hasLite0AndImages, Comment(rawValue: TestData.needsLite0AndImages)))
struct KillDuringWriteTests {
  enum Outcome: String { case old, new }

  @Test func killedQuantizeLeavesTheOldFileOrTheNewOneNeverAPartOne() throws {
    let files = try Lite0Files.get()
    let dir = try Paths.temporaryDirectory()
    let destination = dir.appendingPathComponent("out.safetensors")
    // The old file: a valid model file whose bytes differ from the new one (quantize is deterministic,
    // so the new bytes are those of the shared int8 file).
    let old = try Data(contentsOf: files.float)
    let new = try Data(contentsOf: files.int8)
    #expect(old != new)
    let arguments = ["quantize", files.float.path, "--ranges", files.ranges.path, "-o", destination.path]

    // One run to the end, to time it.
    try old.write(to: destination)
    let t0 = Date()
    #expect(try OctetProcess.run(arguments).status == 0)
    let duration = Date().timeIntervalSince(t0)
    #expect(try Data(contentsOf: destination) == new)

    var generator = SeededGenerator(seed: 2026)
    var tally: [String: Int] = [:]
    let runs = 20
    for run in 0..<runs {
      try old.write(to: destination)
      let process = Process()
      process.executableURL = OctetProcess.binary
      process.arguments = arguments
      process.standardOutput = FileHandle.nullDevice
      process.standardError = FileHandle.nullDevice
      // Even runs: a random moment up to 1.5 times the timed run (the machine is shared, so a run may
      // take longer). Odd runs: when this process's temporary file appears, plus 0, 5, ... 45 ms,
      // which lands inside the write, in the fsync, or just after the rename.
      let watchTemporary = run % 2 == 1
      let delay = watchTemporary ? Double(run / 2) * 0.005 : Double(generator.next() % 1000) / 1000 * duration * 1.5
      try process.run()
      if watchTemporary {
        let deadline = Date().addingTimeInterval(duration * 3)
        let mine = ".\(process.processIdentifier)."
        while process.isRunning, Date() < deadline, !hasTemporary(in: dir, containing: mine) { usleep(200) }
      }
      usleep(UInt32(delay * 1e6))
      kill(process.processIdentifier, SIGKILL)
      process.waitUntilExit()

      let bytes = try Data(contentsOf: destination)
      let outcome: Outcome? = bytes == old ? .old : bytes == new ? .new : nil
      #expect(outcome != nil, "run \(run) (delay \(delay) s): destination is \(bytes.count) bytes, neither old nor new")
      if outcome == .new { _ = try QuantizedModelFile.read(contentsOf: destination) }
      let temporaries = try temporaryFiles(in: dir)
      // Whatever temporary is left belongs to the killed process, so the next write removes it.
      #expect(Set(AtomicFile.staleTemporaries(of: destination).map(\.lastPathComponent)) == Set(temporaries))
      // A temporary of this very process means it was killed between creating it and the rename.
      let midWrite = temporaries.contains { $0.contains(".\(process.processIdentifier).") }
      let key =
        "\(watchTemporary ? "at-write" : "random"): \(outcome?.rawValue ?? "BAD")\(midWrite ? " (killed mid-write)" : "")"
      tally[key, default: 0] += 1
    }
    print(
      "kill test (\(runs) runs, full run \(String(format: "%.2f", duration)) s): destination is",
      tally.sorted { $0.key < $1.key }.map { "\($0.key) \($0.value)" }.joined(separator: ", "))

    // The next complete write leaves the new file and no temporary at all.
    #expect(try OctetProcess.run(arguments).status == 0)
    #expect(try Data(contentsOf: destination) == new)
    #expect(try temporaryFiles(in: dir).isEmpty)
  }

  func temporaryFiles(in dir: URL) throws -> [String] {
    try FileManager.default.contentsOfDirectory(atPath: dir.path).filter { $0.hasSuffix(".tmp") }
  }

  func hasTemporary(in dir: URL, containing text: String) -> Bool {
    ((try? FileManager.default.contentsOfDirectory(atPath: dir.path)) ?? []).contains {
      $0.hasSuffix(".tmp") && $0.contains(text)
    }
  }
}
