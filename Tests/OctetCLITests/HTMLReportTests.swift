import Foundation
import OctetCore
import OctetImages
import OctetReport
import OctetTestSupport
import Testing

/// A drift report with every optional field, built as JSON (the way the page meets reports written
/// by other versions): `layerCount` layers listed worst first, local SQNR, precisions, checkpoint
/// names, a sensitivity ranking and `flipCount` flipped images. Layer 5 and the first image carry
/// names that are HTML.
enum SyntheticReport {
  static let hostileLayer = "<script>alert(\"x\")</script>&'"
  static let hostileImage = "/data/<img src=x onerror=alert(1)>.jpg"

  static func json(layerCount: Int = 80, flipCount: Int = 60, sensitivityCount: Int = 12) -> [String: Any] {
    var layers: [[String: Any]] = (0..<layerCount).map { i in
      let accumulated: Double = i == 0 ? 200 : 32 - Double(i) * 0.15 + 4 * sin(Double(i))
      let name: String = i == 5 ? hostileLayer : "block.\(i).conv"
      let precision: String = i == 3 ? "a16w16" : i % 10 == 7 ? "a16w8" : "a8w8"
      var layer: [String: Any] = ["name": name, "order": i, "sqnr_db": accumulated, "precision": precision]
      layer["cosine"] = 1 - Double(i) * 1e-4
      layer["local_sqnr_db"] = min(200, accumulated + 9)
      layer["local_cosine"] = 1 - Double(i) * 1e-5
      if i % 2 == 1 { layer["source_tensors"] = ["block.\(i).conv.weight", "block.\(i).bn.weight"] }
      return layer
    }
    layers.sort { ($0["sqnr_db"] as! Double) < ($1["sqnr_db"] as! Double) }
    let sensitivity: [[String: Any]] = (0..<sensitivityCount).map { i in
      let layer: String = i == 0 ? hostileLayer : "block.\(i * 3).conv"
      let agreement: Double = 0.9 + Double(i) * 0.008
      let kl: Double = 0.05 / Double(i + 1)
      return ["layer": layer, "agreement": agreement, "kl": kl, "macs": 1000 * (i + 1)]
    }
    func top3(_ first: Int) -> [[String: Any]] {
      [first, first + 1, first + 2].enumerated().map { k, c in
        ["class": c, "name": "class \(c)", "probability": [0.5, 0.3, 0.1][k]]
      }
    }
    let flips: [[String: Any]] = (0..<flipCount).map { i in
      [
        "image": i == 0 ? hostileImage : "/data/image-\(i).jpg", "label": 10 * i, "float_top3": top3(10 * i),
        "int8_top3": top3(10 * i + 1),
      ]
    }
    return [
      "count": 1300, "float": ["top1": 0.75, "top5": 0.92], "int8": ["top1": 0.74, "top5": 0.92],
      "top1_agreement": 0.98, "layers": layers, "unmatched": [String](), "not_quantized": [String](),
      "sensitivity": sensitivity, "flips": flips, "architecture": "efficientnet-lite0", "backend": "avx512vnni",
      "cpu": "Test CPU <1>", "float_model": "f.safetensors", "int8_model": "q.safetensors",
    ]
  }

  static func report(_ json: [String: Any] = json()) throws -> DriftReport {
    try JSONDecoder().decode(DriftReport.self, from: JSONSerialization.data(withJSONObject: json))
  }
}

/// The elements the page may contain: text, tables and inline SVG, nothing that loads or runs anything.
let allowedHTMLElements: Set<String> = [
  "html", "head", "meta", "title", "style", "body", "h1", "h2", "p", "table", "tr", "th", "td", "b", "br", "i",
  "span", "code", "svg", "rect", "line", "text", "polyline", "circle",
]

/// The start tags of `html`, as (name, whole tag).
func startTags(_ html: String) -> [(name: String, tag: String)] {
  html.matches(of: #/<([a-zA-Z][a-zA-Z0-9]*)[^>]*>/#).map { (String($0.output.1).lowercased(), String($0.output.0)) }
}

@Suite struct HTMLReportTextTests {
  @Test func pageIsSelfContainedAndEscapesEveryName() throws {
    let html = try SyntheticReport.report().html()
    let tags = startTags(html)
    #expect(!tags.isEmpty)
    let unexpected = Set(tags.map(\.name)).subtracting(allowedHTMLElements)
    #expect(unexpected.isEmpty, "elements that may load or run something, or unescaped names: \(unexpected)")
    for (_, tag) in tags {
      // Attribute names and unquoted parts only: escaped names inside quoted values are text.
      let bare = tag.replacing(#/"[^"]*"/#, with: "\"\"").lowercased()
      for attribute in [" src=", " href=", " on", "url(", "javascript:"] {
        #expect(!bare.contains(attribute), "\(tag)")
      }
    }
    for url in ["http:", "https:", "ftp:", "file:", "data:", "//"] {
      #expect(!html.lowercased().contains(url), "a link to outside: \(url)")
    }
    #expect(
      html.contains(
        "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'unsafe-inline'\">"))
    #expect(!html.contains("@import"))
    // The hostile names appear, escaped, and never as they are.
    #expect(!html.contains(SyntheticReport.hostileLayer))
    #expect(html.contains("&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;&amp;&#39;"))
    #expect(html.contains("&lt;img src=x onerror=alert(1)&gt;.jpg"))
    #expect(html.contains("Test CPU &lt;1&gt;"))
  }

  @Test func chartFollowsNetworkOrderWithBothSeriesAndPrecisions() throws {
    let json = SyntheticReport.json()
    let report = try SyntheticReport.report(json)
    let html = report.html()
    // One point per layer per series, in network order (the JSON lists them worst first).
    let expected = report.layers.sorted { $0.order! < $1.order! }.map(\.name)
    #expect(report.layers.map(\.name) != expected, "the fixture should not already be in network order")
    for (colour, series) in [
      (DriftReport.HTMLColour.accumulated, "accumulated"), (DriftReport.HTMLColour.local, "local"),
    ] {
      let pattern = try Regex("<circle [^>]*fill=\"\(colour)\"><title>(.*?): \(series) ")
      let names = html.matches(of: pattern).map { String($0.output[1].substring!) }
      #expect(names == expected.map(escapeForTest), "\(series) series")
      #expect(html.contains("<polyline fill=\"none\" stroke=\"\(colour)\""))
    }
    // The exact layer is at the top edge, and its tooltip says so.
    #expect(html.contains("block.0.conv: accumulated 200 dB (exact)"))
    // Precision bands: one per layer, in its precision's colour.
    for (precision, count) in [("a8w8", 71), ("a16w8", 8), ("a16w16", 1)] {
      let colour = DriftReport.HTMLColour.precision[precision]!
      #expect(html.components(separatedBy: "fill=\"\(colour)\"><title>").count - 1 == count, "\(precision)")
    }
  }

  @Test func sensitivityFlipsAndLayerTablesListWhatTheReportHolds() throws {
    let html = try SyntheticReport.report().html()
    func rows(ofTable name: String) -> Int {
      guard let start = html.range(of: "<table class=\"\(name)\">") else { return -1 }
      let end = html.range(of: "</table>", range: start.upperBound..<html.endIndex)!
      return html[start.upperBound..<end.lowerBound].components(separatedBy: "<tr>").count - 2
    }
    #expect(rows(ofTable: "sensitivity") == 12)
    #expect(rows(ofTable: "flips") == DriftReport.htmlFlipLimit)
    #expect(html.contains("Images whose top-1 flipped (60)"))
    #expect(html.contains("The first 50 of 60"))
    #expect(rows(ofTable: "layers") == 80)
    #expect(html.contains("<th>local SQNR (dB)</th>") && html.contains("<th>precision</th>"))
    #expect(html.contains("block.1.conv.weight, block.1.bn.weight"))
  }

  /// A report from before the optional fields (as `compare --json` wrote it) renders without them.
  @Test func oldReportRendersWithoutOptionalSections() throws {
    var json = SyntheticReport.json(layerCount: 6)
    for key in ["sensitivity", "flips", "architecture", "backend", "cpu", "float_model", "int8_model"] {
      json[key] = nil
    }
    json["layers"] = (json["layers"] as! [[String: Any]]).map { layer in
      layer.filter { ["name", "sqnr_db", "cosine"].contains($0.key) }
    }
    let html = try SyntheticReport.report(json).html()
    #expect(html.contains("<svg id=\"sqnr-chart\""))
    #expect(html.contains("layers worst first"))
    #expect(!html.contains("local SQNR") && !html.contains("Sensitivity") && !html.contains("flipped"))
    #expect(!html.contains(DriftReport.HTMLColour.local))
    #expect(Set(startTags(html).map(\.name)).isSubset(of: allowedHTMLElements))
  }
}

func escapeForTest(_ s: String) -> String {
  s.replacingOccurrences(of: "&", with: "&amp;").replacingOccurrences(of: "<", with: "&lt;")
    .replacingOccurrences(of: ">", with: "&gt;").replacingOccurrences(of: "\"", with: "&quot;")
    .replacingOccurrences(of: "'", with: "&#39;")
}

/// Headless Chromium (Debian's `chromium`, Scripts/setup.sh --tests) renders pages to PNG.
enum Chromium {
  static var installed: Bool {
    let path = ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin"
    return path.split(separator: ":").contains { dir in
      ["chromium", "chromium-browser"].contains { FileManager.default.isExecutableFile(atPath: "\(dir)/\($0)") }
    }
  }
  static let needed = "needs chromium to render HTML (Scripts/setup.sh --tests installs it)"

  /// Renders `page` with Scripts/render_html_report.sh --render-only (1400x2000) and decodes the PNG.
  static func render(_ page: URL) throws -> RGBImage {
    let png = page.deletingPathExtension().appendingPathExtension("png")
    let process = Process()
    process.executableURL = TestData.root.appendingPathComponent("Scripts/render_html_report.sh")
    process.arguments = ["--render-only", page.path, png.path]
    let err = Pipe()
    process.standardError = err
    process.standardOutput = FileHandle.nullDevice
    try process.run()
    let message = String(decoding: err.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
    process.waitUntilExit()
    try #require(process.terminationStatus == 0, "render_html_report.sh failed: \(message)")
    return try ImageDecoder.decode(contentsOf: png)
  }
}

/// What a rendered page must show: a drawn page (many colours), and each colour in `lines` spread
/// across most of the width, as a chart's series is.
func expectDrawnReport(_ image: RGBImage, lines: [String], present: [String] = []) {
  #expect(image.width == 1400 && image.height >= 1000, "\(image.width)x\(image.height)")
  var colours = Set<UInt32>()
  for i in stride(from: 0, to: image.pixels.count, by: 3) {
    colours.insert(UInt32(image.pixels[i]) << 16 | UInt32(image.pixels[i + 1]) << 8 | UInt32(image.pixels[i + 2]))
  }
  #expect(colours.count >= 50, "only \(colours.count) distinct colours: a blank page")
  func rgb(_ hex: String) -> (Int, Int, Int) {
    let v = Int(hex.dropFirst(), radix: 16)!
    return (v >> 16, (v >> 8) & 255, v & 255)
  }
  /// Pixels within 6 of the colour in every channel, and the columns they span.
  func find(_ hex: String) -> (count: Int, minX: Int, maxX: Int) {
    let (r, g, b) = rgb(hex)
    var count = 0
    var minX = Int.max
    var maxX = -1
    image.pixels.withUnsafeBufferPointer { p in
      for i in stride(from: 0, to: p.count, by: 3)
      where abs(Int(p[i]) - r) <= 6 && abs(Int(p[i + 1]) - g) <= 6 && abs(Int(p[i + 2]) - b) <= 6 {
        let x = (i / 3) % image.width
        count += 1
        minX = min(minX, x)
        maxX = max(maxX, x)
      }
    }
    return (count, minX, maxX)
  }
  for hex in lines {
    let found = find(hex)
    let span = found.count == 0 ? 0 : Double(found.maxX - found.minX + 1) / Double(image.width)
    #expect(found.count >= 200 && span >= 0.5, "series \(hex): \(found.count) pixels spanning \(span) of the width")
  }
  // More than the legend's 14x10 swatch of the same colour: the chart or table draws it too.
  for hex in present {
    let count = find(hex).count
    #expect(count >= 250, "colour \(hex): \(count) pixels, not more than its legend swatch")
  }
}

@Suite(.enabled(if: Chromium.installed, Comment(rawValue: Chromium.needed)))
struct HTMLReportRenderingTests {
  /// The synthetic report with every section: both series across the chart, the precision bands and
  /// the sensitivity bars are in the picture.
  @Test func syntheticReportRendersInChromium() throws {
    let dir = try Paths.temporaryDirectory()
    let page = dir.appendingPathComponent("report.html")
    try Data(try SyntheticReport.report().html().utf8).write(to: page)
    let image = try Chromium.render(page)
    expectDrawnReport(
      image, lines: [DriftReport.HTMLColour.accumulated, DriftReport.HTMLColour.local],
      present: [
        DriftReport.HTMLColour.precision["a16w8"]!, DriftReport.HTMLColour.precision["a16w16"]!,
        DriftReport.HTMLColour.sensitivity,
      ])
  }
}

/// `compare --html` through the binary on EfficientNet-Lite0, int8 from min/max ranges of 2 images with
/// the input's range cut to 15 % (bright pixels clip), so that some top-1 classes flip.
@Suite(.enabled(if: TestData.hasLite0AndImages, Comment(rawValue: TestData.needsLite0AndImages)))
struct CompareHTMLTests {
  struct Run: Sendable {
    var html: URL
    var jsonData: Data
    var json: [String: Any] { try! JSONSerialization.jsonObject(with: jsonData) as! [String: Any] }
  }

  static let compared: Result<Run, Error> = Result {
    let files = try Lite0Files.get()
    let dir = try Paths.temporaryDirectory()
    var table = try JSONSerialization.jsonObject(with: Data(contentsOf: files.ranges)) as! [String: Any]
    table["tensors"] = (table["tensors"] as! [[String: Any]]).map { tensor in
      guard tensor["name"] as? String == "input" else { return tensor }
      var clipped = tensor
      clipped["min"] = (tensor["min"] as! Double) * 0.15
      clipped["max"] = (tensor["max"] as! Double) * 0.15
      return clipped
    }
    let ranges = dir.appendingPathComponent("clipped-ranges.json")
    try JSONSerialization.data(withJSONObject: table).write(to: ranges)
    let int8 = dir.appendingPathComponent("clipped-int8.safetensors")
    let html = dir.appendingPathComponent("report.html")
    let json = dir.appendingPathComponent("report.json")
    for step in [
      ["quantize", files.float.path, "--ranges", ranges.path, "-o", int8.path],
      [
        "compare", files.float.path, int8.path, "--images", Paths.valImages.path, "--limit", "12", "--json",
        json.path, "--html", html.path,
      ],
    ] {
      let result = try OctetProcess.run(step)
      guard result.status == 0 else { throw FileError(path: step[0], reason: result.stderr) }
    }
    return Run(html: html, jsonData: try Data(contentsOf: json))
  }

  @Test func flipsAreTheDisagreementsWithTheirTop3() throws {
    let run = try Self.compared.get()
    let count = try #require(run.json["count"] as? Int)
    let agreement = try #require(run.json["top1_agreement"] as? Double)
    let flips = try #require(run.json["flips"] as? [[String: Any]])
    #expect(!flips.isEmpty, "the clipped input should flip some of \(count) images")
    #expect(flips.count == Int(((1 - agreement) * Double(count)).rounded()), "one flip per disagreeing image")
    for flip in flips {
      let float = try #require(flip["float_top3"] as? [[String: Any]])
      let int8 = try #require(flip["int8_top3"] as? [[String: Any]])
      #expect(float.count == 3 && int8.count == 3)
      #expect(float[0]["class"] as? Int != int8[0]["class"] as? Int, "\(flip)")
      for top3 in [float, int8] {
        let p = top3.compactMap { $0["probability"] as? Double }
        #expect(p.count == 3 && p == p.sorted(by: >) && p.allSatisfy { $0 > 0 && $0 <= 1 }, "\(p)")
        #expect(top3.allSatisfy { ($0["name"] as? String)?.isEmpty == false })
      }
      #expect(FileManager.default.fileExists(atPath: try #require(flip["image"] as? String)))
    }
    let layers = try #require(run.json["layers"] as? [[String: Any]])
    #expect(Set(layers.compactMap { $0["order"] as? Int }).count == layers.count, "every layer has its own order")
    #expect(run.json["backend"] as? String != nil && run.json["architecture"] as? String == "efficientnet-lite0")

    let html = try String(contentsOf: run.html, encoding: .utf8)
    #expect(html.contains("<tr><th>Images compared</th><td>\(count)</td></tr>"))
    #expect(html.contains("Images whose top-1 flipped (\(flips.count))"))
    #expect(Set(startTags(html).map(\.name)).isSubset(of: allowedHTMLElements))
  }

  /// A comparison that fails after loading the models (no image could be decoded) writes no page.
  @Test func failedComparisonWritesNoPage() throws {
    let files = try Lite0Files.get()
    let dir = try Paths.temporaryDirectory()
    try Data("not an image\n".utf8).write(to: dir.appendingPathComponent("text.JPEG"))
    try Data("text.JPEG\t1\n".utf8).write(to: dir.appendingPathComponent("labels.tsv"))
    let page = dir.appendingPathComponent("report.html")
    let result = try OctetProcess.run([
      "compare", files.float.path, files.int8.path, "--images", dir.path, "--html", page.path,
    ])
    expectCleanFailure(result, mentions: ["none of its 1 images could be decoded"], noFile: page)
    let leftovers = try FileManager.default.contentsOfDirectory(atPath: dir.path).filter { $0.contains("report") }
    #expect(leftovers.isEmpty, "\(leftovers)")
  }

  @Test(.enabled(if: Chromium.installed, Comment(rawValue: Chromium.needed)))
  func reportRendersInChromium() throws {
    let run = try Self.compared.get()
    expectDrawnReport(try Chromium.render(run.html), lines: [DriftReport.HTMLColour.accumulated])
  }
}

@Suite struct CompareHTMLPathTests {
  /// Checked before any model is read: a missing directory, or a directory where the page should go.
  @Test func badHTMLPathIsOneClearLine() throws {
    let dir = try Paths.temporaryDirectory()
    let missing = dir.appendingPathComponent("no-such-dir/report.html")
    let result = try OctetProcess.run([
      "compare", "f.safetensors", "q.safetensors", "--images", dir.path, "--html", missing.path,
    ])
    expectCleanFailure(result, mentions: ["--html '\(missing.path)'", "does not exist"], noFile: missing)
    #expect(result.stderr.split(separator: "\n").count <= 3, "\(result.stderr)")
    let directory = try OctetProcess.run([
      "compare", "f.safetensors", "q.safetensors", "--images", dir.path, "--html", dir.path,
    ])
    expectCleanFailure(directory, mentions: ["--html '\(dir.path)' is a directory"])
  }
}
