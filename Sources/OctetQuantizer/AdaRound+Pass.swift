import OctetCore
import OctetModels

extension AdaRound {
  /// AdaRound as a data-driven pass of one-step quantization (`octet quantize --images … --adaround`):
  /// `refine` with the default parameters on the calibration images, before bias correction, on
  /// `CalibrationInputs.threads` threads (the result does not depend on them).
  public static func pass(weightBits: WeightBits) -> DataDrivenPass {
    DataDrivenPass(name: "adaround") { float, quantized, inputs, progress in
      try withoutActuallyEscaping(progress) { progress in
        try refine(
          float: float, quantized: quantized, weightBits: weightBits, imageCount: inputs.count,
          image: { try inputs.load($0) }, threads: inputs.threads,
          progress: { event in
            switch event {
            case .collecting(let pass, let passes, let image, let images):
              progress(
                PassProgress(stage: "AdaRound: activations \(pass + 1)/\(passes)", done: image + 1, total: images))
            case .layer(let index, let count, _):
              progress(PassProgress(stage: "AdaRound: layers", done: index + 1, total: count))
            }
          }
        ).model
      }
    }
  }
}
