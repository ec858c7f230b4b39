import Octet

extension DriftReport.Flip {
  /// The flip of one image: its float and int8 top-3 with softmax probabilities (of the logits the
  /// comparison ranked, so the top-1 here is the top-1 that disagreed).
  init(image: String, label: Int, floatLogits: [Float], int8Logits: [Float], classes: Int) {
    func top3(_ logits: [Float]) -> [Prediction] {
      Classifier.top(3, of: logits, classes: classes).map {
        Prediction(class: $0.index, name: $0.name, probability: Double($0.probability))
      }
    }
    self.init(image: image, label: label, float_top3: top3(floatLogits), int8_top3: top3(int8Logits))
  }
}
