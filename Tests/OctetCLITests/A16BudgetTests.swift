import Foundation
import Octet
import OctetTestSupport
import Testing

/// `octet quantize --images DIR --a16-budget F` (docs/quantization.md §17, cli.md): the sensitivity
/// ranking picks the 16-bit layers within F of the multiply-adds; bad budgets are one line.
@Suite(
  .enabled(
    if: TestData.lite0 != nil && TestData.hasCalibrationImages, "needs EfficientNet-Lite0 and the calibration images"))
struct A16BudgetTests {
  @Test func budgetOutsideTheUnitIntervalOrWithoutImagesIsRefused() throws {
    let files = try Lite0Files.get()
    let out = try Paths.temporaryDirectory().appendingPathComponent("m.safetensors")
    for budget in ["1.5", "-0.1"] {
      let result = try OctetProcess.run([
        "quantize", files.float.path, "--images", TestData.calibrationImages.path, "--a16-budget=\(budget)", "-o",
        out.path,
      ])
      expectCleanFailure(result, mentions: ["--a16-budget \(Double(budget)!) is outside [0, 1]"], noFile: out)
    }
    let ranges = try OctetProcess.run([
      "quantize", files.float.path, "--ranges", files.ranges.path, "--a16-budget", "0.1", "-o", out.path,
    ])
    expectCleanFailure(ranges, mentions: ["--a16-budget ranks layers on calibration images"], noFile: out)
  }

  /// The chosen layers are 16-bit, their multiply-adds stay within the budget, and budget 0 takes none.
  @Test(arguments: [0.0, 0.1])
  func budgetBoundsTheSixteenBitMultiplyAdds(budget: Double) throws {
    let files = try Lite0Files.get()
    let out = files.dir.appendingPathComponent("budget-\(UUID().uuidString).safetensors")
    let result = try OctetProcess.run([
      "quantize", files.float.path, "--images", TestData.calibrationImages.path, "--limit", "2", "--method", "minmax",
      "--a16-budget", "\(budget)", "--sensitivity-images", "2", "--bias-correction", "-o", out.path,
    ])
    #expect(result.status == 0, "\(result.stderr)")
    let model = try QuantizedModelFile.read(contentsOf: out)
    // Every 16-bit node (16-bit input, output or weights), the twins included: their work is 16-bit too.
    let wide = model.nodes.filter(\.isWide)
    let macs = try LayerCost.macs(of: model)
    let total = model.nodes.filter { !MixedPrecision.isTwin($0.name) }.reduce(0) { $0 + (macs[$1.name] ?? 0) }
    let used = wide.reduce(0) { sum, n in
      sum + (macs[n.name] ?? macs[String(n.name.dropLast(MixedPrecision.twinSuffix.count))] ?? 0)
    }
    #expect(Double(used) <= budget * Double(total))
    #expect(budget == 0 ? wide.isEmpty : !wide.isEmpty, "\(result.stderr)")
    let options = try #require(QuantizationRecipe.of(model)?.options)
    let choices = options.a16Layers.count + options.w16Layers.count
    #expect(result.stderr.contains("--a16-budget \(budget): \(choices) choice(s) at 16 bits"), "\(result.stderr)")
    // The 16-bit layers come on top of the data-driven passes (§17.1).
    #expect(model.recipe?.contains("\"passes\":[\"bias_correction\"]") == true, "\(model.recipe ?? "no recipe")")
  }
}
