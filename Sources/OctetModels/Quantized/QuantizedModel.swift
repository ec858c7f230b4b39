import OctetCore

/// The operators of an integer graph. Raw values are what quantized model files store.
public enum QuantizedOperator: String, Codable, Sendable {
  /// Float input `[N, S, S, 3]` → uint8, round half away from zero, clamp [0, 255].
  case quantizeInput = "quantize_input"
  /// Convolution with BatchNorm folded and ReLU/ReLU6 as the output clamp.
  case conv2d
  /// Residual add (ReLU after it fused as the clamp).
  case add
  /// Max over the window in the input's quantization; padding never wins.
  case maxPool = "max_pool"
  /// `[H, W, C]` → `[1, 1, C]`, requantized with M = s_in / (s_out · H · W).
  case globalAveragePool = "global_average_pool"
  /// Reshape; the values and their quantization stay.
  case flatten
  /// Classifier: uint8 `[features]` → int32 logits at `output.scale` (zero point 0).
  case linear
  /// One-input activation (sigmoid, hard sigmoid, hard swish, leaky ReLU) as a 256-entry uint8
  /// table: q_out = table[q_in] (docs/quantization.md §20).
  case lookup
  /// Elementwise product, or [H, W, C] by [1, 1, C]: q = clamp(requant((q_a − z_a)(q_b − z_b)) + z_out, 0, 255) (§21).
  case mul
  /// Channel concatenation, each input requantized to the output: q = clamp(inputRequant[i](q − z_i) + z_out, 0, 255) (§22).
  case concat
  /// k x k average pool: q = clamp(poolRequant[count − 1](Σ (q − z_in)) + z_out, 0, 255) (§23).
  case averagePool = "average_pool"
}

/// One node of an integer graph, named by the tensor it produces (after fusion, the float graph's
/// last fused node: `layer1.0.relu1`, `_blocks.3._bn1.relu6`, `layer1.0.relu3` for an add + ReLU).
///
/// Per-channel arrays live in the node and go to the model file as tensors named
/// `<node>.weight` (I8), `<node>.bias`, `<node>.multiplier`, `<node>.shift` (I32) and
/// `<node>.weight_scale` (F32); everything else is the JSON description.
public struct QuantizedNode: Codable, Sendable, Equatable {
  public var name: String
  public var op: QuantizedOperator
  /// Producer node names; the first node, `quantize_input`, has none and is called `input`.
  public var inputs: [String]
  /// The float graph nodes this node implements, first to last.
  public var fused: [String]
  /// Quantization of the output. For `linear`, the scale of the int32 logits (zero point 0).
  public var output: ActivationQuantization

  // conv2d / linear
  public var inChannels: Int?
  public var outChannels: Int?
  /// [kh, kw]
  public var kernel: [Int]?
  /// [sh, sw]
  public var stride: [Int]?
  /// [top, left, bottom, right], resolved for the model's input size.
  public var padding: [Int]?
  public var groups: Int?
  /// Quantization of the input(s), in `inputs` order (conv2d, add, linear, global_average_pool).
  public var inputQuantization: [ActivationQuantization]?
  /// Output clamp [lo, hi] in the uint8 domain (conv2d, add): ReLU → lo = z_out, ReLU6 → hi = z_out + round(6 / s_out).
  public var clamp: [Int]?

  // add: q = clamp(addMultipliers.apply(q_a − z_a, q_b − z_b) + z_out, clamp)
  public var addMultipliers: AddMultipliers?

  // global_average_pool: q = clamp(requant.apply(Σ (q − z_in)) + z_out, 0, 255), M = s_in / (s_out · H · W)
  public var requant: RequantMultiplier?

  /// conv2d: `[O, kh, kw, I/groups]` (OHWI); linear: `[O, I]`. Symmetric per output channel, [-127, 127].
  public var weights: [Int8] = []
  /// `[O]`, at scale s_in · weightScales[c], with −z_in · Σ w_q[c] folded in.
  public var bias: [Int32] = []
  /// `[O]`: requantization multipliers m[c] and shifts n[c], M[c] ≈ m[c] · 2^−n[c].
  public var multipliers: [Int32] = []
  public var shifts: [Int32] = []
  /// `[O]`: s_w[c], real weight = s_w[c] · w_q.
  public var weightScales: [Float] = []
  /// conv2d only, empty or `[O]` each: per-channel output clamp bounds in the uint8 domain, applied
  /// instead of `clamp` (docs/quantization.md §7.1: a ReLU6 after cross-layer equalization clamps
  /// channel c at `z_out + round(6 / (s_c · s_out))`). They nest inside `clamp`
  /// (`clamp[0] <= lo[c] <= hi[c] <= clamp[1]`), which stays the hull of all channels. File tensors
  /// `<node>.clamp_lo`, `<node>.clamp_hi` (U8), present only when non-empty.
  public var channelClampLo: [UInt8] = []
  public var channelClampHi: [UInt8] = []

  // Exact input quantization (docs/quantization.md §12).
  /// quantize_input: present when the node outputs the uint8 pixels the normalized input came
  /// from (scale 1, zero point 0) instead of quantizing the float input.
  public var pixelInput: PixelNormalization?
  /// conv2d reading pixels: its border classes; `borderBias` holds one bias vector per class.
  public var borderClasses: BorderClasses?
  /// `[classes, O]` (tensor `<node>.border_bias`), class `r · colClasses + c`, at scale s_w[c]
  /// (the pixel input has scale 1).
  public var borderBias: [Int32] = []

  // 16-bit layers (docs/quantization.md §17), conv2d only; nil means 8. A conv2d node with a 16-bit
  // input or output is "wide": its bias is `bias64` (file tensor `<node>.bias` I64) and its
  // accumulator 64-bit; with `weightBits` 16 its weights are `weights16` (`<node>.weight` I16).
  /// 16: the input is int16 with `inputQuantization[0]`'s zero point in [−32768, 32767].
  public var inputBits: Int?
  /// 16: the output is int16 (`output`'s zero point and `clamp` in the int16 domain).
  public var outputBits: Int?
  /// 16: int16 weights in [−32767, 32767] (`weights16`); nil: int8 in `weights`.
  public var weightBits: Int?
  // ONNX operators (docs/quantization.md §20-§23).
  /// lookup: `[256]`, the output code of every input code (file tensor `<node>.table` U8).
  public var table: [UInt8] = []
  /// concat: one multiplier per input, M_i = s_i / s_out (an exact copy when M_i = 1, m = 2^30, n = 30).
  public var inputRequant: [RequantMultiplier]?
  /// average_pool: entry t − 1 is the multiplier of a window of t taps, M_t = s_in / (s_out · t).
  public var poolRequant: [RequantMultiplier]?
  /// average_pool: padded taps count in the divisor (ONNX count_include_pad); nil: false.
  public var countIncludePad: Bool?

  /// `[O, kh, kw, I/groups]` int16 weights of an a16w16 node.
  public var weights16: [Int16] = []
  /// `[O]` 64-bit biases of a wide node, at scale s_in · s_w[c], with −z_in · Σ w_q[c] folded in.
  public var bias64: [Int64] = []

  enum CodingKeys: String, CodingKey {
    case name, op, inputs, fused, output, inChannels, outChannels, kernel, stride, padding, groups
    case inputQuantization, clamp, addMultipliers, requant
    case pixelInput, borderClasses
    case inputBits = "input_bits"
    case outputBits = "output_bits"
    case weightBits = "weight_bits"
    case inputRequant = "input_requant"
    case poolRequant = "pool_requant"
    case countIncludePad = "count_include_pad"
  }

  /// A conv2d node with a 16-bit input, output or weights (docs/quantization.md §17): it accumulates
  /// in int64 with an int64 bias.
  public var isWide: Bool { inputBits == 16 || outputBits == 16 || weightBits == 16 }

  /// "a8w8", "a8w16", "a16w8" or "a16w16": the precision of the node's input activations and weights.
  public var precision: String {
    (inputBits == 16 ? "a16" : "a8") + (weightBits == 16 ? "w16" : "w8")
  }

  public init(
    name: String, op: QuantizedOperator, inputs: [String], fused: [String], output: ActivationQuantization
  ) {
    self.name = name
    self.op = op
    self.inputs = inputs
    self.fused = fused
    self.output = output
  }

  /// Weight values per output channel: kh · kw · I/groups for conv2d, I for linear.
  public var weightsPerChannel: Int {
    switch op {
    case .conv2d: (kernel ?? [1, 1]).reduce(1, *) * (inChannels ?? 0) / max(groups ?? 1, 1)
    case .linear: inChannels ?? 0
    default: 0
    }
  }
}

/// An int8 model: an integer graph in execution order, from `quantize_input` (named `input`) to
/// the `linear` node whose int32 logits are the output, and the float model's description.
public struct QuantizedModel: Sendable, Equatable {
  public var info: ModelInfo
  public var nodes: [QuantizedNode]
  public var output: String
  /// The SHA-256 (lowercase hex) of every image file its ranges were calibrated on, when known
  /// (from the range table's `calibration_images`); nil for models quantized without that record.
  /// `octet compare` uses it to warn when it is evaluated on calibration images.
  public var calibrationImages: [String]? = nil
  /// How the model was made (OctetQuantizer's `QuantizationRecipe` as JSON: calibration method and
  /// image count, the quantization options, the data-driven passes run), when recorded.
  public var recipe: String? = nil
  /// The range table the model was quantized with (OctetCalibration's `RangeTable` JSON), when recorded.
  public var ranges: String? = nil

  public init(info: ModelInfo, nodes: [QuantizedNode], output: String) {
    self.info = info
    self.nodes = nodes
    self.output = output
  }

  public func node(named name: String) -> QuantizedNode? { nodes.first { $0.name == name } }

  /// Checks what the integer runtime relies on without knowing activation shapes: unique names,
  /// inputs produced earlier, parameter ranges, and the sizes of every per-channel array.
  public func validate() throws(QuantizedModelError) {
    func bad(_ node: QuantizedNode, _ reason: String) -> QuantizedModelError {
      .invalidNode(node.name, reason)
    }
    guard let first = nodes.first, first.op == .quantizeInput, first.name == Graph.inputName else {
      throw .invalidGraph("the first node must be 'quantize_input' named '\(Graph.inputName)'")
    }
    var seen: Set<String> = []
    for node in nodes {
      for input in node.inputs where !seen.contains(input) {
        throw bad(node, "reads '\(input)', which no earlier node produces")
      }
      guard seen.insert(node.name).inserted else { throw bad(node, "the name appears twice") }
      let expectedInputs: Int
      switch node.op {
      case .quantizeInput: expectedInputs = 0
      case .add, .mul: expectedInputs = 2
      case .concat: expectedInputs = max(node.inputs.count, 1)
      default: expectedInputs = 1
      }
      guard node.inputs.count == expectedInputs else {
        throw bad(node, "\(node.op.rawValue) takes \(expectedInputs) input(s), has \(node.inputs.count)")
      }
      guard node.output.scale > 0, node.output.scale.isFinite else {
        throw bad(node, "output scale \(node.output.scale) is not a positive finite number")
      }
      for (label, bits) in [
        ("input_bits", node.inputBits), ("output_bits", node.outputBits), ("weight_bits", node.weightBits),
      ]
      where bits != nil {
        guard node.op == .conv2d, bits == 16 else {
          throw bad(node, "\(label) \(bits!): only conv2d nodes can be 16-bit, and only 16 may be given")
        }
      }
      let outRange: ClosedRange<Int32> = node.outputBits == 16 ? -32768...32767 : 0...255
      let inRange: ClosedRange<Int32> = node.inputBits == 16 ? -32768...32767 : 0...255
      if node.op != .linear, !outRange.contains(node.output.zeroPoint) {
        throw bad(
          node, "output zero point \(node.output.zeroPoint) is outside [\(outRange.lowerBound), \(outRange.upperBound)]"
        )
      }
      if let q = node.inputQuantization {
        guard q.count == node.inputs.count else {
          throw bad(node, "has \(q.count) input quantizations for \(node.inputs.count) inputs")
        }
        for p in q where !(p.scale > 0 && p.scale.isFinite && inRange.contains(p.zeroPoint)) {
          throw bad(node, "input quantization (scale \(p.scale), zero point \(p.zeroPoint)) is invalid")
        }
      }
      if let clamp = node.clamp {
        let (a, b) = (Int(outRange.lowerBound), Int(outRange.upperBound))
        guard clamp.count == 2, a <= clamp[0], clamp[0] <= clamp[1], clamp[1] <= b else {
          throw bad(node, "clamp \(clamp) is not \(a) <= lo <= hi <= \(b)")
        }
      }
      switch node.op {
      case .conv2d, .linear:
        guard let i = node.inChannels, let o = node.outChannels, i > 0, o > 0 else {
          throw bad(node, "needs positive inChannels and outChannels")
        }
        guard node.inputQuantization?.count == 1 else { throw bad(node, "needs its input quantization") }
        if node.op == .conv2d {
          let g = node.groups ?? 1
          guard let k = node.kernel, k.count == 2, k.allSatisfy({ $0 > 0 }),
            let s = node.stride, s.count == 2, s.allSatisfy({ $0 > 0 }),
            let p = node.padding, p.count == 4, p.allSatisfy({ $0 >= 0 }),
            g > 0, i % g == 0, o % g == 0, node.clamp != nil
          else {
            throw bad(
              node,
              "needs kernel [kh, kw], stride [sh, sw], padding [t, l, b, r], clamp, and groups dividing \(i) and \(o)"
            )
          }
        }
        // The sizes come from the file: their product must not overflow (a trap) in
        // `weightsPerChannel` below, which divides kh · kw · I by groups.
        var weightCount = o
        for factor in node.op == .conv2d ? node.kernel! + [i] : [i] {
          let (product, overflow) = weightCount.multipliedReportingOverflow(by: factor)
          guard !overflow else {
            throw bad(node, "kernel \(node.kernel ?? []) x \(i) x \(o) channels: the weight count overflows")
          }
          weightCount = product
        }
        let perChannel = node.weightsPerChannel
        let wide = node.isWide
        let weights16 = node.weightBits == 16
        for (label, count) in [
          ("weight", weights16 ? node.weights16.count : node.weights.count),
          ("bias", wide ? node.bias64.count : node.bias.count), ("multiplier", node.multipliers.count),
          ("shift", node.shifts.count), ("weight_scale", node.weightScales.count),
          ("unused weight", weights16 ? node.weights.count : node.weights16.count),
          ("unused bias", wide ? node.bias.count : node.bias64.count),
        ] {
          let expected = label.hasPrefix("unused") ? 0 : label == "weight" ? o * perChannel : o
          guard count == expected else {
            throw .tensor("\(node.name).\(label)", "has \(count) values, expected \(expected)")
          }
        }
        if !node.channelClampLo.isEmpty || !node.channelClampHi.isEmpty {
          guard node.op == .conv2d, node.channelClampLo.count == o, node.channelClampHi.count == o,
            let clamp = node.clamp
          else {
            throw .tensor(
              "\(node.name).clamp_lo",
              "per-channel clamps need a conv2d and [\(o)] values each, have \(node.channelClampLo.count) and \(node.channelClampHi.count)"
            )
          }
          for c in 0..<o {
            let (lo, hi) = (Int(node.channelClampLo[c]), Int(node.channelClampHi[c]))
            guard clamp[0] <= lo, lo <= hi, hi <= clamp[1] else {
              throw .tensor(
                "\(node.name).clamp_hi",
                "channel \(c): [\(lo), \(hi)] is not nested in the clamp \(clamp) with lo <= hi")
            }
          }
        }
        if node.weights.contains(-128) {
          throw .tensor("\(node.name).weight", "holds -128; weights are in [-127, 127]")
        }
        if node.weights16.contains(-32768) {
          throw .tensor("\(node.name).weight", "holds -32768; 16-bit weights are in [-32767, 32767]")
        }
        // docs/quantization.md §17: |b| <= 2^52 keeps |acc · m| far below 2^127.
        if let b = node.bias64.first(where: { $0.magnitude > 1 << 52 }) {
          throw .tensor("\(node.name).bias", "holds \(b); 64-bit biases are within ±2^52")
        }
        for c in 0..<o {
          let (m, n) = (node.multipliers[c], node.shifts[c])
          // RequantMultiplier's ranges (docs/quantization.md §3), checked here so a damaged file is an error.
          guard (1...62).contains(n), m >= 0, m >= 1 << 30 || n == 62 || m == 0 else {
            throw .tensor(
              "\(node.name).multiplier",
              "channel \(c): (m \(m), n \(n)) is out of range (n in 1...62, m in [2^30, 2^31) unless n is 62)"
            )
          }
        }
      case .add:
        guard node.addMultipliers != nil, node.inputQuantization?.count == 2, node.clamp != nil else {
          throw bad(node, "needs its add multipliers, two input quantizations and a clamp")
        }
      case .globalAveragePool:
        guard node.requant != nil, node.inputQuantization?.count == 1 else {
          throw bad(node, "needs its requantization multiplier and its input quantization")
        }
      case .maxPool:
        guard let k = node.kernel, k.count == 2, k.allSatisfy({ $0 > 0 }),
          let s = node.stride, s.count == 2, s.allSatisfy({ $0 > 0 }),
          let p = node.padding, p.count == 4, p.allSatisfy({ $0 >= 0 })
        else { throw bad(node, "needs kernel, stride and padding") }
      case .lookup:
        guard node.table.count == 256 else {
          throw .tensor("\(node.name).table", "has \(node.table.count) values, expected 256")
        }
      case .mul:
        guard node.requant != nil, node.inputQuantization?.count == 2 else {
          throw bad(node, "needs its requantization multiplier and two input quantizations")
        }
      case .concat:
        guard node.inputRequant?.count == node.inputs.count, node.inputQuantization?.count == node.inputs.count else {
          throw bad(node, "needs one requantization multiplier and one input quantization per input")
        }
      case .averagePool:
        guard let k = node.kernel, k.count == 2, k.allSatisfy({ $0 > 0 && $0 <= 1 << 16 }), k[0] * k[1] <= 1 << 16,
          let s = node.stride, s.count == 2, s.allSatisfy({ $0 > 0 }),
          let p = node.padding, p.count == 4, p.allSatisfy({ $0 >= 0 }), p[0] < k[0], p[2] < k[0], p[1] < k[1],
          p[3] < k[1], node.inputQuantization?.count == 1, node.poolRequant?.count == k[0] * k[1]
        else {
          throw bad(
            node,
            "needs kernel (at most 2^16 taps), stride, padding smaller than the kernel, its input quantization "
              + "and one multiplier per tap count")
        }
      case .quantizeInput, .flatten:
        break
      }
      if node.op != .lookup, !node.table.isEmpty {
        throw .tensor("\(node.name).table", "belongs to a \(node.op.rawValue) node; only lookup nodes have a table")
      }
      try validateExactInput(node)
    }
    // A 16-bit tensor is read only by conv2d nodes with a 16-bit input (docs/quantization.md §17).
    let sixteen = Set(nodes.filter { $0.outputBits == 16 }.map(\.name))
    for node in nodes {
      for input in node.inputs where sixteen.contains(input) != (node.inputBits == 16) {
        throw bad(
          node,
          sixteen.contains(input)
            ? "reads the 16-bit tensor '\(input)' but its input is not 16-bit"
            : "has a 16-bit input but '\(input)' is 8-bit")
      }
    }
    guard let out = node(named: output) else { throw .invalidGraph("graph output '\(output)' is not a node") }
    guard out.op == .linear else {
      throw .invalidGraph(
        "graph output '\(output)' is \(out.op.rawValue); the integer graph ends in a linear classifier")
    }
  }
}

extension QuantizedModel {
  /// Whether the network reads the uint8 pixels (exact input quantization, docs/quantization.md §12).
  public var readsPixels: Bool { nodes.first?.pixelInput != nil }

  /// docs/quantization.md §12: a pixel input is read only by convolutions with border classes that
  /// match their geometry at this model's input size, and only those have border classes.
  func validateExactInput(_ node: QuantizedNode) throws(QuantizedModelError) {
    if let p = node.pixelInput {
      guard node.op == .quantizeInput, p.isValid else {
        throw .invalidNode(node.name, "pixel input needs a quantize_input node with 3 finite means and positive stds")
      }
      guard node.output == ActivationQuantization(scale: 1, zeroPoint: 0) else {
        throw .invalidNode(node.name, "a pixel input has scale 1 and zero point 0, not \(node.output)")
      }
    }
    let readsInput = node.inputs.contains(Graph.inputName)
    if readsInput, readsPixels {
      guard node.op == .conv2d, node.borderClasses != nil, node.groups ?? 1 == 1 else {
        throw .invalidNode(
          node.name, "reads the pixel input; only an ungrouped conv2d with border classes can (exact input)")
      }
    }
    guard let classes = node.borderClasses else {
      if !node.borderBias.isEmpty {
        throw .tensor("\(node.name).border_bias", "belongs to a node without border classes")
      }
      return
    }
    guard readsInput, readsPixels, node.op == .conv2d, let k = node.kernel, let s = node.stride,
      let p = node.padding, let o = node.outChannels
    else {
      throw .invalidNode(node.name, "has border classes but is not a conv2d reading the pixel input")
    }
    let size = info.inputSize
    let expected = BorderClasses(inHeight: size, inWidth: size, kernel: k, stride: s, padding: p)
    guard expected == classes else {
      throw .invalidNode(
        node.name,
        "border classes \(classes.rowTaps) x \(classes.colTaps) do not match the geometry at input \(size) (\(expected.rowTaps) x \(expected.colTaps))"
      )
    }
    guard node.borderBias.count == classes.count * o else {
      throw .tensor(
        "\(node.name).border_bias", "has \(node.borderBias.count) values, expected \(classes.count) classes x \(o)")
    }
  }
}

/// Errors about quantized models and their files; messages name the file, node or tensor.
public enum QuantizedModelError: Error, CustomStringConvertible, Equatable {
  case invalidGraph(String)
  case invalidNode(String, String)
  case tensor(String, String)
  case notAQuantizedModel(path: String, reason: String)
  case unsupportedFormatVersion(path: String, found: String, supported: String)

  public var description: String {
    switch self {
    case .invalidGraph(let message): "invalid int8 graph: \(message)"
    case .invalidNode(let name, let reason): "int8 node '\(name)': \(reason)"
    case .tensor(let name, let reason): "int8 tensor '\(name)' \(reason)"
    case .notAQuantizedModel(let path, let reason): "'\(path)' is not an Octet int8 model file: \(reason)"
    case .unsupportedFormatVersion(let path, let found, let supported):
      "'\(path)' has int8 format version \(found); this Octet reads versions \(supported). Upgrade Octet, or quantize the float model again with this one (`octet quantize`)."
    }
  }
}
