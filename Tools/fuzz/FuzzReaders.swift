// libFuzzer entry point for the file readers (built by scripts/fuzz.sh together with the data
// reader sources, against the engine module). FUZZ_TARGET picks the reader: safetensors, idx, npy, image (PNG and JPEG), gzip.
// A reader may reject any input with an error; a crash, hang or sanitizer report is a bug.
import Foundation
import TesseraEngine

nonisolated(unsafe) let fuzzTarget = ProcessInfo.processInfo.environment["FUZZ_TARGET"] ?? "safetensors"

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
    case "image":
        _ = try? ImageSet.decodeImage(bytes: bytes, name: "fuzz", channels: 3)
        _ = try? ImageSet.decodeImage(bytes: bytes, name: "fuzz", channels: 1)
    default:
        fatalError("unknown FUZZ_TARGET \(fuzzTarget)")
    }
    return 0
}
