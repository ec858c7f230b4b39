import Foundation

#if canImport(Glibc)
  import Glibc
#endif

/// Writes files whole or not at all: the bytes go to a temporary file in the same directory, which is
/// flushed and then renamed over the destination. A failure or a kill mid-write leaves the old file (or
/// none), never a truncated one.
///
/// The temporary file is `.<name>.<pid>.<uuid>.tmp`. A failure removes it; a kill cannot, so every write
/// first removes the temporaries of the same destination whose writing process is gone (`kill(pid, 0)`
/// fails with ESRCH). A temporary of a live process, such as a concurrent write, is left alone.
public enum AtomicFile {
  /// Hands `body` a sink for the file's bytes, in order; the file appears at `url` only when `body`
  /// returns and the bytes are on disk.
  public static func write(to url: URL, _ body: (inout Sink) throws -> Void) throws {
    let directory = url.deletingLastPathComponent()
    removeStaleTemporaries(of: url)
    let temporary = directory.appendingPathComponent(
      "\(temporaryPrefix(of: url))\(getpid()).\(UUID().uuidString).tmp")
    let fd = open(temporary.path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o644)
    guard fd >= 0 else {
      throw FileError(path: url.path, reason: "cannot create a file there: \(String(cString: strerror(errno)))")
    }
    var sink = Sink(fd: fd, path: url.path)
    var closed = false
    defer {
      if !closed { close(fd) }
    }
    do {
      try body(&sink)
      guard fsync(fd) == 0 else {
        throw FileError(path: url.path, reason: "fsync failed: \(String(cString: strerror(errno)))")
      }
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

  public static func write(_ bytes: some Collection<UInt8>, to url: URL) throws {
    try write(to: url) { sink in
      let array = Array(bytes)
      try array.withUnsafeBytes { try sink.write($0) }
    }
  }

  /// Where `write` puts the bytes before the rename.
  public struct Sink {
    let fd: Int32
    let path: String

    public mutating func write(_ bytes: UnsafeRawBufferPointer) throws {
      var offset = 0
      while offset < bytes.count {
        let n = Glibc.write(fd, bytes.baseAddress! + offset, bytes.count - offset)
        if n < 0 && errno == EINTR { continue }
        guard n > 0 else {
          throw FileError(path: path, reason: "write failed: \(String(cString: strerror(errno)))")
        }
        offset += n
      }
    }

    public mutating func write(_ bytes: [UInt8]) throws {
      try bytes.withUnsafeBytes { try write($0) }
    }
  }

  static func temporaryPrefix(of url: URL) -> String { ".\(url.lastPathComponent)." }

  /// The temporaries of `url` left by processes that no longer run (killed mid-write).
  public static func staleTemporaries(of url: URL) -> [URL] {
    let directory = url.deletingLastPathComponent()
    let prefix = temporaryPrefix(of: url)
    guard let names = try? FileManager.default.contentsOfDirectory(atPath: directory.path) else { return [] }
    return names.filter { name in
      guard name.hasPrefix(prefix), name.hasSuffix(".tmp") else { return false }
      // .<name>.<pid>.<uuid>.tmp; a UUID has no dots, so the pid is the field before it.
      let fields = name.dropFirst(prefix.count).dropLast(4).split(separator: ".")
      guard fields.count == 2, let pid = pid_t(fields[0]), pid > 0 else { return false }
      return kill(pid, 0) != 0 && errno == ESRCH
    }.map { directory.appendingPathComponent($0) }
  }

  static func removeStaleTemporaries(of url: URL) {
    for stale in staleTemporaries(of: url) { unlink(stale.path) }
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
