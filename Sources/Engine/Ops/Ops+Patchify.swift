import CKernels

extension Tensor {
    /// Images `[B, C, H, W]` → patches `[B, L, p·p·C]` in MAE's order (patch index row-major;
    /// inside a patch: row, column, channel fastest).
    public func patchify(patchSize p: Int) -> Tensor {
        precondition(rank == 4 && p > 0 && shape[2] % p == 0 && shape[3] % p == 0,
                     "patchify: images \(shape) are not [B, C, H, W] with H and W divisible by patch size \(p)")
        let x = self
        let B = shape[0], C = shape[1], Hh = shape[2], Ww = shape[3]
        let out = Tensor(uninitialized: [B, (Hh / p) * (Ww / p), p * p * C])
        ck_patchify_forward(out.data, x.data, Int64(B), Int64(C), Int64(Hh), Int64(Ww), Int64(p))
        return out.recorded("patchify", [x]) { g in
            ck_patchify_backward(x.gradTarget(), g, Int64(B), Int64(C), Int64(Hh), Int64(Ww), Int64(p))
        }
    }

    /// Patches `[B, L, p·p·C]` → images `[B, C, H, W]`, the exact inverse of ``patchify(patchSize:)``.
    public func unpatchify(patchSize p: Int, channels C: Int, height Hh: Int, width Ww: Int) -> Tensor {
        precondition(rank == 3 && p > 0 && Hh % p == 0 && Ww % p == 0 && shape[1] == (Hh / p) * (Ww / p)
                     && shape[2] == p * p * C,
                     "unpatchify: patches \(shape) do not match \(C)×\(Hh)×\(Ww) images with patch size \(p)")
        let x = self
        let B = shape[0]
        let out = Tensor(uninitialized: [B, C, Hh, Ww])
        ck_unpatchify_forward(out.data, x.data, Int64(B), Int64(C), Int64(Hh), Int64(Ww), Int64(p))
        return out.recorded("unpatchify", [x]) { g in
            ck_unpatchify_backward(x.gradTarget(), g, Int64(B), Int64(C), Int64(Hh), Int64(Ww), Int64(p))
        }
    }
}
