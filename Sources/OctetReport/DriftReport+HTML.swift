import Foundation
import Octet

/// `octet compare --html`: the drift report as one self-contained HTML page. Charts are inline SVG
/// (hovering a point shows its `<title>`), styles are inline, and there is no script, font, image or
/// link to fetch, so the file reads offline and the same in every browser.
extension DriftReport {
  /// Most flipped images listed in the page (the JSON has them all).
  public static let htmlFlipLimit = 50

  /// Colours of the page, named so that a rendering check can look for them.
  public enum HTMLColour {
    /// The accumulated SQNR series (line and points).
    public static let accumulated = "#1f5fbf"
    /// The local SQNR series.
    public static let local = "#e8590c"
    /// Sensitivity bars.
    public static let sensitivity = "#c2255c"
    /// Precision bands under the chart, by precision.
    public static let precision: [String: String] = ["a8w8": "#adb5bd", "a16w8": "#2f9e44", "a16w16": "#7048e8"]
  }

  /// The page: summary, per-layer SQNR chart in network order (accumulated, and local when present,
  /// each layer's precision as a band under it), sensitivity ranking, the layer table and the images
  /// whose top-1 flipped. Every string from the report is escaped.
  public func html() -> String {
    var page = HTMLPage()
    let title = "Octet drift report" + (architecture.map { ": \($0)" } ?? "")
    page.line("<!DOCTYPE html>")
    page.line("<html lang=\"en\"><head><meta charset=\"utf-8\">")
    // The page loads and runs nothing, and says so to the browser: a name that slipped past escaping
    // still could not run a script or fetch anything.
    page.line(
      "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'unsafe-inline'\">")
    page.line("<title>\(escapeHTML(title))</title>")
    page.line("<style>\(Self.htmlStyle)</style>")
    page.line("</head><body>")
    page.line("<h1>\(escapeHTML(title))</h1>")
    htmlSummary(&page)
    htmlLayerChart(&page)
    htmlSensitivity(&page)
    htmlFlips(&page)
    htmlLayerTable(&page)
    page.line(
      "<p class=\"note\">Written by <code>octet compare --html</code>; the JSON (<code>--json</code>) holds the same data.</p>"
    )
    page.line("</body></html>")
    return page.text
  }

  static let htmlStyle = """
    body{font:14px/1.4 system-ui,sans-serif;margin:24px;color:#212529;background:#fff}\
    h1{font-size:22px;margin:0 0 12px}h2{font-size:17px;margin:28px 0 8px}\
    table{border-collapse:collapse}td,th{padding:2px 10px;text-align:left;border-bottom:1px solid #dee2e6}\
    th{background:#f1f3f5}td.n{text-align:right;font-variant-numeric:tabular-nums}\
    .note{color:#495057}.legend span{display:inline-block;margin-right:18px}\
    .swatch{display:inline-block;width:14px;height:10px;margin-right:4px;vertical-align:middle}\
    svg text{font:11px system-ui,sans-serif;fill:#495057}
    """

  // MARK: Summary

  func htmlSummary(_ page: inout HTMLPage) {
    func percent(_ value: Double) -> String { String(format: "%.2f %%", value * 100) }
    var rows: [(String, String)] = [
      ("Images compared", "\(count)"),
      ("Float top-1 / top-5", "\(percent(float.top1)) / \(percent(float.top5))"),
      ("Int8 top-1 / top-5", "\(percent(int8.top1)) / \(percent(int8.top5))"),
      ("Top-1 drift (int8 − float)", String(format: "%+.2f points", (int8.top1 - float.top1) * 100)),
      ("Top-1 agreement", percent(top1_agreement)),
    ]
    if let flips { rows.append(("Images whose top-1 flipped", "\(flips.count)")) }
    for (label, value) in [
      ("Architecture", architecture), ("Int8 kernels (backend)", backend), ("CPU", cpu), ("Float model", float_model),
      ("Int8 model", int8_model),
    ] {
      if let value { rows.append((label, value)) }
    }
    rows.append(("Operators left in float", not_quantized.isEmpty ? "none" : not_quantized.joined(separator: ", ")))
    if !unmatched.isEmpty { rows.append(("Int8 tensors without a float one", unmatched.joined(separator: ", "))) }
    page.line("<table class=\"summary\">")
    for (label, value) in rows { page.line("<tr><th>\(escapeHTML(label))</th><td>\(escapeHTML(value))</td></tr>") }
    page.line("</table>")
  }

  // MARK: Per-layer chart

  /// Layers in network order when every layer has its `order`; else in the report's order (worst first).
  var layersInNetworkOrder: (layers: [Layer], networkOrder: Bool) {
    let ordered = layers.allSatisfy { $0.order != nil }
    return (ordered ? layers.sorted { $0.order! < $1.order! } : layers, ordered)
  }

  func htmlLayerChart(_ page: inout HTMLPage) {
    let (chartLayers, networkOrder) = layersInNetworkOrder
    page.line("<h2>Per-layer SQNR (dB, higher is better)</h2>")
    guard !chartLayers.isEmpty else {
      page.line("<p class=\"note\">No layer was compared.</p>")
      return
    }
    let hasLocal = chartLayers.contains { $0.local_sqnr_db != nil }
    let hasPrecision = chartLayers.contains { $0.precision != nil }
    page.line(
      "<p class=\"note\">"
        + (networkOrder
          ? "Layers in network order, input first. "
          : "The report does not record network order: layers worst first. ")
        + "Accumulated: the int8 network's activation against the float one. "
        + (hasLocal ? "Local: the int8 layer fed the float values of its own inputs. " : "")
        + "An exact match is 200 dB and drawn at the top edge. Hover a point for the layer.</p>")
    var legend = [
      "<span><i class=\"swatch\" style=\"background:\(HTMLColour.accumulated)\"></i>accumulated SQNR</span>"
    ]
    if hasLocal {
      legend.append("<span><i class=\"swatch\" style=\"background:\(HTMLColour.local)\"></i>local SQNR</span>")
    }
    if hasPrecision {
      for precision in ["a8w8", "a16w8", "a16w16"] {
        legend.append(
          "<span><i class=\"swatch\" style=\"background:\(HTMLColour.precision[precision]!)\"></i>\(precision)</span>")
      }
    }
    page.line("<p class=\"legend\">\(legend.joined())</p>")

    // Geometry (SVG user units; the SVG scales to the page width).
    let width = 1300.0
    let height = 420.0
    let left = 52.0
    let right = 12.0
    let top = 12.0
    let bottom = hasPrecision ? 58.0 : 40.0
    let plotWidth = width - left - right
    let plotHeight = height - top - bottom
    // The y range covers every value below the 200 dB "exact" mark, in steps of 10 dB.
    let values = chartLayers.flatMap { [$0.sqnr_db] + ($0.local_sqnr_db.map { [$0] } ?? []) }.filter(\.isFinite)
    let measured = values.filter { $0 < 199.999 }
    let yMax = max(10, ((measured.max() ?? 10) / 10).rounded(.up) * 10)
    let yMin = min(0, ((measured.min() ?? 0) / 10).rounded(.down) * 10)
    let n = chartLayers.count
    let step = plotWidth / Double(n)
    func x(_ i: Int) -> Double { left + step * (Double(i) + 0.5) }
    func y(_ value: Double) -> Double {
      let clamped = value.isFinite ? min(max(value, yMin), yMax) : yMin
      return top + plotHeight * (yMax - clamped) / (yMax - yMin)
    }
    func f(_ v: Double) -> String { String(format: "%.1f", v) }

    page.line(
      "<svg id=\"sqnr-chart\" viewBox=\"0 0 \(f(width)) \(f(height))\" width=\"100%\" role=\"img\" aria-label=\"per-layer SQNR\">"
    )
    page.line("<rect x=\"0\" y=\"0\" width=\"\(f(width))\" height=\"\(f(height))\" fill=\"#ffffff\"/>")
    // Horizontal grid every 10 dB, labelled.
    var tick = yMin
    let tickStep = (yMax - yMin) > 100 ? 20.0 : 10.0
    while tick <= yMax + 1e-9 {
      page.line(
        "<line x1=\"\(f(left))\" y1=\"\(f(y(tick)))\" x2=\"\(f(width - right))\" y2=\"\(f(y(tick)))\" stroke=\"#e9ecef\"/>"
          + "<text x=\"\(f(left - 6))\" y=\"\(f(y(tick) + 4))\" text-anchor=\"end\">\(Int(tick))</text>")
      tick += tickStep
    }
    page.line(
      "<line x1=\"\(f(left))\" y1=\"\(f(top))\" x2=\"\(f(left))\" y2=\"\(f(top + plotHeight))\" stroke=\"#868e96\"/>")
    page.line(
      "<text x=\"14\" y=\"\(f(top + plotHeight / 2))\" transform=\"rotate(-90 14 \(f(top + plotHeight / 2)))\" text-anchor=\"middle\">SQNR (dB)</text>"
    )
    // Layer index ticks along x.
    let labelEvery = max(1, Int((Double(n) / 25).rounded(.up)))
    for i in stride(from: 0, to: n, by: labelEvery) {
      page.line("<text x=\"\(f(x(i)))\" y=\"\(f(top + plotHeight + 16))\" text-anchor=\"middle\">\(i)</text>")
    }
    page.line(
      "<text x=\"\(f(left + plotWidth / 2))\" y=\"\(f(height - 4))\" text-anchor=\"middle\">layer (\(networkOrder ? "network order" : "worst first"), \(n) layers)</text>"
    )
    // Precision band.
    if hasPrecision {
      for (i, layer) in chartLayers.enumerated() {
        let colour = HTMLColour.precision[layer.precision ?? "a8w8"] ?? "#000000"
        page.line(
          "<rect x=\"\(f(x(i) - step / 2))\" y=\"\(f(top + plotHeight + 22))\" width=\"\(f(step))\" height=\"10\" fill=\"\(colour)\"><title>\(escapeHTML(layer.name)): \(escapeHTML(layer.precision ?? "not recorded"))</title></rect>"
        )
      }
    }
    // A hover target per layer column with every value of the layer.
    for (i, layer) in chartLayers.enumerated() {
      page.line(
        "<rect x=\"\(f(x(i) - step / 2))\" y=\"\(f(top))\" width=\"\(f(step))\" height=\"\(f(plotHeight))\" fill=\"transparent\"><title>\(escapeHTML(Self.htmlTooltip(layer, position: i)))</title></rect>"
      )
    }
    func series(_ value: (Layer) -> Double?, colour: String, name: String) {
      let points = chartLayers.enumerated().compactMap { i, layer in value(layer).map { (i, $0, layer) } }
      page.line(
        "<polyline fill=\"none\" stroke=\"\(colour)\" stroke-width=\"2\" points=\"\(points.map { "\(f(x($0.0))),\(f(y($0.1)))" }.joined(separator: " "))\"/>"
      )
      for (i, v, layer) in points {
        page.line(
          "<circle cx=\"\(f(x(i)))\" cy=\"\(f(y(v)))\" r=\"3.5\" fill=\"\(colour)\"><title>\(escapeHTML("\(layer.name): \(name) \(Self.decibels(v))"))</title></circle>"
        )
      }
    }
    series(\.sqnr_db, colour: HTMLColour.accumulated, name: "accumulated")
    if hasLocal { series(\.local_sqnr_db, colour: HTMLColour.local, name: "local") }
    page.line("</svg>")
  }

  static func decibels(_ value: Double) -> String {
    value >= 199.999 ? "200 dB (exact)" : String(format: "%.2f dB", value)
  }

  static func htmlTooltip(_ layer: Layer, position: Int) -> String {
    var lines = [
      "#\(layer.order ?? position) \(layer.name)",
      "accumulated: \(decibels(layer.sqnr_db)), cosine \(String(format: "%.6f", layer.cosine))",
    ]
    if let local = layer.local_sqnr_db {
      lines.append(
        "local: \(decibels(local))" + (layer.local_cosine.map { String(format: ", cosine %.6f", $0) } ?? ""))
    }
    if let precision = layer.precision { lines.append("precision: \(precision)") }
    if let sources = layer.source_tensors, !sources.isEmpty {
      lines.append("checkpoint tensors: \(sources.joined(separator: ", "))")
    }
    return lines.joined(separator: "\n")
  }

  // MARK: Sensitivity

  func htmlSensitivity(_ page: inout HTMLPage) {
    guard let sensitivity else { return }
    page.line("<h2>Sensitivity: each layer quantized alone</h2>")
    guard !sensitivity.isEmpty else {
      page.line("<p class=\"note\">The ranking is empty.</p>")
      return
    }
    page.line(
      "<p class=\"note\">Most sensitive first. Bar: top-1 disagreement with float (100 % − agreement) when only that layer runs in int8; KL: mean KL(float softmax ‖ that run's softmax).</p>"
    )
    let worst = max(sensitivity.map { 1 - $0.agreement }.max() ?? 0, 1e-9)
    page.line(
      "<table class=\"sensitivity\"><tr><th>#</th><th>layer</th><th>disagreement</th><th></th><th>agreement</th><th>KL</th><th>MACs per image</th></tr>"
    )
    for (rank, entry) in sensitivity.enumerated() {
      let disagreement = max(0, 1 - entry.agreement)
      let bar = Int((disagreement / worst * 240).rounded())
      page.line(
        "<tr><td class=\"n\">\(rank + 1)</td><td>\(escapeHTML(entry.layer))</td><td class=\"n\">\(String(format: "%.2f %%", disagreement * 100))</td>"
          + "<td><svg width=\"244\" height=\"12\"><rect x=\"0\" y=\"1\" width=\"\(bar)\" height=\"10\" fill=\"\(HTMLColour.sensitivity)\"/></svg></td>"
          + "<td class=\"n\">\(String(format: "%.2f %%", entry.agreement * 100))</td><td class=\"n\">\(String(format: "%.5f", entry.kl))</td>"
          + "<td class=\"n\">\(entry.macs)</td></tr>")
    }
    page.line("</table>")
  }

  // MARK: Flips

  func htmlFlips(_ page: inout HTMLPage) {
    guard let flips else { return }
    page.line("<h2>Images whose top-1 flipped (\(flips.count))</h2>")
    guard !flips.isEmpty else {
      page.line("<p class=\"note\">On every image, int8's top-1 class is float's.</p>")
      return
    }
    if flips.count > Self.htmlFlipLimit {
      page.line(
        "<p class=\"note\">The first \(Self.htmlFlipLimit) of \(flips.count), in labels.tsv order; the JSON lists them all.</p>"
      )
    }
    func top3(_ predictions: [Flip.Prediction], label: Int) -> String {
      predictions.map { p in
        let text = escapeHTML("\(p.name) (\(p.class)) \(String(format: "%.1f %%", p.probability * 100))")
        return p.class == label ? "<b>\(text)</b>" : text
      }.joined(separator: "<br>")
    }
    page.line("<table class=\"flips\"><tr><th>image</th><th>label</th><th>float top-3</th><th>int8 top-3</th></tr>")
    for flip in flips.prefix(Self.htmlFlipLimit) {
      let file = URL(fileURLWithPath: flip.image).lastPathComponent
      let predictions = flip.float_top3 + flip.int8_top3
      // The label's name: ImageNet's when the predictions are named from it, else a prediction's.
      let imageNet = predictions.allSatisfy { $0.name == ClassNames.name($0.class) }
      let labelName =
        imageNet ? ClassNames.name(flip.label) : predictions.first { $0.class == flip.label }?.name
      page.line(
        "<tr><td title=\"\(escapeHTML(flip.image))\">\(escapeHTML(file))</td><td>\(flip.label)\(labelName.map { " " + escapeHTML($0) } ?? "")</td>"
          + "<td>\(top3(flip.float_top3, label: flip.label))</td><td>\(top3(flip.int8_top3, label: flip.label))</td></tr>"
      )
    }
    page.line("</table>")
    page.line("<p class=\"note\">Bold: the labelled class.</p>")
  }

  // MARK: Layer table

  func htmlLayerTable(_ page: inout HTMLPage) {
    let (tableLayers, networkOrder) = layersInNetworkOrder
    guard !tableLayers.isEmpty else { return }
    let hasLocal = tableLayers.contains { $0.local_sqnr_db != nil || $0.local_cosine != nil }
    let hasPrecision = tableLayers.contains { $0.precision != nil }
    let hasSources = tableLayers.contains { $0.source_tensors != nil }
    page.line("<h2>Layers (\(networkOrder ? "network order" : "worst first"))</h2>")
    var header = ["#", "layer", "SQNR (dB)", "cosine"]
    if hasLocal { header += ["local SQNR (dB)", "local cosine"] }
    if hasPrecision { header.append("precision") }
    if hasSources { header.append("checkpoint tensors") }
    page.line("<table class=\"layers\"><tr>\(header.map { "<th>\($0)</th>" }.joined())</tr>")
    for (i, layer) in tableLayers.enumerated() {
      var cells = [
        "<td class=\"n\">\(layer.order ?? i)</td>", "<td>\(escapeHTML(layer.name))</td>",
        "<td class=\"n\">\(String(format: "%.2f", layer.sqnr_db))</td>",
        "<td class=\"n\">\(String(format: "%.6f", layer.cosine))</td>",
      ]
      if hasLocal {
        cells.append("<td class=\"n\">\(layer.local_sqnr_db.map { String(format: "%.2f", $0) } ?? "")</td>")
        cells.append("<td class=\"n\">\(layer.local_cosine.map { String(format: "%.6f", $0) } ?? "")</td>")
      }
      if hasPrecision { cells.append("<td>\(escapeHTML(layer.precision ?? ""))</td>") }
      if hasSources { cells.append("<td>\(escapeHTML((layer.source_tensors ?? []).joined(separator: ", ")))</td>") }
      page.line("<tr>\(cells.joined())</tr>")
    }
    page.line("</table>")
  }
}

/// The page being written, line by line.
struct HTMLPage {
  var text = ""
  mutating func line(_ s: String) {
    text += s
    text += "\n"
  }
}

/// `s` as HTML text or a quoted attribute value: the five characters with a meaning in HTML become
/// character references.
func escapeHTML(_ s: String) -> String {
  var out = ""
  out.reserveCapacity(s.utf8.count)
  for c in s.unicodeScalars {
    switch c {
    case "&": out += "&amp;"
    case "<": out += "&lt;"
    case ">": out += "&gt;"
    case "\"": out += "&quot;"
    case "'": out += "&#39;"
    default: out.unicodeScalars.append(c)
    }
  }
  return out
}
