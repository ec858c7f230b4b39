import Foundation
import OctetTestSupport
import Testing

@testable import Octet

@Suite struct ClassNamesTests {
  @Test func embeddedListMatchesModelsFolder() throws {
    let tsv = try String(contentsOf: TestData.root.appendingPathComponent("Models/imagenet-classes.tsv"), encoding: .utf8)
    #expect(ClassNames.imagenetTSV == tsv, "run Scripts/generate_class_list.py")
    #expect(ClassNames.imagenet.count == 1000)
    #expect(ClassNames.imagenet[0] == "tench")
    #expect(ClassNames.name(472, classes: 1000) == ClassNames.imagenet[472])
    #expect(ClassNames.name(5, classes: 10) == "class 5")
  }

  @Test func topIndicesBreakTiesTowardTheLowerIndex() {
    #expect(Classifier.topIndices(3, of: [0.1, 0.9, 0.5, 0.9]) == [1, 3, 2])
    let top = Classifier.top(2, of: [0, Float(log(3.0))], classes: 2)
    #expect(top.map(\.index) == [1, 0])
    #expect(abs(top[0].probability - 0.75) < 1e-6)
  }
}
