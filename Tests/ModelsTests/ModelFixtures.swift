import Foundation
import TesseraEngine
import XCTest

/// The PyTorch fixtures of this test target (`Fixtures/NAME.safetensors`, written by the scripts in Tools/).
enum ModelFixtures {
    static func file(_ name: String) throws -> SafeTensors.File {
        let url = try XCTUnwrap(Bundle.module.url(forResource: name, withExtension: "safetensors", subdirectory: "Fixtures"))
        return try SafeTensors.read(url.path)
    }

    /// Tensor `name` of `f`, as a float tensor of its shape (a leaf with gradient when `grad`).
    static func tensor(_ f: SafeTensors.File, _ name: String, grad: Bool = false) throws -> Tensor {
        let e = try XCTUnwrap(f[name], "fixture lacks \(name)")
        return Tensor(try XCTUnwrap(e.floats()), shape: e.shape, requiresGrad: grad)
    }
}
