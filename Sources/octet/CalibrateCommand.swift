import ArgumentParser
import Foundation
import Octet
import OctetCalibration
import Synchronization

struct CalibrateCommand: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "calibrate",
    abstract: "Run the float model over calibration images and write the activation ranges (a range table).",
    discussion: """
      Every quantized tensor (the input, every layer output, the convolution output before each \
      residual add) gets a range [min, max] chosen by --method and widened to include 0. Images that \
      cannot be decoded are skipped with a warning naming them; calibration stops when more than half \
      fail. With --recipe (Calibration/*.json), the recipe's method, image count and folder are the \
      defaults of --method, --limit and --images; those given on the command line override them. The table \
      records each image's file name and SHA-256, so that `octet compare` can warn when it is run on \
      calibration images. See Calibration/README.md for the recipes and how to build a calibration set.
      """)

  @Argument(help: "The float model: an Octet model file, or a checkpoint imported on the fly.")
  var model: String

  @Option(
    help:
      "A folder of images: the files of its labels.tsv when it has one, else every .jpg/.jpeg/.png, sorted (default with --recipe: the recipe's folder)."
  )
  var images: String?

  @Option(
    help:
      "minmax, percentile[:P] (default P 99.99), entropy or mse (default: the recipe's, else \(CalibrationMethod.default.description))."
  )
  var method: String?

  @Option(
    help:
      "Use N images spread evenly over the folder's list (keeps class coverage when it is sorted by class; default: the recipe's count, else all)."
  )
  var limit: Int?

  @Option(
    help:
      "A calibration recipe (Calibration/*.json): its method, image count and folder become the defaults of --method, --limit and --images, which override them."
  )
  var recipe: String?

  @Flag(
    help:
      "Cross-layer equalization first (docs/quantization.md §7.1): calibrate the equalized model; the table says so, and `octet quantize` then equalizes too."
  )
  var equalize = false

  @Option(help: "Images run at once, one per thread (default: all cores).")
  var threads: Int = ProcessInfo.processInfo.activeProcessorCount

  @Option(name: .shortAndLong, help: "Write the range table (JSON) to this file.")
  var output: String

  func validate() throws {
    if let method {
      do { _ = try CalibrationMethod(parsing: method) } catch { throw ValidationError("--method: \(error)") }
    }
    var recipeFolder: String? = nil
    if let recipe {
      do { recipeFolder = try CalibrationRecipe.decode(try readSmallFile(recipe), path: recipe).folder } catch {
        throw ValidationError("--recipe: \(error)")
      }
    }
    if images == nil && recipeFolder == nil {
      throw ValidationError(
        recipe == nil
          ? "give the calibration images with --images DIR"
          : "the recipe \(recipe!) names no folder: give the calibration images with --images DIR")
    }
    try ModelArgument.expectFloat(
      model, argument: "<model>", command: "calibrate", why: "runs the float model over the images")
    if let limit, limit < 1 { throw ValidationError("--limit must be at least 1") }
    guard threads >= 1 else { throw ValidationError("--threads must be at least 1") }
    try validateOutputPath(output, option: "--output")
  }

  func run() throws {
    let recipe = try self.recipe.map { try CalibrationRecipe.decode(try readSmallFile($0), path: $0) }
    let method = try method.map { try CalibrationMethod(parsing: $0) } ?? recipe?.method ?? .default
    // validate() made sure that one of them is there.
    let images = self.images ?? recipe!.folder!
    if self.images == nil, !FileManager.default.fileExists(atPath: images) {
      throw FileError(
        path: images,
        reason:
          "the folder of the recipe \(self.recipe!) does not exist here (run Scripts/setup.sh from the repository root, "
          + "or give the calibration images with --images DIR)")
    }
    // The folder is listed before the model is loaded: a typo fails at once.
    let all = try CalibrationImages.list(folder: images)
    let count = limit ?? recipe?.images
    if let recipe, limit == nil, recipe.images > all.count {
      warn(
        "the recipe \(self.recipe!) calibrates on \(recipe.images) images; \(images) has \(all.count): using all of them"
      )
    }
    let urls = CalibrationImages.spread(all, count: count)
    let floatModel = try ModelLoader.load(contentsOf: URL(fileURLWithPath: model))
    if let recipe, recipe.architecture != floatModel.info.architecture {
      throw FileError(
        path: self.recipe!,
        reason: "a recipe for \(recipe.architecture), but '\(model)' is \(floatModel.info.architecture)")
    }
    if recipe != nil {
      print(
        "recipe \(self.recipe!): method \(method.description)\(self.method == nil ? "" : " (--method)"), "
          + "\(urls.count) images\(limit == nil ? "" : " (--limit)") from \(images)\(self.images == nil ? "" : " (--images)")"
      )
    }
    var calibrated = floatModel
    if equalize {
      let (equalized, report) = try CrossLayerEqualization.apply(to: floatModel)
      calibrated = equalized
      print(
        "cross-layer equalization: \(report.pairs.count) layer pairs, \(report.boundedActivations.count) ReLU6 with per-channel bounds"
      )
    }
    let calibrator = try Calibrator(model: calibrated, method: method)
    let bar = Mutex(ProgressBar(total: urls.count, label: "calibrate"))
    let result = try calibrator.calibrate(
      images: urls, threads: threads,
      progress: { p in
        bar.withLock { $0.update(p.done + p.skipped, detail: p.skipped > 0 ? "\(p.skipped) skipped" : "") }
      },
      skipped: { skip in
        bar.withLock { b in
          if b.enabled { FileHandle.standardError.write(Data("\r\u{1B}[K".utf8)) }
          FileHandle.standardError.write(Data("warning: skipped \(skip.url.path): \(skip.reason)\n".utf8))
        }
      })
    bar.withLock { $0.finish() }
    for name in result.constantTensors {
      let entry = result.table[name]!
      warn(
        "tensor '\(name)' is constant (\(entry.observedMin)) over all images; its range is [\(entry.min), \(entry.max)]"
      )
    }
    var table = result.table
    table.equalized = equalize
    try table.write(to: URL(fileURLWithPath: output))
    let skipped = result.skipped.isEmpty ? "" : ", \(result.skipped.count) skipped (unreadable)"
    print(
      String(
        format: "%@: %d images%@, %@, %.1f s, peak memory %@; %d tensor ranges written to %@",
        calibrator.model.info.architecture, result.imagesUsed, skipped, method.description, result.seconds,
        peakMemory(), result.table.tensors.count, output))
  }

  private func warn(_ message: String) {
    FileHandle.standardError.write(Data("warning: \(message)\n".utf8))
  }

  /// VmHWM of /proc/self/status: the resident set's high-water mark.
  private func peakMemory() -> String {
    guard let status = try? String(contentsOfFile: "/proc/self/status", encoding: .utf8),
      let line = status.split(separator: "\n").first(where: { $0.hasPrefix("VmHWM:") }),
      let kb = Double(line.split(whereSeparator: { $0 == " " || $0 == "\t" }).dropFirst().first ?? "")
    else { return "unknown" }
    return String(format: "%.0f MB", kb / 1024)
  }
}
