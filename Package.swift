// swift-tools-version:6.1
import PackageDescription

// Dependencies run one way: OctetCore <- OctetModels/OctetImages <- OctetFloat <- Octet <- OctetReport <- octet.
let package = Package(
  name: "Octet",
  platforms: [.macOS(.v14)],
  products: [
    .library(name: "Octet", targets: ["Octet"]),
    .library(name: "OctetCore", targets: ["OctetCore"]),
    .library(name: "OctetModels", targets: ["OctetModels"]),
    .library(name: "OctetImages", targets: ["OctetImages"]),
    .library(name: "OctetFloat", targets: ["OctetFloat"]),
    .library(name: "OctetCalibration", targets: ["OctetCalibration"]),
    .library(name: "OctetQuantizer", targets: ["OctetQuantizer"]),
    .library(name: "OctetInt8", targets: ["OctetInt8"]),
    .library(name: "OctetReport", targets: ["OctetReport"]),
    .executable(name: "octet", targets: ["octet"]),
  ],
  dependencies: [
    .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
    .package(url: "https://github.com/weichsel/ZIPFoundation", from: "0.9.20"),
    .package(url: "https://github.com/apple/swift-protobuf", from: "1.39.0"),
  ],
  targets: [
    // System libraries (Debian: libopenblas-dev, libjpeg62-turbo-dev, libpng-dev).
    .systemLibrary(name: "COpenBLAS", path: "Sources/COpenBLAS", pkgConfig: "openblas"),
    .systemLibrary(name: "CJPEGTurbo", path: "Sources/CJPEGTurbo", pkgConfig: "libjpeg"),
    .systemLibrary(name: "CPNG", path: "Sources/CPNG", pkgConfig: "libpng16"),
    .target(
      name: "CFloatKernels",
      path: "Sources/CFloatKernels",
      cSettings: [.unsafeFlags(["-O3", "-fno-math-errno"])]
    ),

    // Integer GEMM/conv microkernels: scalar, AVX2, AVX-512 VNNI and AMX, chosen at run time.
    .target(
      name: "CInt8Kernels",
      path: "Sources/CInt8Kernels",
      cSettings: [.unsafeFlags(["-O3"])]
    ),

    // Models/imagenet-classes.tsv compiled in (#embed), for Octet's ClassNames.
    .target(name: "CImageNetClasses", path: "Sources/CImageNetClasses"),

    // The persistent worker pool (pool.c) behind OctetCore's WorkerPool.
    .target(name: "CWorkerPool", path: "Sources/CWorkerPool", cSettings: [.unsafeFlags(["-O3"])]),

    .target(name: "OctetCore", dependencies: ["CWorkerPool"]),
    .target(
      name: "OctetModels",
      dependencies: [
        "OctetCore", .product(name: "ZIPFoundation", package: "ZIPFoundation"),
        .product(name: "SwiftProtobuf", package: "swift-protobuf"),
      ]
    ),
    // setjmp/longjmp error handling for libjpeg and libpng, which Swift cannot do itself.
    .target(name: "CImageGlue", dependencies: ["CJPEGTurbo", "CPNG"], path: "Sources/CImageGlue"),
    .target(name: "OctetImages", dependencies: ["OctetCore", "CJPEGTurbo", "CPNG", "CImageGlue"]),
    .target(
      name: "OctetFloat",
      dependencies: ["OctetCore", "OctetModels", "CFloatKernels", "COpenBLAS"]
    ),
    .target(
      name: "OctetCalibration", dependencies: ["OctetCore", "OctetModels", "OctetImages", "OctetFloat"]),
    .target(
      name: "OctetQuantizer",
      dependencies: [
        "OctetCore", "OctetModels", "OctetImages", "OctetFloat", "OctetCalibration", "OctetInt8", "COpenBLAS",
      ]),
    .target(name: "OctetInt8", dependencies: ["OctetCore", "OctetModels", "CInt8Kernels"]),
    .target(
      name: "Octet",
      dependencies: [
        "OctetCore", "OctetModels", "OctetImages", "OctetFloat", "OctetCalibration", "OctetQuantizer", "OctetInt8",
        "CImageNetClasses",
      ]),
    // Drift report: a float model against its int8 counterpart over labeled images (`octet compare`).
    // It builds on Octet's labeled folders, top-k and parallel loop, so it sits above it.
    .target(name: "OctetReport", dependencies: ["Octet"]),
    // Per-layer timings of the float kernels (release builds; not a test).
    .executableTarget(
      name: "octet-float-bench",
      dependencies: ["OctetFloat", "OctetCore", "COpenBLAS"],
      path: "Benchmarks/FloatKernelBench"
    ),
    .executableTarget(
      name: "octet",
      dependencies: ["Octet", "OctetReport", .product(name: "ArgumentParser", package: "swift-argument-parser")]
    ),

    // Paths of ../shared and .cache/ and small helpers that several test targets use.
    .target(
      name: "OctetTestSupport", dependencies: ["OctetCore", "OctetModels", "OctetImages", "OctetFloat"],
      path: "Tests/OctetTestSupport"),
    .testTarget(name: "OctetCoreTests", dependencies: ["OctetCore"]),
    .testTarget(
      name: "OctetModelsTests", dependencies: ["OctetTestSupport", "OctetModels"],
      resources: [.copy("Fixtures")]),
    .testTarget(
      name: "OctetImagesTests", dependencies: ["OctetTestSupport", "OctetImages"],
      resources: [.copy("Fixtures")]),
    .testTarget(
      name: "OctetFloatTests", dependencies: ["OctetTestSupport", "OctetFloat", "Octet"],
      resources: [.copy("Goldens")]),
    .testTarget(name: "OctetCalibrationTests", dependencies: ["OctetTestSupport", "OctetCalibration"]),
    .testTarget(
      name: "OctetQuantizerTests", dependencies: ["OctetTestSupport", "OctetQuantizer", "OctetInt8", "Octet"],
      resources: [.copy("Goldens")]),
    .testTarget(
      name: "OctetInt8Tests", dependencies: ["OctetTestSupport", "OctetInt8", "Octet", "CInt8Kernels"]),
    .testTarget(name: "OctetReportTests", dependencies: ["OctetTestSupport", "OctetReport"]),
    // Runs the built `octet` binary: exit codes, error lines, JSON reports, no partial files.
    .testTarget(
      name: "OctetCLITests", dependencies: ["OctetTestSupport", "octet", "OctetModels", "OctetReport", "OctetImages"]),
  ]
)

// libFuzzer targets (Fuzz/README.md), present only when Scripts/fuzz.sh sets OCTET_FUZZ=1: they
// define `<module>_main` to run libFuzzer's driver and link only with -sanitize=fuzzer.
if Context.environment["OCTET_FUZZ"] == "1" {
  let fuzzTargets: [(name: String, dependencies: [Target.Dependency])] = [
    ("checkpoint-zip", ["OctetCore", "OctetModels"]),
    ("checkpoint-legacy", ["OctetCore", "OctetModels"]),
    ("safetensors", ["OctetCore", "OctetModels"]),
    ("quantized-model", ["OctetModels"]),
    ("rangetable", ["OctetCalibration"]),
    ("image", ["OctetImages"]),
    ("onnx", ["OctetCore", "OctetModels"]),
  ]
  package.targets.append(.systemLibrary(name: "CFuzzDriver", path: "Fuzz/CFuzzDriver"))
  for target in fuzzTargets {
    package.targets.append(
      .executableTarget(
        name: "fuzz-\(target.name)", dependencies: target.dependencies + ["CFuzzDriver"],
        path: "Fuzz/\(target.name)"))
  }
}
