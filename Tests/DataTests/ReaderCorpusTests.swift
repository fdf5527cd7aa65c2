import Foundation
import TesseraData
import TesseraEngine
import XCTest

/// Every reader against the corpus of valid and malformed files (Tools/make_corpus.py): valid files
/// load with the right contents; each malformed one gives an error with a message, never a crash.
final class ReaderCorpusTests: XCTestCase {
    func corpus() throws -> [String] {
        let dir = try XCTUnwrap(Bundle.module.url(forResource: "Corpus", withExtension: nil)).path
        return try FileManager.default.contentsOfDirectory(atPath: dir).sorted()
            .filter { !$0.hasPrefix("fixture_") && !$0.hasSuffix(".tar.idx") }   // not the index files the tar reader writes
            .map { dir + "/" + $0 }
    }

    /// Reads a corpus file with the reader its name selects.
    func read(_ path: String) throws -> String {
        let name = (path as NSString).lastPathComponent
        if name.hasPrefix("st_") {
            let f = try SafeTensors.read(path)
            return "\(f.tensors.map(\.name)) \(f.metadata)"
        } else if name.hasPrefix("idx_") {
            let s = try ImageSet.idx(images: path, labels: nil)
            return "\(s.count)x\(s.heights[0])x\(s.widths[0])"
        } else if name.hasPrefix("npy_") {
            return "\(try NpyArray.read(path).shape)"
        } else if name.hasPrefix("tar_") {
            let t = try TarShards.index(path, channels: 1)
            return "\(t.count) samples, labels \(t.labels ?? [])"
        } else {
            let img = try ImageSet.decodeImage(path, channels: 3)
            return "\(img.height)x\(img.width)"
        }
    }

    func testValidFilesLoadAndMalformedFilesFailWithAMessage() throws {
        let files = try corpus()
        XCTAssertGreaterThan(files.count, 30)
        var bad = 0
        for path in files {
            let name = (path as NSString).lastPathComponent
            if name.contains("_valid") {
                XCTAssertNoThrow(try read(path), name)
            } else {
                bad += 1
                do {
                    let r = try read(path)
                    XCTFail("\(name) was accepted: \(r)")
                } catch {
                    let message = "\(error)"
                    XCTAssertFalse(message.isEmpty, name)
                    XCTAssertFalse(message.contains("\n"), "\(name): error is not one line: \(message)")
                    XCTAssertTrue(message.contains(name), "\(name): error does not name the file: \(message)")
                }
            }
        }
        XCTAssertGreaterThan(bad, 25)
    }

    /// Shards written by Python's `tarfile` in each of its formats (Tools/make_tar_fixtures.py): GNU
    /// long names, PAX paths (non-ASCII too), a ustar prefix, Python's default, and that one with every
    /// size field in base-256 (GNU's form past 8 GiB). Each holds three samples under long keys,
    /// labels 0, 1, 2, each image a 2x2 PNG of value 40 (label + 1).
    func testShardsFromPythonsTarfileInEveryFormat() throws {
        let dir = try XCTUnwrap(Bundle.module.url(forResource: "Corpus", withExtension: nil)).path
        for (name, last) in [("gnu_longnames", "sample002"), ("pax_paths", "échantillon002"), ("ustar_prefix", "s2"), ("python_default", "n02"),
                           ("base256_sizes", "n02")] {
            let shards = try TarShards.index(dir + "/tar_valid_\(name).tar", channels: 1)
            XCTAssertEqual(shards.count, 3, name)
            XCTAssertEqual(shards.labels, [0, 1, 2], name)
            XCTAssertTrue(shards.name(of: 2).hasSuffix("/" + last) || shards.name(of: 2).hasSuffix(":" + last), "\(name): \(shards.name(of: 2))")
            if !["python_default", "base256_sizes"].contains(name) {
                XCTAssertTrue(shards.name(of: 0).contains("train/" + String(repeating: "very_long_folder_name_", count: 5)), "\(name): \(shards.name(of: 0))")
            }
            for i in 0..<3 { XCTAssertEqual(try shards.decoded(i).pixels, [UInt8](repeating: UInt8(40 * (i + 1)), count: 4), "\(name) image \(i)") }
        }
    }

    func testValidContents() throws {
        let files = try corpus()
        func path(_ n: String) -> String { files.first { $0.hasSuffix("/" + n) }! }
        let st = try SafeTensors.read(path("st_valid.safetensors"))
        XCTAssertEqual(st.metadata, ["format": "pt"])
        XCTAssertEqual(st["a"]?.floats(), [0, 1, 2, 3, 4, 5])
        let raw = try ImageSet.idx(images: path("idx_valid.idx"), labels: nil)
        let gz = try ImageSet.idx(images: path("idx_valid.idx.gz"), labels: nil)
        XCTAssertEqual(raw.pixels, gz.pixels)
        XCTAssertEqual(raw.pixels, (0..<32).map { UInt8($0) })
        let png = try ImageSet.decodeImage(path("png_valid.png"), channels: 3)
        XCTAssertEqual(png.pixels, (0..<192).map { UInt8($0) })
        let gray = try ImageSet.decodeImage(path("png_valid.png"), channels: 1)
        XCTAssertEqual(gray.pixels.count, 64)
        let jpg = try ImageSet.decodeImage(path("jpeg_valid.jpg"), channels: 3)
        XCTAssertEqual(jpg.pixels.count, 192)
        // JPEG is lossy: close to the PNG's pixels.
        let err = zip(jpg.pixels, png.pixels).map { abs(Int($0) - Int($1)) }.max()!
        XCTAssertLessThan(err, 40)
    }
}

final class SafeTensorsTests: XCTestCase {
    /// The reference implementation's golden bytes (safetensors tensor.rs `test_serialization`).
    func testWriterMatchesTheReferenceBytes() {
        let f = SafeTensors.File(tensors: [("attn.0", .init(floats: [0, 1, 2, 3, 4, 5], shape: [1, 2, 3]))])
        let bytes = SafeTensors.serialize(f)
        XCTAssertEqual(Array(bytes[0..<8]), [64, 0, 0, 0, 0, 0, 0, 0])
        XCTAssertEqual(String(decoding: bytes[8..<72], as: UTF8.self), #"{"attn.0":{"dtype":"F32","shape":[1,2,3],"data_offsets":[0,24]}}"#)
        XCTAssertEqual(bytes.count, 8 + 64 + 24)
        // Forced alignment: 7 trailing spaces.
        let g = SafeTensors.serialize(.init(tensors: [("attn0", .init(floats: [0, 1, 2, 3, 4, 5], shape: [1, 1, 2, 3]))]))
        XCTAssertEqual(Array(g[0..<8]), [72, 0, 0, 0, 0, 0, 0, 0])
        XCTAssertEqual(Array(g[(8 + 65)..<(8 + 72)]), Array(repeating: 0x20, count: 7))
        // Empty file.
        XCTAssertEqual(SafeTensors.serialize(.init(tensors: [])), [8, 0, 0, 0, 0, 0, 0, 0, 0x7B, 0x7D] + Array(repeating: 0x20, count: 6))
    }

    func testSortOrderRoundTripAndUnalignedReads() throws {
        let f = SafeTensors.File(tensors: [("b", .init(floats: [1, 2], shape: [2])),
                                           ("a", .init(dtype: .U8, shape: [3], bytes: [7, 8, 9])),
                                           ("c", .init(dtype: .F64, shape: [1], bytes: withUnsafeBytes(of: 2.5) { Array($0) })),
                                           ("step", .init(int64s: [123_456_789_012], shape: []))],
                                 metadata: ["format": "pt", "note": "quote \" and \\ and \n"])
        let bytes = SafeTensors.serialize(f)
        let back = try SafeTensors.parse(bytes)
        // Descending dtype rank, then name: I64 step, F64 c, F32 b, U8 a.
        XCTAssertEqual(back.tensors.map(\.name), ["step", "c", "b", "a"])
        XCTAssertEqual(back.metadata, f.metadata)
        XCTAssertEqual(back["b"]?.floats(), [1, 2])
        XCTAssertEqual(back["c"]?.floats(), [2.5])
        XCTAssertEqual(back["a"]?.bytes, [7, 8, 9])
        XCTAssertEqual(back["step"]?.int64s(), [123_456_789_012])
        XCTAssertEqual(back["step"]?.shape, [])
    }

    func testAtomicWriteReplacesAndLeavesNoTemporaryFile() throws {
        let dir = NSTemporaryDirectory() + "tessera-atomic-\(getpid())"
        try FileIO.makeDirectory(dir)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let path = dir + "/x.safetensors"
        try SafeTensors.write(.init(tensors: [("a", .init(floats: [1], shape: [1]))]), to: path)
        try SafeTensors.write(.init(tensors: [("a", .init(floats: [2], shape: [1]))]), to: path)
        XCTAssertEqual(try SafeTensors.read(path)["a"]?.floats(), [2])
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: dir), ["x.safetensors"])
        XCTAssertThrowsError(try SafeTensors.write(.init(tensors: []), to: dir + "/missing/x.safetensors")) { e in
            XCTAssertTrue("\(e)".contains("missing/x.safetensors"))
        }
    }
}
