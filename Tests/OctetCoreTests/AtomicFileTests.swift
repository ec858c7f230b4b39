import Foundation
import Testing

@testable import OctetCore

@Suite struct AtomicFileTests {
  func temporaryDirectory() throws -> URL {
    let url = FileManager.default.temporaryDirectory.appendingPathComponent("octet-atomic-\(UUID().uuidString)")
    try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
    return url
  }

  @Test func replacesWholeAndAFailureLeavesTheOldFile() throws {
    let dir = try temporaryDirectory()
    defer { try? FileManager.default.removeItem(at: dir) }
    let url = dir.appendingPathComponent("out.bin")
    try AtomicFile.write([1, 2, 3], to: url)
    #expect(try Data(contentsOf: url) == Data([1, 2, 3]))
    struct Stop: Error {}
    #expect(throws: Stop.self) {
      try AtomicFile.write(to: url) { sink in
        try sink.write([9, 9])
        throw Stop()
      }
    }
    #expect(try Data(contentsOf: url) == Data([1, 2, 3]))
    #expect(try FileManager.default.contentsOfDirectory(atPath: dir.path) == ["out.bin"])
  }

  @Test func staleTemporariesOfDeadWritersAreRemovedAndLiveOnesKept() throws {
    let dir = try temporaryDirectory()
    defer { try? FileManager.default.removeItem(at: dir) }
    let url = dir.appendingPathComponent("model.safetensors")
    // A pid above any pid_max belongs to no process: a writer that was killed.
    let dead = dir.appendingPathComponent(".model.safetensors.2147483646.\(UUID().uuidString).tmp")
    let live = dir.appendingPathComponent(".model.safetensors.\(getpid()).\(UUID().uuidString).tmp")
    let other = dir.appendingPathComponent(".other.bin.2147483646.\(UUID().uuidString).tmp")
    for file in [dead, live, other] { try Data([0]).write(to: file) }
    #expect(AtomicFile.staleTemporaries(of: url) == [dead])
    try AtomicFile.write([7], to: url)
    let left = Set(try FileManager.default.contentsOfDirectory(atPath: dir.path))
    #expect(left == [url.lastPathComponent, live.lastPathComponent, other.lastPathComponent])
  }
}
