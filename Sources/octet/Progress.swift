import Foundation

/// A one-line progress bar on standard error, drawn only when standard error is a terminal.
struct ProgressBar {
  let total: Int
  let label: String
  let enabled = isatty(2) == 1
  let start = Date()
  var lastDraw = Date.distantPast

  init(total: Int, label: String) {
    self.total = total
    self.label = label
  }

  mutating func update(_ done: Int, detail: String = "") {
    guard enabled else { return }
    let now = Date()
    guard done == total || now.timeIntervalSince(lastDraw) > 0.1 else { return }
    lastDraw = now
    let width = 30
    let filled = total > 0 ? width * done / total : width
    let elapsed = now.timeIntervalSince(start)
    let rate = elapsed > 0 ? Double(done) / elapsed : 0
    let eta = rate > 0 ? Double(total - done) / rate : 0
    let bar = String(repeating: "#", count: filled) + String(repeating: ".", count: width - filled)
    let line = String(format: "\r%@ [%@] %d/%d  %.1f/s  eta %.0fs  %@", label, bar, done, total, rate, eta, detail)
    FileHandle.standardError.write(Data(line.utf8))
  }

  func finish() {
    guard enabled else { return }
    FileHandle.standardError.write(Data("\n".utf8))
  }
}
