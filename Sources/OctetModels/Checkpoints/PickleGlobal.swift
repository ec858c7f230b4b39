import OctetCore

/// The only Python globals a checkpoint may name: what `torch.save(model.state_dict())` emits.
/// Calling one (REDUCE, NEWOBJ) is interpreted here and builds a value; nothing is executed.
/// Every other name, `os.system` or `torch.storage._load_from_bytes` alike, is refused.
enum PickleGlobal: Equatable {
  case orderedDict
  case rebuildTensorV2
  case rebuildParameter
  case rebuildParameterWithState
  case device
  /// `torch.FloatStorage` and friends: only the element type matters. Legacy checkpoints saved
  /// from a GPU name `torch.cuda.FloatStorage`; the bytes are the same.
  case storageType(ElementType, qualifiedName: String)

  private static let storageTypes: [String: ElementType] = [
    "FloatStorage": .float32, "DoubleStorage": .float64, "HalfStorage": .float16,
    "BFloat16Storage": .bfloat16, "LongStorage": .int64, "IntStorage": .int32,
    "ShortStorage": .int16, "CharStorage": .int8, "ByteStorage": .uint8, "BoolStorage": .bool,
  ]

  /// Nil for anything outside the allow-list.
  init?(module: String, name: String) {
    switch (module, name) {
    case ("collections", "OrderedDict"): self = .orderedDict
    case ("torch._utils", "_rebuild_tensor_v2"): self = .rebuildTensorV2
    case ("torch._utils", "_rebuild_parameter"): self = .rebuildParameter
    case ("torch._utils", "_rebuild_parameter_with_state"): self = .rebuildParameterWithState
    case ("torch", "device"): self = .device
    case ("torch", _), ("torch.cuda", _):
      guard let type = Self.storageTypes[name] else { return nil }
      self = .storageType(type, qualifiedName: module + "." + name)
    default: return nil
    }
  }

  var qualifiedName: String {
    switch self {
    case .orderedDict: "collections.OrderedDict"
    case .rebuildTensorV2: "torch._utils._rebuild_tensor_v2"
    case .rebuildParameter: "torch._utils._rebuild_parameter"
    case .rebuildParameterWithState: "torch._utils._rebuild_parameter_with_state"
    case .device: "torch.device"
    case .storageType(_, let name): name
    }
  }

  /// Why a call could not be interpreted; the machine adds the file name.
  struct CallError: Error {
    var reason: String
  }

  /// REDUCE: `self(*args)`, interpreted. `newDict` makes a dict the machine tracks.
  func call(_ args: [PickleValue], newDict: () -> PickleDict) throws(CallError) -> PickleValue {
    switch self {
    case .orderedDict:
      // OrderedDict() is what protocol 2 emits; OrderedDict([(k, v), ...]) is accepted as well.
      let dict = newDict()
      if args.isEmpty { return .dict(dict) }
      guard args.count == 1 else {
        throw CallError(reason: "OrderedDict takes at most one argument")
      }
      let pairs: [PickleValue]
      switch args[0] {
      case .list(let list): pairs = list.items
      case .tuple(let tuple): pairs = tuple.items
      default: throw CallError(reason: "OrderedDict expects a list of pairs, got \(args[0].kind)")
      }
      for pair in pairs {
        guard case .tuple(let t) = pair, t.items.count == 2 else {
          throw CallError(reason: "OrderedDict expects (key, value) pairs")
        }
        var budget = PickleMachine.maxKeyNodes
        guard let key = PickleKey(t.items[0], budget: &budget) else {
          throw CallError(reason: "unhashable or oversized dict key (\(t.items[0].kind))")
        }
        dict.set(key, t.items[1])
      }
      return .dict(dict)

    case .rebuildTensorV2:
      // (storage, storage_offset, size, stride, requires_grad, backward_hooks[, metadata])
      guard args.count == 6 || args.count == 7 else {
        throw CallError(reason: "_rebuild_tensor_v2 takes 6 or 7 arguments, got \(args.count)")
      }
      guard case .storage(let storage) = args[0] else {
        throw CallError(reason: "_rebuild_tensor_v2 expects a storage first, got \(args[0].kind)")
      }
      guard case .int(let offset) = args[1] else {
        throw CallError(
          reason: "_rebuild_tensor_v2 expects an int storage offset, got \(args[1].kind)")
      }
      let shape = try Self.ints(args[2], what: "size")
      let strides = try Self.ints(args[3], what: "stride")
      return .tensor(
        TorchTensorReference(
          storage: storage, storageOffset: offset, shape: shape, strides: strides))

    case .rebuildParameter, .rebuildParameterWithState:
      // (data, requires_grad, backward_hooks[, state]): the parameter is its data.
      let expected = self == .rebuildParameter ? 3 : 4
      guard args.count == expected, case .tensor = args[0] else {
        throw CallError(
          reason: "\(qualifiedName) expects a tensor and \(expected - 1) more arguments")
      }
      return args[0]

    case .device:
      switch args.count {
      case 1:
        guard case .string(let type) = args[0] else { break }
        return .string(type)
      case 2:
        guard case .string(let type) = args[0], case .int(let index) = args[1] else { break }
        return .string("\(type):\(index)")
      default: break
      }
      throw CallError(reason: "torch.device expects a device string (and an index)")

    case .storageType:
      throw CallError(
        reason: "\(qualifiedName) cannot be called; storages come from persistent ids")
    }
  }

  /// NEWOBJ: `cls.__new__(cls, *args)`, only for OrderedDict.
  func new(_ args: [PickleValue], newDict: () -> PickleDict) throws(CallError) -> PickleValue {
    guard self == .orderedDict else {
      throw CallError(reason: "NEWOBJ cannot create \(qualifiedName)")
    }
    return .dict(newDict())
  }

  private static func ints(_ value: PickleValue, what: String) throws(CallError) -> [Int] {
    guard case .tuple(let tuple) = value else {
      throw CallError(reason: "_rebuild_tensor_v2 expects a tuple \(what), got \(value.kind)")
    }
    var result: [Int] = []
    result.reserveCapacity(tuple.items.count)
    for item in tuple.items {
      guard case .int(let i) = item else {
        throw CallError(reason: "_rebuild_tensor_v2 expects ints in its \(what), got \(item.kind)")
      }
      result.append(i)
    }
    return result
  }
}
