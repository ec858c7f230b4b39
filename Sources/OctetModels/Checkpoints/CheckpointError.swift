import OctetCore

/// Why a weight file (PyTorch checkpoint or safetensors) could not be read or written. Every
/// message names the file and says what was wrong with it.
public enum CheckpointError: Error, CustomStringConvertible, Equatable, Sendable {
  /// The file could not be opened or read at all.
  case unreadable(file: String, reason: String)
  /// The file is neither a zip nor a legacy PyTorch checkpoint.
  case notACheckpoint(file: String, reason: String)
  /// The file ends early (a partial download or copy).
  case truncated(file: String, reason: String)
  /// The file has the right framing but inconsistent contents.
  case malformed(file: String, reason: String)
  /// The pickle names a Python global outside the allow-list.
  case forbiddenGlobal(file: String, global: String)
  /// The pickle uses an opcode outside the allow-list. `part` names the pickle inside the file.
  case unsupportedOpcode(file: String, opcode: UInt8, offset: Int, part: String)
  /// A tensor refers to a storage record the archive does not hold.
  case missingStorage(file: String, storage: String)
  /// The checkpoint was written on a big-endian machine.
  case bigEndian(file: String)
  /// One tensor's description does not fit its storage (offset, shape, strides, dtype).
  case invalidTensor(file: String, tensor: String, reason: String)
  /// The file decoded, but holds no tensors where a state_dict was expected.
  case noTensors(file: String)
  /// A safetensors header or layout violates the format.
  case invalidSafeTensors(file: String, reason: String)
  /// A dtype that has no `ElementType`.
  case unsupportedDType(file: String, tensor: String, dtype: String)
  /// Writing an output file failed; no partial file was left behind.
  case writeFailed(file: String, reason: String)

  public var description: String {
    switch self {
    case .unreadable(let file, let reason):
      "cannot read '\(file)': \(reason)"
    case .notACheckpoint(let file, let reason):
      "'\(file)' is not a PyTorch checkpoint (\(reason)); expected a file written by torch.save, "
        + "in the zip format (torch >= 1.6) or the legacy format"
    case .truncated(let file, let reason):
      "checkpoint '\(file)' is truncated: \(reason); copy or download it again"
    case .malformed(let file, let reason):
      "checkpoint '\(file)' is malformed: \(reason)"
    case .forbiddenGlobal(let file, let global):
      "checkpoint '\(file)' names a forbidden global '\(global)'; "
        + "Octet loads plain state_dicts only and never executes code"
    case .unsupportedOpcode(let file, let opcode, let offset, let part):
      "checkpoint '\(file)' uses pickle opcode \(Self.describe(opcode: opcode)) at offset \(offset) of "
        + "\(part), which Octet does not support; Octet reads state_dicts written by torch.save "
        + "(pickle protocols 2 to 5)"
    case .missingStorage(let file, let storage):
      "checkpoint '\(file)' is missing storage '\(storage)'"
    case .bigEndian(let file):
      "checkpoint '\(file)' was written on a big-endian machine; Octet reads little-endian "
        + "checkpoints only (load and re-save it with torch on a little-endian machine)"
    case .invalidTensor(let file, let tensor, let reason):
      "checkpoint '\(file)': tensor '\(tensor)' \(reason)"
    case .noTensors(let file):
      "checkpoint '\(file)' holds no tensors; expected a state_dict (a dict of name -> tensor), "
        + "at the top level or under 'state_dict' or 'model'"
    case .invalidSafeTensors(let file, let reason):
      "safetensors file '\(file)' is invalid: \(reason)"
    case .unsupportedDType(let file, let tensor, let dtype):
      "'\(file)': tensor '\(tensor)' has dtype '\(dtype)', which Octet does not read (supported: "
        + ElementType.allCases.map(\.rawValue).joined(separator: ", ") + ")"
    case .writeFailed(let file, let reason):
      "cannot write '\(file)': \(reason); nothing was written"
    }
  }

  static func describe(opcode: UInt8) -> String {
    let hex = "0x" + String(opcode, radix: 16, uppercase: false).leftPadded(to: 2)
    if opcode >= 0x21 && opcode < 0x7F { return "\(hex) ('\(Character(Unicode.Scalar(opcode)))')" }
    return hex
  }
}

extension String {
  fileprivate func leftPadded(to width: Int) -> String {
    count >= width ? self : String(repeating: "0", count: width - count) + self
  }
}
