import OctetCore

/// The JSON a safetensors header needs, parsed strictly (RFC 8259) and exactly: integers stay
/// text until they are converted with overflow checks, object keys keep their order, and a
/// duplicate key is an error (two readers must not disagree about which one counts).
enum SafeTensorsJSON: Equatable {
  case null
  case bool(Bool)
  /// The number's literal text.
  case number(String)
  case string(String)
  case array([SafeTensorsJSON])
  case object([(key: String, value: SafeTensorsJSON)])

  static func == (a: SafeTensorsJSON, b: SafeTensorsJSON) -> Bool {
    switch (a, b) {
    case (.null, .null): true
    case (.bool(let x), .bool(let y)): x == y
    case (.number(let x), .number(let y)): x == y
    case (.string(let x), .string(let y)): x == y
    case (.array(let x), .array(let y)): x == y
    case (.object(let x), .object(let y)):
      x.map(\.key) == y.map(\.key) && x.map(\.value) == y.map(\.value)
    default: false
    }
  }

  /// The value as a non-negative Int, if it is an integer literal that fits.
  var nonNegativeInt: Int? {
    guard case .number(let text) = self, !text.isEmpty,
      text.utf8.allSatisfy({ $0 >= 0x30 && $0 <= 0x39 })
    else {
      return nil
    }
    return Int(text)
  }

  struct SyntaxError: Error {
    var reason: String
    var offset: Int
  }

  static let maxDepth = 32

  static func parse(_ bytes: UnsafeRawBufferPointer) throws(SyntaxError) -> SafeTensorsJSON {
    var parser = Parser(bytes: bytes)
    parser.skipWhitespace()
    let value = try parser.value(depth: 0)
    parser.skipWhitespace()
    guard parser.pos == bytes.count else {
      throw SyntaxError(reason: "text after the JSON value", offset: parser.pos)
    }
    return value
  }

  private struct Parser {
    let bytes: UnsafeRawBufferPointer
    var pos = 0

    mutating func skipWhitespace() {
      while pos < bytes.count, [0x20, 0x09, 0x0A, 0x0D].contains(bytes[pos]) { pos += 1 }
    }

    func fail(_ reason: String) -> SyntaxError { SyntaxError(reason: reason, offset: pos) }

    mutating func expect(_ literal: String) throws(SyntaxError) {
      for byte in literal.utf8 {
        guard pos < bytes.count, bytes[pos] == byte else { throw fail("expected '\(literal)'") }
        pos += 1
      }
    }

    mutating func value(depth: Int) throws(SyntaxError) -> SafeTensorsJSON {
      guard depth < SafeTensorsJSON.maxDepth else {
        throw fail("nesting deeper than \(SafeTensorsJSON.maxDepth)")
      }
      guard pos < bytes.count else { throw fail("unexpected end") }
      switch bytes[pos] {
      case UInt8(ascii: "{"):
        pos += 1
        var members: [(key: String, value: SafeTensorsJSON)] = []
        var seen: Set<String> = []
        skipWhitespace()
        if pos < bytes.count, bytes[pos] == UInt8(ascii: "}") {
          pos += 1
          return .object(members)
        }
        while true {
          skipWhitespace()
          guard pos < bytes.count, bytes[pos] == UInt8(ascii: "\"") else {
            throw fail("expected a string key")
          }
          let key = try string()
          guard seen.insert(key).inserted else { throw fail("duplicate key '\(key)'") }
          skipWhitespace()
          try expect(":")
          skipWhitespace()
          members.append((key, try value(depth: depth + 1)))
          skipWhitespace()
          guard pos < bytes.count else { throw fail("unexpected end in an object") }
          if bytes[pos] == UInt8(ascii: ",") {
            pos += 1
          } else if bytes[pos] == UInt8(ascii: "}") {
            pos += 1
            return .object(members)
          } else {
            throw fail("expected ',' or '}'")
          }
        }
      case UInt8(ascii: "["):
        pos += 1
        var items: [SafeTensorsJSON] = []
        skipWhitespace()
        if pos < bytes.count, bytes[pos] == UInt8(ascii: "]") {
          pos += 1
          return .array(items)
        }
        while true {
          skipWhitespace()
          items.append(try value(depth: depth + 1))
          skipWhitespace()
          guard pos < bytes.count else { throw fail("unexpected end in an array") }
          if bytes[pos] == UInt8(ascii: ",") {
            pos += 1
          } else if bytes[pos] == UInt8(ascii: "]") {
            pos += 1
            return .array(items)
          } else {
            throw fail("expected ',' or ']'")
          }
        }
      case UInt8(ascii: "\""):
        return .string(try string())
      case UInt8(ascii: "t"):
        try expect("true")
        return .bool(true)
      case UInt8(ascii: "f"):
        try expect("false")
        return .bool(false)
      case UInt8(ascii: "n"):
        try expect("null")
        return .null
      default:
        return .number(try number())
      }
    }

    mutating func number() throws(SyntaxError) -> String {
      let start = pos
      func digits(_ p: inout Int) -> Int {
        let s = p
        while p < bytes.count, bytes[p] >= 0x30, bytes[p] <= 0x39 { p += 1 }
        return p - s
      }
      if pos < bytes.count, bytes[pos] == UInt8(ascii: "-") { pos += 1 }
      let intStart = pos
      let intDigits = digits(&pos)
      guard intDigits > 0 else { throw fail("expected a value") }
      guard intDigits == 1 || bytes[intStart] != 0x30 else {
        throw fail("a number with a leading zero")
      }
      if pos < bytes.count, bytes[pos] == UInt8(ascii: ".") {
        pos += 1
        guard digits(&pos) > 0 else { throw fail("a number without digits after '.'") }
      }
      if pos < bytes.count, bytes[pos] == UInt8(ascii: "e") || bytes[pos] == UInt8(ascii: "E") {
        pos += 1
        if pos < bytes.count, bytes[pos] == UInt8(ascii: "+") || bytes[pos] == UInt8(ascii: "-") {
          pos += 1
        }
        guard digits(&pos) > 0 else { throw fail("a number without exponent digits") }
      }
      return String(decoding: UnsafeRawBufferPointer(rebasing: bytes[start..<pos]), as: UTF8.self)
    }

    mutating func hex4() throws(SyntaxError) -> UInt32 {
      guard bytes.count - pos >= 4 else { throw fail("a short \\u escape") }
      var v: UInt32 = 0
      for _ in 0..<4 {
        let c = bytes[pos]
        let d: UInt32
        switch c {
        case 0x30...0x39: d = UInt32(c - 0x30)
        case 0x41...0x46: d = UInt32(c - 0x41 + 10)
        case 0x61...0x66: d = UInt32(c - 0x61 + 10)
        default: throw fail("a bad \\u escape")
        }
        v = v << 4 | d
        pos += 1
      }
      return v
    }

    mutating func string() throws(SyntaxError) -> String {
      pos += 1  // opening quote
      var utf8: [UInt8] = []
      while true {
        guard pos < bytes.count else { throw fail("an unterminated string") }
        let c = bytes[pos]
        pos += 1
        switch c {
        case UInt8(ascii: "\""):
          guard let s = String(validating: utf8, as: UTF8.self) else {
            throw fail("a string with invalid UTF-8")
          }
          return s
        case UInt8(ascii: "\\"):
          guard pos < bytes.count else { throw fail("an unterminated string") }
          let e = bytes[pos]
          pos += 1
          switch e {
          case UInt8(ascii: "\""), UInt8(ascii: "\\"), UInt8(ascii: "/"): utf8.append(e)
          case UInt8(ascii: "b"): utf8.append(0x08)
          case UInt8(ascii: "f"): utf8.append(0x0C)
          case UInt8(ascii: "n"): utf8.append(0x0A)
          case UInt8(ascii: "r"): utf8.append(0x0D)
          case UInt8(ascii: "t"): utf8.append(0x09)
          case UInt8(ascii: "u"):
            var scalar = try hex4()
            if (0xD800..<0xDC00).contains(scalar) {
              try expect("\\u")
              let low = try hex4()
              guard (0xDC00..<0xE000).contains(low) else { throw fail("an unpaired surrogate") }
              scalar = 0x10000 + ((scalar - 0xD800) << 10) + (low - 0xDC00)
            }
            guard let u = Unicode.Scalar(scalar) else { throw fail("an unpaired surrogate") }
            utf8.append(contentsOf: Array(String(Character(u)).utf8))
          default: throw fail("a bad escape")
          }
        case 0x00..<0x20:
          throw fail("a control character in a string")
        default:
          utf8.append(c)
        }
      }
    }
  }

  /// Compact JSON text.
  func write(into out: inout String) {
    switch self {
    case .null: out += "null"
    case .bool(let b): out += b ? "true" : "false"
    case .number(let n): out += n
    case .string(let s): Self.writeString(s, into: &out)
    case .array(let items):
      out += "["
      for (i, item) in items.enumerated() {
        if i > 0 { out += "," }
        item.write(into: &out)
      }
      out += "]"
    case .object(let members):
      out += "{"
      for (i, member) in members.enumerated() {
        if i > 0 { out += "," }
        Self.writeString(member.key, into: &out)
        out += ":"
        member.value.write(into: &out)
      }
      out += "}"
    }
  }

  private static func writeString(_ s: String, into out: inout String) {
    out += jsonStringLiteral(s)
  }
}
