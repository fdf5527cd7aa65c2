import Foundation
import TesseraData
import TesseraEngine
import TesseraModels
import TestSupport
import XCTest

/// Saved configurations of the first layout (format 1: the encoder inside `mae`, which every method
/// carried) still load: `Fixtures/format-v1/` holds a tiny model file of each method and an MSN
/// encoder-only file written by `tessera pretrain` at 8829e53 (vit with dim 16, depth 1, heads 1; MAE's
/// decoder 16/1/1; MSN 16 prototypes, head 16; SIM with LayerNorm; 32 images of 28×28, seed 3).
final class ConfigFormatTests: XCTestCase {
    func fixture(_ name: String) throws -> String {
        try XCTUnwrap(Bundle.module.url(forResource: name, withExtension: "safetensors", subdirectory: "Fixtures/format-v1")).path
    }

    func testFormatOneCheckpointsLoadIntoTheCurrentLayout() throws {
        for method in MethodKind.allCases {
            let path = try fixture(method.rawValue)
            let file = try SafeTensors.read(path)
            let text = try XCTUnwrap(file.metadata["config"])
            XCTAssertFalse(text.contains("formatVersion"), "the fixture is a format 1 file")
            let checkpoint = try Checkpoint(contentsOf: path)
            let c = checkpoint.config
            XCTAssertEqual(c.method, method)
            XCTAssertEqual(c.formatVersion, PretrainConfig.currentFormat)
            XCTAssertEqual([c.encoder.dim, c.encoder.depth, c.encoder.heads, c.encoder.patchSize, c.encoder.imageSize], [16, 1, 1, 4, 28])
            // MAE's options stay with the methods that are an MAE; the others' decoder fields are dropped.
            if method.reportsAutoencoder {
                let mae = try XCTUnwrap(c.mae, "\(method)")
                XCTAssertEqual([mae.decoderDim, mae.decoderDepth, mae.decoderHeads], [16, 1, 1])
                XCTAssertEqual(mae.maskRatio, 0.75)
                XCTAssertTrue(mae.normPixLoss)
                XCTAssertNotNil(checkpoint.autoencoder, "\(method)")
            } else {
                XCTAssertNil(c.mae, "\(method)")
            }
            XCTAssertEqual(c.msn?.prototypes, method == .msn ? 16 : nil)
            XCTAssertEqual(c.sim?.norm, method == .sim ? .layer : nil)
            XCTAssertEqual(c.rcmae != nil, method == .rcmae)
            XCTAssertEqual(c.recipe, method.recipe)
            // The encoder holds the file's tensors, and the configuration round-trips in the new layout.
            for (name, t) in checkpoint.encoder.stateDict() {
                XCTAssertEqual(t.array, try XCTUnwrap(file[name]?.floats(), "\(method) \(name)"), "\(method) \(name)")
            }
            XCTAssertEqual(try PretrainConfig.decode(c.json()), c)
            XCTAssertTrue(c.json().contains("\"formatVersion\" : 2"))
        }
        let encoderOnly = try Checkpoint(contentsOf: fixture("msn.encoder"))
        XCTAssertEqual(encoderOnly.config.method, .msn)
        XCTAssertNil(encoderOnly.autoencoder)
    }

    func testAConfigurationFromANewerTesseraIsRefused() throws {
        let text = try XCTUnwrap(SafeTensors.read(fixture("mae")).metadata["config"])
        let newer = try PretrainConfig.decode(text).json().replacingOccurrences(of: "\"formatVersion\" : 2", with: "\"formatVersion\" : 3")
        XCTAssertThrowsError(try PretrainConfig.decode(newer)) { error in
            XCTAssertTrue("\(error)".contains("newer than this Tessera's"), "\(error)")
        }
        // A newer layout is refused as newer before its fields are read (here: no encoder where format 2 has it).
        let newerLayout = newer.replacingOccurrences(of: "\"encoder\"", with: "\"backbone\"")
        XCTAssertThrowsError(try PretrainConfig.decode(newerLayout)) { error in
            XCTAssertTrue("\(error)".contains("newer than this Tessera's"), "\(error)")
        }
        let broken = text.replacingOccurrences(of: "\"encoder\"", with: "\"encodr\"")
        XCTAssertThrowsError(try PretrainConfig.decode(broken)) { error in
            XCTAssertTrue("\(error)".contains("mae.encoder"), "\(error)")
        }
    }
}
