/// A pickle virtual machine that is an allow-list: it runs the opcodes a PyTorch `state_dict` save
/// emits (protocols 2 to 5) and nothing else, resolves only the globals in `PickleGlobal`, and
/// interprets their calls instead of executing anything.
///
/// Malformed or hostile input is an error, never a crash, hang or unbounded allocation: every
/// length is checked against the bytes that remain, and the stack, marks, memo and tuple nesting
/// are bounded. Each opcode consumes at least one byte and does work proportional to what it
/// consumes or pops, so running time is linear in the pickle's size.
///
/// Opcode reference: CPython's Lib/pickletools.py.
final class PickleMachine {
  static let maxStackCount = 1 << 20
  static let maxMarkCount = 1 << 16
  /// torch.save memoizes about ten objects per tensor, so this allows some 100 000 tensors; at
  /// 1 << 24 a 16 MB run of MEMOIZE opcodes could make the memo take gigabytes.
  static let maxMemoCount = 1 << 20
  /// Tuple nesting; a state_dict pickle nests 3 deep.
  static let maxDepth = 64
  /// Nodes in one dict key (see `PickleKey`).
  static let maxKeyNodes = 4096
  static let maxGlobalNameLength = 512

  typealias PersistentLoad = (PickleValue) throws -> PickleValue

  private let file: String
  /// The pickle within the file, for messages: "'archive/data.pkl'" or "the file".
  private let part: String
  private let persistentLoad: PersistentLoad

  private var stack: [PickleValue] = []
  private var marks: [Int] = []
  private var memo: [Int: PickleValue] = [:]
  /// Every list and dict this machine made, so `run` can empty them when it is done. A hostile
  /// pickle can put a list inside itself; emptying breaks such cycles and keeps release flat.
  private var lists: [PickleList] = []
  private var dicts: [PickleDict] = []

  init(
    file: String, part: String,
    persistentLoad: @escaping PersistentLoad = { _ in
      throw PersistentIDUnexpected()
    }
  ) {
    self.file = file
    self.part = part
    self.persistentLoad = persistentLoad
  }

  struct PersistentIDUnexpected: Error {}

  /// Runs the pickle that starts at `start` up to its STOP and passes the result to `extract`,
  /// which must copy out what it needs: afterwards every list and dict the pickle built is emptied.
  /// Returns `extract`'s result and the offset just past STOP.
  func run<R>(
    _ bytes: UnsafeRawBufferPointer, from start: Int, extract: (PickleValue) throws -> R
  ) throws -> (result: R, end: Int) {
    defer { releaseContainers() }
    let (value, end) = try execute(bytes, from: start)
    return (try extract(value), end)
  }

  private func releaseContainers() {
    stack.removeAll()
    memo.removeAll()
    for list in lists { list.items.removeAll() }
    for dict in dicts { dict.removeAll() }
    lists.removeAll()
    dicts.removeAll()
  }

  // MARK: - Errors

  private func malformed(_ reason: String, at offset: Int) -> CheckpointError {
    .malformed(file: file, reason: "\(reason) (pickle opcode at offset \(offset) of \(part))")
  }

  private func truncated(at offset: Int, declared: UInt64, remaining: Int, in opcode: String)
    -> CheckpointError
  {
    .truncated(
      file: file,
      reason: "the pickle in \(part) ends inside \(opcode) at offset \(offset) "
        + "(it needs \(declared) bytes, \(remaining) remain)")
  }

  // MARK: - The machine

  private func execute(_ bytes: UnsafeRawBufferPointer, from start: Int) throws -> (
    PickleValue, Int
  ) {
    var pos = start
    let end = bytes.count
    var opOffset = start
    var opName = ""

    // Readers: each checks the remaining length before it touches memory.
    func take(_ n: Int) throws -> Int {
      guard n >= 0, n <= end - pos else {
        throw truncated(at: opOffset, declared: UInt64(max(n, 0)), remaining: end - pos, in: opName)
      }
      let at = pos
      pos += n
      return at
    }
    func u8() throws -> Int { Int(bytes[try take(1)]) }
    func u16() throws -> Int {
      Int(UInt16(littleEndian: bytes.loadUnaligned(fromByteOffset: try take(2), as: UInt16.self)))
    }
    func u32() throws -> Int {
      Int(UInt32(littleEndian: bytes.loadUnaligned(fromByteOffset: try take(4), as: UInt32.self)))
    }
    func i32() throws -> Int {
      Int(Int32(littleEndian: bytes.loadUnaligned(fromByteOffset: try take(4), as: Int32.self)))
    }
    func u64Length() throws -> Int {
      let v = UInt64(
        littleEndian: bytes.loadUnaligned(fromByteOffset: try take(8), as: UInt64.self))
      guard v <= UInt64(end - pos) else {
        throw truncated(at: opOffset, declared: v, remaining: end - pos, in: opName)
      }
      return Int(v)
    }
    func raw(_ n: Int) throws -> UnsafeRawBufferPointer {
      let at = try take(n)
      return UnsafeRawBufferPointer(rebasing: bytes[at..<at + n])
    }
    func string(_ n: Int) throws -> String {
      let slice = try raw(n)
      guard let s = String(validating: slice, as: UTF8.self) else {
        throw malformed("\(opName) holds invalid UTF-8", at: opOffset)
      }
      return s
    }
    func line() throws -> String {
      let limit = min(end, pos + Self.maxGlobalNameLength)
      var i = pos
      while i < limit && bytes[i] != 0x0A { i += 1 }
      guard i < limit else {
        if limit == end {
          throw truncated(
            at: opOffset, declared: UInt64(i - pos + 1), remaining: end - pos, in: opName)
        }
        throw malformed("GLOBAL name longer than \(Self.maxGlobalNameLength) bytes", at: opOffset)
      }
      let s = try string(i - pos)
      pos += 1  // the newline
      return s
    }

    // Stack helpers: pops never cross the innermost MARK.
    func push(_ value: PickleValue) throws {
      guard stack.count < Self.maxStackCount else {
        throw malformed("the stack exceeds \(Self.maxStackCount) entries", at: opOffset)
      }
      stack.append(value)
    }
    func pop() throws -> PickleValue {
      guard stack.count > (marks.last ?? 0) else {
        throw malformed("\(opName) pops an empty stack", at: opOffset)
      }
      return stack.removeLast()
    }
    func top() throws -> PickleValue {
      guard stack.count > (marks.last ?? 0) else {
        throw malformed("\(opName) reads an empty stack", at: opOffset)
      }
      return stack[stack.count - 1]
    }
    func popToMark() throws -> [PickleValue] {
      guard let mark = marks.popLast() else {
        throw malformed("\(opName) without a MARK", at: opOffset)
      }
      let items = Array(stack[mark...])
      stack.removeSubrange(mark...)
      return items
    }
    func tuple(_ items: [PickleValue]) throws -> PickleValue {
      let t = PickleTuple(items)
      guard t.depth <= Self.maxDepth else {
        throw malformed("tuples nest deeper than \(Self.maxDepth)", at: opOffset)
      }
      return .tuple(t)
    }
    func newList() -> PickleList {
      let list = PickleList()
      lists.append(list)
      return list
    }
    func newDict() -> PickleDict {
      let dict = PickleDict()
      dicts.append(dict)
      return dict
    }
    func key(_ value: PickleValue) throws -> PickleKey {
      var budget = Self.maxKeyNodes
      guard let key = PickleKey(value, budget: &budget) else {
        throw malformed("a dict key is unhashable or too large (\(value.kind))", at: opOffset)
      }
      return key
    }
    func setItems(_ items: [PickleValue], into dict: PickleDict) throws {
      guard items.count % 2 == 0 else {
        throw malformed("\(opName) has an odd number of items", at: opOffset)
      }
      var i = 0
      while i < items.count {
        dict.set(try key(items[i]), items[i + 1])
        i += 2
      }
    }
    func memoize(_ index: Int) throws {
      let value = try top()
      if memo[index] == nil && memo.count >= Self.maxMemoCount {
        throw malformed("the memo exceeds \(Self.maxMemoCount) entries", at: opOffset)
      }
      memo[index] = value
    }
    func recall(_ index: Int) throws {
      guard let value = memo[index] else {
        throw malformed("memo entry \(index) is read before it is written", at: opOffset)
      }
      try push(value)
    }
    func resolve(module: String, name: String) throws -> PickleValue {
      guard let global = PickleGlobal(module: module, name: name) else {
        throw CheckpointError.forbiddenGlobal(file: file, global: "\(module).\(name)")
      }
      return .global(global)
    }
    func long(_ n: Int) throws -> PickleValue {
      let b = try raw(n)
      return .integer(littleEndianTwosComplement: b)
    }

    while true {
      opOffset = pos
      guard pos < end else {
        throw CheckpointError.truncated(
          file: file, reason: "the pickle in \(part) ends at offset \(pos) before its STOP opcode")
      }
      let op = bytes[pos]
      pos += 1
      opName = Self.opcodeNames[op] ?? "opcode"

      switch op {
      case 0x80:  // PROTO
        let version = try u8()
        guard version <= 5 else {
          throw malformed("pickle protocol \(version) is newer than 5", at: opOffset)
        }
      case 0x95:  // FRAME: only a length prefix; the opcodes inside are read as usual.
        _ = try u64Length()
      case 0x2E:  // STOP
        return (try pop(), pos)
      case 0x28:  // MARK
        guard marks.count < Self.maxMarkCount else {
          throw malformed("more than \(Self.maxMarkCount) open MARKs", at: opOffset)
        }
        marks.append(stack.count)
      case 0x30:  // POP; like CPython, popping an empty frame drops its MARK
        if stack.count > (marks.last ?? 0) {
          stack.removeLast()
        } else if marks.popLast() == nil {
          throw malformed("POP on an empty stack", at: opOffset)
        }
      case 0x31:  // POP_MARK
        _ = try popToMark()
      case 0x32:  // DUP
        try push(try top())

      case 0x7D: try push(.dict(newDict()))  // EMPTY_DICT
      case 0x5D: try push(.list(newList()))  // EMPTY_LIST
      case 0x29: try push(.tuple(PickleTuple([])))  // EMPTY_TUPLE
      case 0x74: try push(try tuple(try popToMark()))  // TUPLE
      case 0x85:  // TUPLE1
        let a = try pop()
        try push(try tuple([a]))
      case 0x86:  // TUPLE2
        let b = try pop()
        let a = try pop()
        try push(try tuple([a, b]))
      case 0x87:  // TUPLE3
        let c = try pop()
        let b = try pop()
        let a = try pop()
        try push(try tuple([a, b, c]))
      case 0x6C:  // LIST
        let items = try popToMark()
        let list = newList()
        list.items = items
        try push(.list(list))
      case 0x64:  // DICT
        let items = try popToMark()
        let dict = newDict()
        try setItems(items, into: dict)
        try push(.dict(dict))
      case 0x73:  // SETITEM
        let value = try pop()
        let k = try pop()
        guard case .dict(let dict) = try top() else {
          throw malformed("SETITEM on a \(try top().kind)", at: opOffset)
        }
        dict.set(try key(k), value)
      case 0x75:  // SETITEMS
        let items = try popToMark()
        guard case .dict(let dict) = try top() else {
          throw malformed("SETITEMS on a \(try top().kind)", at: opOffset)
        }
        try setItems(items, into: dict)
      case 0x61:  // APPEND
        let value = try pop()
        guard case .list(let list) = try top() else {
          throw malformed("APPEND on a \(try top().kind)", at: opOffset)
        }
        list.items.append(value)
      case 0x65:  // APPENDS
        let items = try popToMark()
        guard case .list(let list) = try top() else {
          throw malformed("APPENDS on a \(try top().kind)", at: opOffset)
        }
        list.items.append(contentsOf: items)

      case 0x4A: try push(.int(try i32()))  // BININT
      case 0x4B: try push(.int(try u8()))  // BININT1
      case 0x4D: try push(.int(try u16()))  // BININT2
      case 0x8A: try push(try long(try u8()))  // LONG1
      case 0x8B:  // LONG4
        let n = try i32()
        guard n >= 0 else { throw malformed("LONG4 with a negative length", at: opOffset) }
        try push(try long(n))
      case 0x4E: try push(.none)  // NONE
      case 0x88: try push(.bool(true))  // NEWTRUE
      case 0x89: try push(.bool(false))  // NEWFALSE
      case 0x47:  // BINFLOAT, big-endian
        let bits = UInt64(
          bigEndian: bytes.loadUnaligned(fromByteOffset: try take(8), as: UInt64.self))
        try push(.float(Double(bitPattern: bits)))

      case 0x58: try push(.string(try string(try u32())))  // BINUNICODE
      case 0x8C: try push(.string(try string(try u8())))  // SHORT_BINUNICODE
      case 0x8D: try push(.string(try string(try u64Length())))  // BINUNICODE8
      case 0x42: try push(.bytes(Array(try raw(try u32()))))  // BINBYTES
      case 0x43: try push(.bytes(Array(try raw(try u8()))))  // SHORT_BINBYTES
      case 0x8E: try push(.bytes(Array(try raw(try u64Length()))))  // BINBYTES8

      case 0x71: try memoize(try u8())  // BINPUT
      case 0x72: try memoize(try u32())  // LONG_BINPUT
      case 0x94: try memoize(memo.count)  // MEMOIZE
      case 0x68: try recall(try u8())  // BINGET
      case 0x6A: try recall(try u32())  // LONG_BINGET

      case 0x63:  // GLOBAL "module\nname\n"
        let module = try line()
        let name = try line()
        try push(try resolve(module: module, name: name))
      case 0x93:  // STACK_GLOBAL
        let name = try pop()
        let module = try pop()
        guard case .string(let m) = module, case .string(let n) = name else {
          throw malformed(
            "STACK_GLOBAL expects two strings, got \(module.kind) and \(name.kind)", at: opOffset)
        }
        try push(try resolve(module: m, name: n))

      case 0x52, 0x81:  // REDUCE, NEWOBJ: callable(*args), interpreted
        let args = try pop()
        let callable = try pop()
        guard case .global(let global) = callable else {
          throw malformed(
            "\(opName) calls a \(callable.kind), not an allow-listed global", at: opOffset)
        }
        guard case .tuple(let argTuple) = args else {
          throw malformed("\(opName) arguments are a \(args.kind), not a tuple", at: opOffset)
        }
        do {
          let value =
            op == 0x52
            ? try global.call(argTuple.items, newDict: newDict)
            : try global.new(argTuple.items, newDict: newDict)
          try push(value)
        } catch let error as PickleGlobal.CallError {
          throw malformed(error.reason, at: opOffset)
        }
      case 0x62:  // BUILD: set state. Only dict attributes (OrderedDict._metadata) and
        // tensors appear; both carry nothing Octet needs, so the state is dropped.
        let state = try pop()
        switch try top() {
        case .dict, .tensor: break
        case let other:
          throw malformed("BUILD sets \(state.kind) state on a \(other.kind)", at: opOffset)
        }

      case 0x51:  // BINPERSID
        let id = try pop()
        do {
          try push(try persistentLoad(id))
        } catch is PersistentIDUnexpected {
          throw malformed("a persistent id where none is expected", at: opOffset)
        }

      default:
        throw CheckpointError.unsupportedOpcode(
          file: file, opcode: op, offset: opOffset, part: part)
      }
    }
  }

  /// Names of the supported opcodes, for messages.
  private static let opcodeNames: [UInt8: String] = [
    0x80: "PROTO", 0x95: "FRAME", 0x2E: "STOP", 0x28: "MARK", 0x30: "POP", 0x31: "POP_MARK",
    0x32: "DUP", 0x7D: "EMPTY_DICT", 0x5D: "EMPTY_LIST", 0x29: "EMPTY_TUPLE", 0x74: "TUPLE",
    0x85: "TUPLE1", 0x86: "TUPLE2", 0x87: "TUPLE3", 0x6C: "LIST", 0x64: "DICT", 0x73: "SETITEM",
    0x75: "SETITEMS", 0x61: "APPEND", 0x65: "APPENDS", 0x4A: "BININT", 0x4B: "BININT1",
    0x4D: "BININT2", 0x8A: "LONG1", 0x8B: "LONG4", 0x4E: "NONE", 0x88: "NEWTRUE", 0x89: "NEWFALSE",
    0x47: "BINFLOAT", 0x58: "BINUNICODE", 0x8C: "SHORT_BINUNICODE", 0x8D: "BINUNICODE8",
    0x42: "BINBYTES", 0x43: "SHORT_BINBYTES", 0x8E: "BINBYTES8", 0x71: "BINPUT",
    0x72: "LONG_BINPUT", 0x94: "MEMOIZE", 0x68: "BINGET", 0x6A: "LONG_BINGET", 0x63: "GLOBAL",
    0x93: "STACK_GLOBAL", 0x52: "REDUCE", 0x62: "BUILD", 0x81: "NEWOBJ", 0x51: "BINPERSID",
  ]
}

extension PickleValue {
  /// LONG1/LONG4 payload: little-endian two's complement. Fits in `.int` when it can.
  static func integer(littleEndianTwosComplement b: UnsafeRawBufferPointer) -> PickleValue {
    guard let last = b.last else { return .int(0) }
    let negative = last & 0x80 != 0
    // Drop sign-extension bytes so equal numbers compare equal.
    var n = b.count
    let fill: UInt8 = negative ? 0xFF : 0x00
    while n > 1 && b[n - 1] == fill && (b[n - 2] & 0x80 != 0) == negative { n -= 1 }
    guard n <= 8 else { return .bigInt(Array(b[0..<n])) }
    var value: UInt64 = negative ? ~0 : 0
    for i in 0..<n {
      value &= ~(UInt64(0xFF) << (8 * UInt64(i)))
      value |= UInt64(b[i]) << (8 * UInt64(i))
    }
    return .int(Int(Int64(bitPattern: value)))
  }
}
