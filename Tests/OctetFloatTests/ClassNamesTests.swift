import Foundation
import OctetTestSupport
import Testing

@testable import Octet

@Suite struct ClassNamesTests {
  @Test func embeddedListMatchesModelsFolder() throws {
    let tsv = try String(
      contentsOf: TestData.root.appendingPathComponent("Models/imagenet-classes.tsv"), encoding: .utf8)
    #expect(ClassNames.imagenetTSV == tsv, "the list compiled in (Sources/CImageNetClasses) is not the TSV")
    #expect(ClassNames.imagenet.count == 1000)
    #expect(ClassNames.imagenet[0] == "tench")
    #expect(ClassNames.name(472, classes: 1000) == ClassNames.imagenet[472])
    #expect(ClassNames.name(5, classes: 10) == "class 5")
  }

  static let sharedList = TestData.data.appendingPathComponent("imagenet-classes.tsv")

  /// The team's copy in ../shared/data is the same list (index, synset, name), so labels.tsv files
  /// written against either agree.
  @Test(
    .enabled(
      if: FileManager.default.fileExists(atPath: sharedList.path), "needs ../shared/data/imagenet-classes.tsv"))
  func embeddedListMatchesSharedData() throws {
    #expect(ClassNames.imagenetTSV == (try String(contentsOf: Self.sharedList, encoding: .utf8)))
  }

  @Test func topIndicesBreakTiesTowardTheLowerIndex() {
    #expect(Classifier.topIndices(3, of: [0.1, 0.9, 0.5, 0.9]) == [1, 3, 2])
    let top = Classifier.top(2, of: [0, Float(log(3.0))], classes: 2)
    #expect(top.map(\.index) == [1, 0])
    #expect(abs(top[0].probability - 0.75) < 1e-6)
  }
}
