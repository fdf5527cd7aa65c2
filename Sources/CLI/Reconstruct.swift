import ArgumentParser
import Foundation
import TesseraData
import TesseraEngine
import TesseraModels

struct Reconstruct: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Write a PNG grid: original | masked | reconstruction | reconstruction with visible patches pasted.",
        discussion: "With --noise FILE.npy ([N, L] float32) the masking is fixed, so two checkpoints can be compared on the same mask; --save-noise writes the noise used.")

    @Argument(help: "A full checkpoint (last.safetensors) written by 'tessera pretrain'.") var checkpoint: String
    @Option(parsing: .unconditional, help: "Images to take from the test split of the data.") var count = 8
    @Option(help: "Data (default: the checkpoint's).") var data: String?
    @Option(help: "Masking noise [count, patches] as float32 .npy.") var noise: String?
    @Option(help: "Write the masking noise used to this .npy file.") var saveNoise: String?
    @Option(parsing: .unconditional, help: "Seed for the masking noise when --noise is not given.") var seed: UInt64 = 0
    @Option(parsing: .unconditional, help: "Integer upscaling of each panel.") var scale: Int?
    @Option(help: "Output PNG.") var out = "reconstruction.png"
    @OptionGroup var runtime: RuntimeOptions

    /// The largest grid written, in bytes of pixels (a 256-image grid of 224-pixel RGB images at the
    /// default scale is 173 MB).
    static let maxGridBytes = 1 << 28

    func run() throws {
        try runtime.apply()
        try Check.integer("--count", count, 1...256)
        try Check.integer("--scale", scale, 1...64)
        // Every output is checked before any work, so a refused one leaves nothing written.
        for path in [out, out + ".txt"] + (saveNoise.map { [$0] } ?? []) { try FileIO.checkWritable(path) }
        let ck = try LoadedCheckpoint(checkpoint)
        guard let model = ck.model else {
            throw CLIError("\(checkpoint) has no MAE decoder; reconstruction needs the full model of an mae or rcmae run (last.safetensors, not last.encoder.safetensors)")
        }
        let cfg = model.config, e = cfg.encoder, L = e.patches, S = e.imageSize, C = e.channels, p = e.patchSize
        // The grid's size, bounded before anything is rendered.
        let z = scale ?? max(1, 112 / S)
        let gap = 2, cell = S * z
        let W = 4 * cell + 5 * gap, H = count * cell + (count + 1) * gap
        guard W * H * C <= Self.maxGridBytes else {
            throw CLIError(String(format: "the grid would be %dx%d pixels (%.1f GB) for --count %d at --scale %d on %dx%d images; lower --count or --scale (at most %.0f MB)",
                                  W, H, Double(W * H * C) / 1e9, count, z, S, S, Double(Self.maxGridBytes) / 1e6))
        }
        let set = try ck.data(data ?? ck.config.evalData ?? ck.config.data, split: .test, limit: count).materialized()
        guard set.count >= count else { throw CLIError("the data has \(set.count) images, fewer than --count \(count)") }
        let aug = ck.config.augmentation.evaluation
        var rng = TesseraRNG(seed: seed)
        let idx = Array(0..<count)
        let images = aug.render(set, indices: idx, views: idx.map { aug.sampleView(height: set.heights[$0], width: set.widths[$0], rng: &rng) })
        let noiseTensor: Tensor
        if let noise {
            let a = try NpyArray.read(noise)
            guard case let .f32(v) = a.values, a.shape == [count, L] else {
                throw CLIError("\(noise): masking noise must be float32 of shape [\(count), \(L)], found \(a.shape)")
            }
            noiseTensor = Tensor(v, shape: [count, L])
        } else {
            noiseTensor = Tensor.uniform([count, L], rng: &rng)
        }
        let mask = MaskIndices(noise: noiseTensor, keep: cfg.keptPatches)
        model.eval()
        let (loss, pred) = withNoGrad { model(images, mask: mask) }

        let patches = images.patchify(patchSize: p)               // [N, L, F]
        let F = p * p * C
        let predPix = model.pixelPredictions(pred, images: images).array
        let orig = patches.array
        let maskV = mask.mask
        var masked = orig, pasted = predPix
        for r in 0..<(count * L) where maskV[r] == 0 { for k in 0..<F { pasted[r * F + k] = orig[r * F + k] } }
        for r in 0..<(count * L) where maskV[r] == 1 { for k in 0..<F { masked[r * F + k] = .nan } }   // drawn grey
        let panels = [orig, masked, predPix, pasted].map { Tensor($0, shape: [count, L, F]).unpatchify(patchSize: p, channels: C, height: S, width: S).array }

        var px = [UInt8](repeating: 255, count: W * H * C)
        for n in 0..<count {
            for (col, panel) in panels.enumerated() {
                for y in 0..<cell { for x in 0..<cell { for c in 0..<C {
                    let v = panel[((n * C + c) * S + y / z) * S + x / z]
                    let pix: UInt8 = v.isNaN ? 128 : UInt8(max(0, min(255, ((v * aug.std[c] + aug.mean[c]) * 255).rounded())))
                    let gy = gap + n * (cell + gap) + y, gx = gap + col * (cell + gap) + x
                    px[(gy * W + gx) * C + c] = pix
                } } }
            }
        }
        try FileIO.writeAtomically(ImageSet.encodePNG(px, width: W, height: H, channels: C), to: out)
        let caption = "columns: original | masked (\(Int(cfg.maskRatio * 100))% grey) | reconstruction | reconstruction + visible patches; "
            + (cfg.normPixLoss ? "norm-pix model: predictions de-normalized with each target patch's mean and std" : "pixel-target model")
            + String(format: "; masked-patch loss %.4f", loss.item)
        try FileIO.writeAtomically(caption + "\n", to: out + ".txt")
        if let saveNoise { try FileIO.writeAtomically(NpyArray.serialize(floats: noiseTensor.array, shape: [count, L]), to: saveNoise) }
        print("wrote \(out) (\(count) images, \(W)x\(H)); caption in \(out).txt:")
        print(caption)
    }
}
