// A program that uses Tessera as a library to embed images with a trained encoder: it reads a
// checkpoint of any method (a model file or an encoder-only file) through `Checkpoint`, and writes the
// frozen features of a dataset's test split, as `tessera embed` does, from the library products alone
// (TesseraModels, TesseraData, TesseraEngine; no command-line code). Tests/CLITests compares its output
// with `tessera embed`'s, byte for byte, for each method.
//
//   swift run tessera-embed-checkpoint-example CHECKPOINT DATA OUT.npy [cls|mean]
import Foundation
import TesseraData
import TesseraEngine
import TesseraModels

let args = CommandLine.arguments
guard args.count == 4 || args.count == 5, args[3].hasSuffix(".npy") else {
    FileHandle.standardError.write(Data("usage: tessera-embed-checkpoint-example CHECKPOINT DATA OUT.npy [cls|mean]\n".utf8))
    exit(64)
}
do {
    let checkpoint = try Checkpoint(contentsOf: args[1])
    guard let pooling = Pooling(rawValue: args.count == 5 ? args[4] : "cls") else {
        throw CheckpointError("pooling must be cls or mean, got '\(args[4])'")
    }
    // Both splits, so that the test split's labels are numbered as the training split's classes.
    let splits = try EvaluationSplits.load(args[2], channels: checkpoint.config.encoder.channels)
    let features = try checkpoint.encoder.features(of: splits.test, augmentation: checkpoint.config.augmentation, pooling: pooling)
    try FileIO.writeAtomically(NpyArray.serialize(floats: features.values, shape: [features.count, features.dim]), to: args[3])
    print("\(checkpoint.config.method) checkpoint, epoch \(checkpoint.metadata["epoch"] ?? "?"): wrote \(args[3]) [\(features.count), \(features.dim)]")
} catch {
    FileHandle.standardError.write(Data("error: \(error)\n".utf8))
    exit(1)
}
