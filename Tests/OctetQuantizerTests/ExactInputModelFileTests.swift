import Foundation
import OctetCore
import OctetImages
import OctetInt8
import OctetQuantizer
import Testing

@testable import OctetModels

/// Exact input quantization (docs/quantization.md §12) in the quantizer and the model file: the
/// small net of Scripts/int8_reference.py quantized with `exactInput`.
@Suite struct ExactInputModelFileTests {
  func exactModel() throws -> QuantizedModel {
    let golden = try SmallNetGolden.load()
    var options = QuantizationOptions()
    options.exactInput = true
    // The `input` range is not needed when the graph reads the pixels.
    return try Quantizer.quantize(model: golden.model, options: options) {
      $0 == Graph.inputName ? nil : golden.range($0)
    }.model
  }

  func temporaryURL(_ name: String) -> URL {
    FileManager.default.temporaryDirectory.appendingPathComponent("octet-exact-\(UUID().uuidString)-\(name)")
  }

  @Test func stemReadsPixelsWithBorderClasses() throws {
    let model = try exactModel()
    let input = try #require(model.node(named: Graph.inputName))
    #expect(input.pixelInput == PixelNormalization(mean: Preprocessing.imagenet.mean, std: Preprocessing.imagenet.std))
    #expect(input.output == ActivationQuantization(scale: 1, zeroPoint: 0))
    // The small net's stem: 3x3, stride 2, padding [0, 0, 1, 1] on 12x12: the last output row and
    // column overhang the input by one tap.
    let stem = try #require(model.nodes.first { $0.inputs == [Graph.inputName] })
    #expect(stem.borderClasses == BorderClasses(rowTaps: [[0, 3], [0, 2]], colTaps: [[0, 3], [0, 2]]))
    #expect(stem.borderBias.count == 4 * (stem.outChannels ?? 0))
    // Class 0 is the full window: the GEMM's bias.
    #expect(Array(stem.borderBias.prefix(stem.outChannels ?? 0)) == stem.bias)
  }

  @Test func roundTripsAsVersion3AndPlainModelsStayVersion2() throws {
    let model = try exactModel()
    let url = temporaryURL("exact.safetensors")
    defer { try? FileManager.default.removeItem(at: url) }
    try QuantizedModelFile.write(model, to: url)
    let (tensors, metadata) = try SafeTensors.read(contentsOf: url)
    #expect(metadata["octet.format_version"] == "3")
    #expect(try QuantizedModelFile.read(contentsOf: url) == model)
    let stem = model.nodes.first { $0.inputs == [Graph.inputName] }!
    #expect(tensors["\(stem.name).border_bias"]?.shape == [4, stem.outChannels!])

    let golden = try SmallNetGolden.load()
    let plain = try Quantizer.quantize(model: golden.model, range: golden.range).model
    #expect(try QuantizedModelFile.metadata(for: plain)["octet.format_version"] == "2")
  }

  /// A damaged or inconsistent exact-input file is one clear error naming the node or tensor.
  @Test func badExactInputFilesAreClearErrors() throws {
    let model = try exactModel()
    let stem = model.nodes.first { $0.inputs == [Graph.inputName] }!
    let key = "\(stem.name).border_bias"
    let tensors = QuantizedModelFile.tensors(for: model)
    let metadata = try QuantizedModelFile.metadata(for: model)
    func decode(_ t: TensorDictionary, _ m: [String: String]) throws {
      _ = try QuantizedModelFile.decode(tensors: t, metadata: m, path: "bad.safetensors")
    }
    // Border bias of the wrong shape.
    var t = tensors
    t[key] = HostTensor(
      type: .int32, shape: [3, stem.outChannels!], bytes: [UInt8](repeating: 0, count: 12 * stem.outChannels!))
    var m = metadata
    m[TensorChecksums.metadataKey] = try TensorChecksums.metadataValue(for: t)
    #expect { try decode(t, m) } throws: { "\($0)".contains(key) && "\($0)".contains("[4, ") }
    // Missing border bias.
    t = tensors
    t[key] = nil
    m[TensorChecksums.metadataKey] = try TensorChecksums.metadataValue(for: t)
    #expect { try decode(t, m) } throws: { "\($0)".contains(key) && "\($0)".contains("missing") }
    // Border classes that do not match the geometry.
    var wrong = model
    let i = wrong.nodes.firstIndex { $0.name == stem.name }!
    wrong.nodes[i].borderClasses = BorderClasses(rowTaps: [[0, 3], [1, 3]], colTaps: [[0, 3], [0, 2]])
    #expect { try wrong.validate() } throws: { "\($0)".contains(stem.name) && "\($0)".contains("geometry") }
    // A pixel input read by a node that is not an exact-input convolution.
    wrong = model
    wrong.nodes[i].borderClasses = nil
    wrong.nodes[i].borderBias = []
    #expect { try wrong.validate() } throws: { "\($0)".contains(stem.name) && "\($0)".contains("pixel input") }
    // Border classes in a version-2 file.
    m = metadata
    m["octet.format_version"] = "2"
    #expect { try decode(tensors, m) } throws: { "\($0)".contains("format version 2") }
  }

  /// Bit-exact agreement with `Scripts/int8_reference.py --exact-input`, the NumPy re-implementation
  /// of §12 (per-position biases computed from the text, not from the classes).
  @Test func everyTensorAndTheLogitsMatchNumPyBitForBit() throws {
    let golden = try SmallNetGolden.load("small_net_exact")
    var options = QuantizationOptions()
    options.exactInput = true
    let model = try Quantizer.quantize(model: golden.model, options: options, range: golden.range).model
    // The float input is the golden's pixels normalized: the graph reads them back exactly.
    let pixels = try #require(golden.pixels)
    let normalized = Preprocessing.imagenet.normalize(
      RGBImage(width: golden.inputSize, height: golden.inputSize, pixels: pixels.map { UInt8($0) }))
    #expect(normalized.scalars == golden.inputTensor.scalars, "the script's float input is not the normalized pixels")
    var seen: Set<String> = []
    let logits = try Int8ReferenceExecutor(model: model).run(golden.inputTensor) { name, tensor in
      seen.insert(name)
      let expected = golden.expected[name]
      #expect(tensor.values.map(Int.init) == expected, "\(name) differs from NumPy (golden seed \(golden.seed))")
    }
    #expect(seen == Set(golden.expected.keys))
    #expect(logits.values == golden.logits, "int32 logits differ from NumPy (golden seed \(golden.seed))")
  }

  /// Where exact input cannot be built, the quantizer says so.
  @Test func inputReadByANonConvolutionIsRefused() throws {
    var model = try SmallNetGolden.load().model
    // A max pool straight on the input.
    var pool = Node.maxPool("pool0", input: Graph.inputName, kernel: 2, stride: 2, padding: 0)
    pool.inputs = [Graph.inputName]
    model.graph = Graph(
      nodes: [pool]
        + model.graph.nodes.map { n in
          var n = n
          n.inputs = n.inputs.map { $0 == Graph.inputName ? "pool0" : $0 }
          return n
        }, output: model.graph.output)
    var options = QuantizationOptions()
    options.exactInput = true
    #expect { try Quantizer.quantize(model: model, options: options) { _ in (-1, 1) } } throws: {
      "\($0)".contains("pool0") && "\($0)".contains("exact input")
    }
  }
}
