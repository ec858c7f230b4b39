import ArgumentParser
import Foundation
import Octet

/// Checks, in `validate()`, that a model argument holds the kind of model the command runs, so that
/// an int8 model where a float one belongs (or the reverse) is one line naming the command, the
/// argument and what it expects, before anything is loaded. A path that does not exist is left to
/// the command, which says "no such file".
enum ModelArgument {
  /// `argument` (as the usage line shows it, "<model>") of `command` must be a float model (an Octet float model file or a checkpoint).
  static func expectFloat(_ path: String, argument: String, command: String, why: String) throws {
    guard ModelFileKind.of(URL(fileURLWithPath: path)) == .int8 else { return }
    throw ValidationError(
      "\(command): \(argument) '\(path)' is an int8 model, but \(command) \(why): give the float model "
        + "(an `octet import` output or the checkpoint) that the int8 model was quantized from")
  }

  /// `compare`'s two models: the float one first, then the int8 one made from it.
  static func expectComparePair(float floatPath: String, int8 int8Path: String) throws {
    let first = ModelFileKind.of(URL(fileURLWithPath: floatPath))
    let second = ModelFileKind.of(URL(fileURLWithPath: int8Path))
    let usage = "`octet compare <float-model> <int8-model> --images <images>`"
    switch (first, second) {
    case (.int8, .some(let k)) where k != .int8:
      throw ValidationError(
        "compare: the models are swapped: <float-model> '\(floatPath)' is an int8 model and <int8-model> "
          + "'\(int8Path)' is \(k.phrase); the float model comes first: "
          + "`octet compare \(int8Path) \(floatPath) --images <images>`")
    case (.int8, _):
      throw ValidationError(
        "compare: <float-model> '\(floatPath)' is an int8 model, but compare's first argument is the float "
          + "model the int8 one was quantized from (\(usage))")
    case (_, .some(let k)) where k != .int8:
      throw ValidationError(
        "compare: <int8-model> '\(int8Path)' is \(k.phrase), but compare's second argument is the int8 model "
          + "(\(usage)); make it with `octet quantize \(floatPath) --ranges RANGES -o INT8_MODEL`")
    default: return
    }
  }

  /// `import`'s checkpoint must not be an int8 model (an Octet float model file is re-imported as is).
  static func expectCheckpoint(_ path: String) throws {
    guard ModelFileKind.of(URL(fileURLWithPath: path)) == .int8 else { return }
    throw ValidationError(
      "import: <checkpoint> '\(path)' is an int8 model, but import reads PyTorch checkpoints and safetensors "
        + "state_dicts; an int8 model needs no import (classify, eval, bench and compare read it as it is)")
  }
}
