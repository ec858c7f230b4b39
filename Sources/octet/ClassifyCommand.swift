import ArgumentParser
import Foundation
import Octet

struct ClassifyCommand: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "classify", abstract: "Classify images and print the top-K classes.")

  @Argument(help: "An Octet model file (or a checkpoint, imported on the fly).")
  var model: String

  @Argument(help: "JPEG or PNG images.")
  var images: [String]

  @Option(help: "How many classes to print per image.")
  var top: Int = 5

  @Option(help: "Also write the results, with all logits, as JSON to this file.")
  var json: String?

  @OptionGroup var backendOption: BackendOption

  @Option(help: "Threads per image for int8 models.")
  var threads: Int = 1

  @Flag(help: "For an int8 model, first print how it was made: its recipe and the ranges it was quantized with.")
  var verbose = false

  func validate() throws {
    guard !images.isEmpty else { throw ValidationError("give at least one image") }
    guard top >= 1, threads >= 1 else { throw ValidationError("--top and --threads must be at least 1") }
    try validateOutputPath(json, option: "--json")
  }

  struct Result: Encodable {
    var image: String
    var top: [Prediction]
    var logits: [Float]
  }

  struct Report: Encodable { var results: [Result] }

  func run() throws {
    if verbose, ModelFileKind.of(URL(fileURLWithPath: model)) == .int8 {
      let int8 = try QuantizedModelFile.read(contentsOf: URL(fileURLWithPath: model))
      print(
        "recipe: \(QuantizationRecipe.of(int8).map(QuantizeCommand.describe) ?? "not recorded (quantized before Octet stored it)")"
      )
      if let text = int8.ranges, let table = try? RangeTable.decode(Data(text.utf8)) {
        print("ranges: \(table.tensors.count) tensors, \(table.method) on \(table.images) images")
      } else {
        print("ranges: not recorded")
      }
    }
    let classifier = try Classifier(
      contentsOf: URL(fileURLWithPath: model), backend: backendOption.backend, threads: threads)
    var results: [Result] = []
    for path in images {
      let image = try ImageDecoder.decode(contentsOf: URL(fileURLWithPath: path))
      let logits = classifier.logits(for: image)
      let predictions = Classifier.top(top, of: logits, classes: classifier.info.classes)
      print(path)
      for p in predictions {
        print(String(format: "  %5.2f%%  %4d  %@", p.probability * 100, p.index, p.name))
      }
      results.append(Result(image: path, top: predictions, logits: logits))
    }
    if let json { try writeJSON(Report(results: results), to: json) }
  }
}
