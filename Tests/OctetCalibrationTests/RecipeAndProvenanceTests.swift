import Foundation
import OctetCore
import OctetTestSupport
import Testing

@testable import OctetCalibration

/// Calibration recipes are told apart from range tables both ways, and range tables record (and
/// read back, or do without) the images they were calibrated on.
@Suite struct RecipeAndProvenanceTests {
  static let digest = String(repeating: "0123456789abcdef", count: 4)

  static func table(images: [RangeTable.CalibrationImage]?) -> RangeTable {
    RangeTable(
      model: .init(architecture: "efficientnet-lite0"), method: "mse", images: images?.count ?? 3,
      tensors: [.init(name: "input", min: -1, max: 1, observedMin: -1, observedMax: 1)], calibrationImages: images)
  }

  @Test func calibrationImagesRoundTripOneALine() throws {
    let images = [
      RangeTable.CalibrationImage(file: "a.JPEG", sha256: Self.digest),
      RangeTable.CalibrationImage(file: "b \"q\".png", sha256: String(Self.digest.reversed())),
    ]
    let table = Self.table(images: images)
    let text = table.encoded()
    #expect(
      text.contains("\n  \"calibration_images\": [\n    {\"file\": \"a.JPEG\", \"sha256\": \"\(Self.digest)\"},\n"))
    let back = try RangeTable.decode(Data(text.utf8))
    #expect(back == table)
    #expect(back.calibrationImages == images)
  }

  @Test func aTableWithoutCalibrationImagesStillReads() throws {
    let table = Self.table(images: nil)
    let text = table.encoded()
    #expect(!text.contains("calibration_images"))
    #expect(try RangeTable.decode(Data(text.utf8)).calibrationImages == nil)
  }

  @Test func aBadDigestIsNamed() throws {
    let table = Self.table(images: [.init(file: "a.JPEG", sha256: "ABC")])
    #expect(
      throws: CalibrationError.badTable(
        path: "t.json", reason: "calibration_images[0] 'a.JPEG': sha256 is not 64 lowercase hex digits")
    ) { try RangeTable.decode(Data(table.encoded().utf8), path: "t.json") }
  }

  @Test func theShippedRecipesReadAsRecipesAndNotAsTables() throws {
    let url = TestData.root.appendingPathComponent("Calibration/efficientnet-lite0.json")
    let recipe = try CalibrationRecipe.read(contentsOf: url)
    #expect(recipe.architecture == "efficientnet-lite0")
    #expect(recipe.method == .mse)
    #expect(recipe.images == 500)
    #expect(recipe.folder == ".cache/data/calibration")
    let data = try Data(contentsOf: url)
    #expect(throws: CalibrationError.recipeGivenAsTable(path: "r.json")) { try RangeTable.decode(data, path: "r.json") }
    // A recipe as it was before it had a "format" is recognised too.
    let old = Data(#"{"architecture": "resnet50", "method": "mse", "images": 500}"#.utf8)
    #expect(throws: CalibrationError.recipeGivenAsTable(path: "old.json")) {
      try RangeTable.decode(old, path: "old.json")
    }
    #expect(
      CalibrationError.recipeGivenAsTable(path: "r.json").description
        == "'r.json' is a calibration recipe, not a range table: run `octet calibrate MODEL --recipe r.json --images DIR -o RANGES` to make one"
    )
  }

  @Test func aTableIsNotARecipeAndABadRecipeIsNamed() throws {
    let table = Data(Self.table(images: nil).encoded().utf8)
    #expect(throws: CalibrationError.tableGivenAsRecipe(path: "t.json")) {
      try CalibrationRecipe.decode(table, path: "t.json")
    }
    let badMethod = Data(
      #"{"format": "octet-calibration-recipe", "architecture": "x", "method": "median", "images": 5}"#.utf8)
    #expect(
      throws: CalibrationError.badRecipe(path: "b.json", reason: "\"method\": \(CalibrationError.badMethod("median"))")
    ) {
      try CalibrationRecipe.decode(badMethod, path: "b.json")
    }
    let noFormat = Data(#"{"architecture": "x", "method": "mse", "images": 5}"#.utf8)
    #expect(
      throws: CalibrationError.badRecipe(
        path: "n.json", reason: "has no \"format\"; expected \"octet-calibration-recipe\"")
    ) {
      try CalibrationRecipe.decode(noFormat, path: "n.json")
    }
  }
}
