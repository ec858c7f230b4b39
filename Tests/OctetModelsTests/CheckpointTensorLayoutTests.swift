import OctetCore
import Testing

@testable import OctetModels

/// `_rebuild_tensor_v2` layouts against a naive index computation: permutations, slices, size-1
/// and size-0 dimensions, stride-0 broadcasts, every element size.
@Suite struct CheckpointTensorLayoutTests {
  static func reference(
    _ storage: [UInt8], elementSize: Int, offset: Int, shape: [Int], strides: [Int]
  ) -> [UInt8] {
    let count = shape.reduce(1, *)
    var out: [UInt8] = []
    for linear in 0..<count {
      var rest = linear
      var element = offset
      for d in (0..<shape.count).reversed() {
        element += (rest % shape[d]) * strides[d]
        rest /= shape[d]
      }
      out += storage[(element * elementSize)..<((element + 1) * elementSize)]
    }
    return out
  }

  @Test func randomStridedViewsMatchTheNaiveGather() throws {
    let seed: UInt64 = 20_240_601
    var rng = SplitMix64(seed: seed)
    let types: [ElementType] = [.uint8, .float16, .float32, .int64]
    for trial in 0..<400 {
      let type = types[Int(rng.next() % 4)]
      let rank = Int(rng.next() % 5)
      let shape = (0..<rank).map { _ in Int(rng.next() % 5) + (rng.next() % 6 == 0 ? 0 : 1) }
      // Strides of a random permutation of a larger contiguous tensor, some zeroed (expand).
      var strides = [Int](repeating: 0, count: rank)
      var running = 1
      for d in (0..<rank).shuffled(using: &rng) {
        strides[d] = rng.next() % 7 == 0 ? 0 : running
        running *= shape[d] + Int(rng.next() % 3)
      }
      let offset = Int(rng.next() % 9)
      let needed = offset + zip(shape, strides).reduce(0) { $0 + max($1.0 - 1, 0) * $1.1 } + 1
      let elementCount = needed + Int(rng.next() % 4)
      let storageBytes = (0..<(elementCount * type.byteSize)).map { _ in
        UInt8(truncatingIfNeeded: rng.next())
      }
      let ref = TorchTensorReference(
        storage: TorchStorageReference(
          key: "0", type: type, rootElementCount: elementCount, elementOffset: 0,
          elementCount: elementCount),
        storageOffset: offset, shape: shape, strides: strides)
      let context =
        "seed \(seed) trial \(trial): \(type) offset \(offset) shape \(shape) strides \(strides)"
      let tensor = try ref.materialize(name: "t", file: "f", rootStorage: storageBytes)
      let expected =
        shape.contains(0)
        ? []
        : Self.reference(
          storageBytes, elementSize: type.byteSize, offset: offset, shape: shape, strides: strides)
      #expect(tensor.bytes == expected, "\(context)")
      #expect(tensor.shape == shape, "\(context)")
    }
  }

  @Test func outOfBoundsLayoutsNameTheTensor() throws {
    func ref(offset: Int, shape: [Int], strides: [Int], count: Int = 12) -> TorchTensorReference {
      TorchTensorReference(
        storage: TorchStorageReference(
          key: "7", type: .float32, rootElementCount: count, elementOffset: 0, elementCount: count),
        storageOffset: offset, shape: shape, strides: strides)
    }
    let storage = [UInt8](repeating: 0, count: 48)
    let bad: [(TorchTensorReference, String)] = [
      (ref(offset: 1, shape: [3, 4], strides: [4, 1]), "reads element 12"),
      (ref(offset: 0, shape: [4, 3], strides: [1, 4]), "reads element 11"),  // fits; replaced below
      (ref(offset: -1, shape: [2], strides: [1]), "negative storage offset"),
      (ref(offset: Int.max, shape: [1], strides: [1]), "reads element \(Int.max)"),
      (ref(offset: 0, shape: [-2], strides: [1]), "negative size"),
      (ref(offset: 0, shape: [2], strides: [-1]), "negative stride"),
      (ref(offset: 0, shape: [2, 2], strides: [1]), "2 sizes but 1 strides"),
      (ref(offset: 0, shape: [Int.max, 4], strides: [4, 1]), "overflows"),
      (ref(offset: 0, shape: [2, 2], strides: [Int.max, 1]), "overflow"),
      (ref(offset: 0, shape: [12], strides: [1], count: 13), "holds only 48 bytes"),
    ]
    for (i, (r, message)) in bad.enumerated() where i != 1 {
      let error = #expect(throws: CheckpointError.self) {
        try r.materialize(name: "layer.weight", file: "f.pth", rootStorage: storage)
      }
      guard case .invalidTensor(file: "f.pth", tensor: "layer.weight", let reason) = error else {
        Issue.record("case \(i): \(String(describing: error))")
        continue
      }
      #expect(reason.contains(message), "case \(i): \(reason)")
    }
    // The transposed layout that exactly fits is fine.
    #expect(try bad[1].0.materialize(name: "t", file: "f", rootStorage: storage).shape == [4, 3])
  }
}
