import Foundation
import OctetCore
import Testing

@testable import OctetModels

/// The pickle machine on hand-written pickles: what it accepts, and that everything else is an
/// error rather than a crash, a hang or an allocation the input did not pay for.
@Suite struct CheckpointPickleTests {
  /// Runs `bytes` (PROTO 2 is prepended, STOP appended) and describes the result.
  static func run(_ body: [UInt8], proto: Bool = true, stop: Bool = true) throws -> String {
    let bytes = (proto ? [0x80, 0x02] : []) + body + (stop ? [0x2E] : [])
    return try bytes.withUnsafeBytes { raw in
      try PickleMachine(file: "test.pkl", part: "the test pickle").run(raw, from: 0) {
        describe($0)
      }.result
    }
  }

  static func describe(_ value: PickleValue, depth: Int = 0) -> String {
    guard depth < 8 else { return "..." }
    switch value {
    case .none: return "None"
    case .bool(let b): return b ? "True" : "False"
    case .int(let i): return String(i)
    case .bigInt(let b): return "bigint\(b)"
    case .float(let f): return String(f)
    case .string(let s): return "'\(s)'"
    case .bytes(let b): return "b\(b)"
    case .tuple(let t):
      return "(" + t.items.map { describe($0, depth: depth + 1) }.joined(separator: ", ") + ")"
    case .list(let l):
      return "[" + l.items.map { describe($0, depth: depth + 1) }.joined(separator: ", ") + "]"
    case .dict(let d):
      return "{"
        + d.entries.map { "\($0.key): \(describe($0.value, depth: depth + 1))" }.joined(
          separator: ", ") + "}"
    case .global(let g): return g.qualifiedName
    case .storage: return "storage"
    case .tensor: return "tensor"
    }
  }

  static func global(_ module: String, _ name: String) -> [UInt8] {
    [0x63] + Array("\(module)\n\(name)\n".utf8)
  }

  static func shortString(_ s: String) -> [UInt8] { [0x8C, UInt8(s.utf8.count)] + Array(s.utf8) }

  @Test(arguments: [
    ("os", "system"), ("posix", "system"), ("builtins", "eval"), ("__builtin__", "eval"),
    ("subprocess", "Popen"), ("torch.storage", "_load_from_bytes"), ("torch", "load"),
    ("torch._utils", "_rebuild_qtensor"), ("numpy.core.multiarray", "_reconstruct"),
  ])
  func forbiddenGlobals(module: String, name: String) throws {
    let payload = Self.shortString("echo pwned") + [0x85, 0x52]  // TUPLE1 REDUCE
    for body in [
      Self.global(module, name) + payload,
      Self.shortString(module) + Self.shortString(name) + [0x93] + payload,  // STACK_GLOBAL
    ] {
      #expect(
        throws: CheckpointError.forbiddenGlobal(file: "test.pkl", global: "\(module).\(name)")
      ) {
        try Self.run(body)
      }
    }
  }

  @Test func basicValues() throws {
    #expect(try Self.run([0x4B, 7]) == "7")
    #expect(try Self.run([0x4A, 0xFF, 0xFF, 0xFF, 0xFF]) == "-1")
    #expect(try Self.run([0x4D, 0xE9, 0x03]) == "1001")
    #expect(try Self.run([0x8A, 0x02, 0xFF, 0x00]) == "255")
    #expect(try Self.run([0x8A, 0x01, 0xFF]) == "-1")
    #expect(try Self.run([0x8A, 0x00]) == "0")
    #expect(
      try Self.run([0x8A, 0x09] + Array(repeating: 0xFF, count: 8) + [0x7F])
        == "bigint\([UInt8](repeating: 0xFF, count: 8) + [0x7F])")
    #expect(try Self.run([0x8B, 0x09, 0, 0, 0] + Array(repeating: 0xFF, count: 9)) == "-1")
    #expect(try Self.run([0x47, 0x3F, 0xF8, 0, 0, 0, 0, 0, 0]) == "1.5")
    #expect(try Self.run([0x88, 0x89, 0x4E, 0x87]) == "(True, False, None)")
    #expect(try Self.run([0x58, 3, 0, 0, 0] + Array("abc".utf8)) == "'abc'")
    #expect(try Self.run([0x8D, 3, 0, 0, 0, 0, 0, 0, 0] + Array("hé".utf8)) == "'hé'")
    #expect(try Self.run([0x43, 2, 1, 2]) == "b[1, 2]")
    // MARK ... LIST, DICT, APPENDS, SETITEMS, memo.
    #expect(try Self.run([0x28, 0x4B, 1, 0x4B, 2, 0x6C]) == "[1, 2]")
    #expect(
      try Self.run([0x5D, 0x71, 0, 0x28, 0x4B, 1, 0x65, 0x4B, 2, 0x61, 0x30, 0x68, 0]) == "[1, 2]")
    #expect(
      try Self.run(
        [0x7D, 0x28] + Self.shortString("a") + [0x4B, 1] + Self.shortString("a") + [0x4B, 2, 0x75])
        == "{string(\"a\"): 2}")
    #expect(
      try Self.run(Self.global("collections", "OrderedDict") + [0x29, 0x52, 0x94, 0x32, 0x30])
        == "{}")
    #expect(try Self.run([0x95, 3, 0, 0, 0, 0, 0, 0, 0, 0x4B, 9]) == "9")
  }

  @Test func unsupportedOpcodesNameByteAndOffset() throws {
    // INT, STRING, INST, OBJ, PERSID, GET, PUT, EXT1, NEWOBJ_EX, EMPTY_SET, BYTEARRAY8, NEXT_BUFFER.
    for op: UInt8 in [
      0x49, 0x53, 0x69, 0x6F, 0x50, 0x67, 0x70, 0x82, 0x92, 0x8F, 0x96, 0x97, 0x00, 0xFF,
    ] {
      let error = #expect(throws: CheckpointError.self) { try Self.run([0x4B, 1, op]) }
      #expect(
        error
          == .unsupportedOpcode(file: "test.pkl", opcode: op, offset: 4, part: "the test pickle"))
    }
    let error = CheckpointError.unsupportedOpcode(
      file: "x.pth", opcode: 0x69, offset: 4, part: "'a/data.pkl'")
    #expect(
      error.description.hasPrefix(
        "checkpoint 'x.pth' uses pickle opcode 0x69 ('i') at offset 4 of 'a/data.pkl'"))
  }

  @Test func malformedPicklesAreErrors() throws {
    let cases: [(String, [UInt8])] = [
      ("pop empty", [0x30]),
      ("STOP on empty", []),
      ("TUPLE without MARK", [0x74]),
      ("pop across MARK", [0x4B, 1, 0x28, 0x85]),
      ("SETITEM on int", [0x4B, 1, 0x4B, 2, 0x4B, 3, 0x73]),
      ("APPEND on tuple", [0x29, 0x4B, 2, 0x61]),
      ("odd SETITEMS", [0x7D, 0x28, 0x4B, 1, 0x75]),
      ("unhashable key", [0x7D, 0x5D, 0x4B, 1, 0x73]),
      ("memo read before write", [0x68, 3]),
      ("REDUCE a tuple", [0x29, 0x29, 0x52]),
      ("REDUCE with non-tuple args", Self.global("collections", "OrderedDict") + [0x4B, 1, 0x52]),
      ("call a storage class", Self.global("torch", "FloatStorage") + [0x29, 0x52]),
      ("NEWOBJ rebuild", Self.global("torch._utils", "_rebuild_tensor_v2") + [0x29, 0x81]),
      (
        "rebuild with wrong arity",
        Self.global("torch._utils", "_rebuild_tensor_v2") + [0x29, 0x52]
      ),
      ("BUILD on int", [0x4B, 1, 0x7D, 0x62]),
      ("persistent id unexpected", [0x4B, 1, 0x51]),
      ("STACK_GLOBAL ints", [0x4B, 1, 0x4B, 2, 0x93]),
      ("protocol 6", [0x80, 0x06]),
      ("invalid UTF-8", [0x8C, 1, 0xFF]),
      ("negative LONG4", [0x8B, 0xFF, 0xFF, 0xFF, 0xFF]),
    ]
    for (what, body) in cases {
      #expect(throws: CheckpointError.self, "\(what)") { try Self.run(body) }
    }
  }

  @Test func lengthsBeyondTheInputAreTruncationNotAllocation() throws {
    let cases: [[UInt8]] = [
      [0x58, 0xFF, 0xFF, 0xFF, 0xFF],  // BINUNICODE 4 GiB
      [0x8D] + Array(repeating: 0xFF, count: 8),  // BINUNICODE8 16 EiB
      [0x8E, 0, 0, 0, 0, 0, 0, 0, 0x80],  // BINBYTES8
      [0x42, 0, 0, 0, 0x7F],  // BINBYTES
      [0x8B, 0xFF, 0xFF, 0xFF, 0x7F],  // LONG4 2 GiB
      [0x95] + Array(repeating: 0xFF, count: 8),  // FRAME
      [0x63] + Array("os".utf8),  // GLOBAL without newline
      [0x4A, 1, 2],  // BININT cut
    ]
    for body in cases {
      let error = #expect(throws: CheckpointError.self) { try Self.run(body, stop: false) }
      guard case .truncated = error else {
        Issue.record("\(body.prefix(4)): \(String(describing: error))")
        continue
      }
    }
    #expect(throws: CheckpointError.self) { try Self.run([0x4B, 1], stop: false) }
  }

  @Test func boundsOnNestingKeysAndStack() throws {
    // Tuples 100 deep: refused before Swift's recursive release could matter.
    let deep = [UInt8](repeating: 0x29, count: 1) + [UInt8](repeating: 0x85, count: 100)
    #expect(throws: CheckpointError.self) { try Self.run(deep) }
    #expect(try Self.run([0x29] + [UInt8](repeating: 0x85, count: 10)).hasPrefix("(((((("))

    // A key that shares one tuple 2^60 times: t = (t, t) sixty times through DUP.
    var body: [UInt8] = [0x7D, 0x29]
    for _ in 0..<60 { body += [0x32, 0x86] }
    body += [0x4B, 1, 0x73]
    let start = Date()
    #expect(throws: CheckpointError.self) { try Self.run(body) }
    #expect(Date().timeIntervalSince(start) < 5)

    // More MARKs than allowed.
    let marks = [UInt8](repeating: 0x28, count: PickleMachine.maxMarkCount + 1)
    #expect(throws: CheckpointError.self) { try Self.run(marks) }
  }

  @Test func cyclesAreReleased() throws {
    // l = []; l.append(l); d = {}; d[0] = d  -- then STOP with both.
    weak var weakList: PickleList?
    let body: [UInt8] = [0x5D, 0x94, 0x68, 0, 0x61, 0x7D, 0x94, 0x4B, 0, 0x68, 1, 0x73, 0x86]
    let bytes = [0x80, 0x02] + body + [0x2E]
    try bytes.withUnsafeBytes { raw in
      _ = try PickleMachine(file: "t", part: "p").run(raw, from: 0) { value -> Void in
        if case .tuple(let t) = value, case .list(let l) = t.items[0] { weakList = l }
      }
    }
    #expect(weakList == nil)
  }

  /// Random byte edits of a real checkpoint: each must load or throw, never crash or hang.
  @Test func mutatedCheckpointsNeverCrash() throws {
    let seed: UInt64 = 0x0C7E7_5EED
    var rng = SplitMix64(seed: seed)
    let original = try CheckpointFixtures.bytes("tiny_legacy.pth")
    var loaded = 0
    for iteration in 0..<3000 {
      var bytes = original
      for _ in 0..<(1 + Int(rng.next() % 4)) {
        let at = Int(rng.next() % UInt64(bytes.count))
        switch rng.next() % 3 {
        case 0: bytes[at] = UInt8(truncatingIfNeeded: rng.next())
        case 1: bytes[at] ^= 1 << UInt8(rng.next() % 8)
        default: bytes.removeSubrange(at..<min(bytes.count, at + Int(rng.next() % 16)))
        }
        if bytes.isEmpty { break }
      }
      do {
        _ = try bytes.withUnsafeBytes { try PyTorchCheckpoint.loadLegacy($0, file: "mutant") }
        loaded += 1
      } catch is CheckpointError {
      } catch {
        Issue.record("seed \(seed) iteration \(iteration): unexpected error type \(error)")
      }
    }
    // Most mutations hit tensor bytes and still load.
    #expect(loaded > 0)
  }
}

typealias SplitMix64 = SeededGenerator
