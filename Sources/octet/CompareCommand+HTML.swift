import ArgumentParser
import Foundation
import Octet
import OctetReport

extension CompareCommand {
  /// A directory where the page should go would fail only after the whole comparison.
  func validateHTMLPath() throws {
    var isDirectory: ObjCBool = false
    if let html, FileManager.default.fileExists(atPath: html, isDirectory: &isDirectory), isDirectory.boolValue {
      throw ValidationError("--html '\(html)' is a directory; give the path of the page to write, e.g. report.html")
    }
  }

  /// Records what was compared and where, for the report's summary.
  func describeRun(_ drift: inout DriftReport) {
    drift.float_model = floatModel
    drift.int8_model = quantizedModel
    drift.cpu = CPUInfo.modelName
  }

  /// `--html`: the page, whole or not at all.
  func writeHTML(_ drift: DriftReport, to path: String) throws {
    try AtomicFile.write(Array(drift.html().utf8), to: URL(fileURLWithPath: path))
  }
}
