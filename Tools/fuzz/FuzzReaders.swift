// libFuzzer entry point for everything Tessera reads from files (built by scripts/fuzz.sh against
// the engine, data and models modules). FUZZ_TARGET picks the reader:
//   safetensors  SafeTensors.parse, then every tensor's values
//   idx          ImageSet.parseIDX (MNIST's format)
//   gzip         ImageSet.gunzip (the .gz IDX files)
//   npy          NpyArray.parse
//   png, jpeg    ImageSet.decodeImage as 3 and as 1 channel (libpng, libjpeg-turbo underneath)
//   config       PretrainConfig.decode: a run's config.json and every checkpoint's metadata
//   tar          a tar shard's member scan and its index file (TarShards)
// A reader may reject any input with an error; a crash, hang, leak of memory past the limit or
// sanitizer report is a bug.
import Foundation
@testable import TesseraData
import TesseraEngine
import TesseraModels

nonisolated(unsafe) let fuzzTarget = ProcessInfo.processInfo.environment["FUZZ_TARGET"] ?? "safetensors"
/// The tar readers take a path: each input is written to this file (in /dev/shm, one per process).
nonisolated(unsafe) let scratch = "/dev/shm/tessera-fuzz-\(getpid()).tar"

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzOneInput(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let bytes = Array(UnsafeBufferPointer(start: data, count: size))
    switch fuzzTarget {
    case "safetensors":
        if let f = try? SafeTensors.parse(bytes) { for (_, e) in f.tensors { _ = e.floats() } }
    case "idx":
        _ = try? ImageSet.parseIDX(bytes, path: "fuzz")
    case "gzip":
        _ = try? ImageSet.gunzip(bytes, name: "fuzz", limit: 1 << 24)
    case "npy":
        _ = try? NpyArray.parse(bytes)
    case "png", "jpeg":
        _ = try? ImageSet.decodeImage(bytes: bytes, name: "fuzz", channels: 3)
        _ = try? ImageSet.decodeImage(bytes: bytes, name: "fuzz", channels: 1)
    case "config":
        // What every reader of a configuration then computes from it.
        if let c = try? PretrainConfig.decode(String(decoding: bytes, as: UTF8.self)) {
            _ = (c.maeModel?.keptPatches, c.learningRate, c.maskRatio, c.augmentation.evaluation)
        }
    case "tar":
        // An input that starts like a shard's index file is read as one; any other input is scanned
        // as a tar shard.
        _ = FileManager.default.createFile(atPath: scratch, contents: Data(bytes))
        defer { unlink(scratch); unlink(scratch + ".idx") }
        if bytes.starts(with: Array("tessera-tar-index".utf8)) {
            _ = FileManager.default.createFile(atPath: scratch + ".idx", contents: Data(bytes))
            // The shard size the index names, so the fuzzer gets past the header line to the entries.
            let header = String(decoding: bytes.prefix { $0 != 10 }, as: UTF8.self)
            let tarSize = Int(header.split(separator: " ").last ?? "") ?? bytes.count
            _ = TarShards.readIndex(scratch + ".idx", tarSize: tarSize)
        } else {
            _ = try? TarShards.scanSamples(scratch)
        }
    default:
        fatalError("unknown FUZZ_TARGET \(fuzzTarget)")
    }
    return 0
}
