import OctetCore

/// A value on the pickle machine's stack. Nothing here can run code: globals are allow-listed
/// names, and "calling" one builds one of these values (see `PickleGlobal`).
enum PickleValue {
  case none
  case bool(Bool)
  case int(Int)
  /// An integer wider than 64 bits: minimal little-endian two's complement, as LONG1 stores it.
  case bigInt([UInt8])
  case float(Double)
  case string(String)
  case bytes([UInt8])
  case tuple(PickleTuple)
  /// Lists and dicts are references: pickle memoizes them and fills them afterwards.
  case list(PickleList)
  case dict(PickleDict)
  case global(PickleGlobal)
  case storage(TorchStorageReference)
  case tensor(TorchTensorReference)

  /// How deeply tuples nest inside this value. Lists and dicts count as 1: the machine releases
  /// their contents itself, so only tuple nesting reaches Swift's recursive release.
  var depth: Int {
    if case .tuple(let tuple) = self { return tuple.depth }
    return 1
  }

  /// A short name of the value's kind, for error messages (never the contents).
  var kind: String {
    switch self {
    case .none: "None"
    case .bool: "bool"
    case .int, .bigInt: "int"
    case .float: "float"
    case .string: "str"
    case .bytes: "bytes"
    case .tuple: "tuple"
    case .list: "list"
    case .dict: "dict"
    case .global(let global): global.qualifiedName
    case .storage: "storage"
    case .tensor: "tensor"
    }
  }
}

/// An immutable tuple with its nesting depth, computed once when it is built.
struct PickleTuple {
  let items: [PickleValue]
  let depth: Int

  init(_ items: [PickleValue]) {
    self.items = items
    self.depth = 1 + (items.lazy.map(\.depth).max() ?? 0)
  }
}

final class PickleList {
  var items: [PickleValue] = []
}

/// An insertion-ordered dict, like Python's dict and OrderedDict.
final class PickleDict {
  private(set) var entries: [(key: PickleKey, value: PickleValue)] = []
  private var index: [PickleKey: Int] = [:]

  func set(_ key: PickleKey, _ value: PickleValue) {
    if let i = index[key] {
      entries[i].value = value
    } else {
      index[key] = entries.count
      entries.append((key, value))
    }
  }

  subscript(string key: String) -> PickleValue? {
    index[.string(key)].map { entries[$0].value }
  }

  func removeAll() {
    entries.removeAll()
    index.removeAll()
  }
}

/// The hashable values that can key a dict, as in Python (lists and dicts cannot).
indirect enum PickleKey: Hashable {
  case none
  case bool(Bool)
  case int(Int)
  case bigInt([UInt8])
  case float(UInt64)
  case string(String)
  case bytes([UInt8])
  case tuple([PickleKey])
  case global(String)

  /// Nil when the value is unhashable, or when it expands to more than `budget` nodes (tuples can
  /// share items through the memo, so a small pickle can describe an exponentially large key).
  init?(_ value: PickleValue, budget: inout Int) {
    budget -= 1
    if budget < 0 { return nil }
    switch value {
    case .none: self = .none
    case .bool(let b): self = .bool(b)
    case .int(let i): self = .int(i)
    case .bigInt(let b): self = .bigInt(b)
    case .float(let f): self = .float(f.bitPattern)
    case .string(let s): self = .string(s)
    case .bytes(let b): self = .bytes(b)
    case .global(let g): self = .global(g.qualifiedName)
    case .tuple(let t):
      var keys: [PickleKey] = []
      keys.reserveCapacity(t.items.count)
      for item in t.items {
        guard let key = PickleKey(item, budget: &budget) else { return nil }
        keys.append(key)
      }
      self = .tuple(keys)
    case .list, .dict, .storage, .tensor: return nil
    }
  }
}

/// One storage as a torch checkpoint's persistent id names it: the record key, the element type
/// of the storage class, and the elements this reference covers. A legacy checkpoint can name a
/// view of a larger root storage; then `elementOffset` is where the view starts in the root.
struct TorchStorageReference: Equatable {
  var key: String
  var type: ElementType
  /// Elements of the root storage, as the persistent id declares them.
  var rootElementCount: Int
  var elementOffset: Int
  var elementCount: Int
}

/// A tensor as `torch._utils._rebuild_tensor_v2` describes it, not yet read: offset, shape and
/// strides count elements of `storage`.
struct TorchTensorReference {
  var storage: TorchStorageReference
  var storageOffset: Int
  var shape: [Int]
  var strides: [Int]
}
