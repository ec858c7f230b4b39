/// `s` as a JSON string literal, quotes included: `"`, `\`, newline, return and tab escaped by name,
/// other control characters as `\u00XX` (lowercase hex), everything else verbatim. For files Octet
/// writes by hand (safetensors headers, range tables) to keep a fixed, diffable layout.
public func jsonStringLiteral(_ s: String) -> String {
  var out = "\""
  for scalar in s.unicodeScalars {
    switch scalar {
    case "\"": out += "\\\""
    case "\\": out += "\\\\"
    case "\n": out += "\\n"
    case "\r": out += "\\r"
    case "\t": out += "\\t"
    case _ where scalar.value < 0x20:
      let hex = String(scalar.value, radix: 16)
      out += "\\u" + String(repeating: "0", count: 4 - hex.count) + hex
    default: out.unicodeScalars.append(scalar)
    }
  }
  return out + "\""
}
