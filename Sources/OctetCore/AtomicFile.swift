import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// Writes files whole or not at all: the bytes go to a temporary file in the same directory, which is
/// flushed and then renamed over the destination. A failure or a kill mid-write leaves the old file (or
/// none) and no partial output.
public enum AtomicFile {
  public static func write(_ bytes: some Collection<UInt8>, to url: URL) throws {
    let directory = url.deletingLastPathComponent()
    let temporary = directory.appendingPathComponent(".\(url.lastPathComponent).\(UUID().uuidString).tmp")
    let fd = open(temporary.path, O_WRONLY | O_CREAT | O_EXCL, 0o644)
    guard fd >= 0 else {
      throw FileError(path: url.path, reason: "cannot create a file there: \(String(cString: strerror(errno)))")
    }
    var closed = false
    defer {
      if !closed { close(fd) }
    }
    do {
      let array = Array(bytes)
      var offset = 0
      while offset < array.count {
        let n = array.withUnsafeBytes { Glibc.write(fd, $0.baseAddress! + offset, array.count - offset) }
        guard n > 0 else {
          throw FileError(path: url.path, reason: "write failed: \(String(cString: strerror(errno)))")
        }
        offset += n
      }
      guard fsync(fd) == 0 else { throw FileError(path: url.path, reason: "fsync failed: \(String(cString: strerror(errno)))") }
      close(fd)
      closed = true
      guard rename(temporary.path, url.path) == 0 else {
        throw FileError(path: url.path, reason: "cannot replace it: \(String(cString: strerror(errno)))")
      }
    } catch {
      unlink(temporary.path)
      throw error
    }
  }
}

/// A file could not be read or written.
public struct FileError: Error, CustomStringConvertible, Equatable {
  public var path: String
  public var reason: String
  public init(path: String, reason: String) {
    self.path = path
    self.reason = reason
  }
  public var description: String { "'\(path)': \(reason)" }
}
