import CImageData
import Foundation
import TesseraEngine

/// Where one view was cut from its source image: the crop box in source pixels and the flip.
/// SIM needs these to relate two views of the same image.
public struct CropView: Sendable, Equatable, Codable {
    public var top: Float, left: Float, height: Float, width: Float
    public var flipped: Bool
    public var sourceHeight: Int, sourceWidth: Int
    /// Photometric parameters drawn for this view (`CK_PHOTO_PARAMS` floats), or nil.
    public var photometric: [Float]?

    public init(top: Float, left: Float, height: Float, width: Float, flipped: Bool, sourceHeight: Int, sourceWidth: Int) {
        self.top = top; self.left = left; self.height = height; self.width = width; self.flipped = flipped
        self.sourceHeight = sourceHeight; self.sourceWidth = sourceWidth
    }
}

/// Color jitter, grayscale, blur and solarize, each applied with a probability (torchvision's
/// `RandomApply(ColorJitter)`, `RandomGrayscale`, a Gaussian blur, PIL's solarize). On one-channel
/// images only brightness, contrast, blur and solarize apply.
public struct Photometric: Codable, Equatable, Sendable {
    public var jitterProbability: Float = 0.8
    public var brightness: Float = 0.4, contrast: Float = 0.4, saturation: Float = 0.4, hue: Float = 0.1
    public var grayscaleProbability: Float = 0.2
    public var blurProbability: Float = 0.5
    /// Blur sigma range in pixels at 224 px; scaled by the view size / 224.
    public var blurSigma: ClosedRange<Float> = 0.1...2
    public var solarizeProbability: Float = 0

    public init(jitterProbability: Float = 0.8, brightness: Float = 0.4, contrast: Float = 0.4, saturation: Float = 0.4, hue: Float = 0.1,
                grayscaleProbability: Float = 0.2, blurProbability: Float = 0.5, blurSigma: ClosedRange<Float> = 0.1...2,
                solarizeProbability: Float = 0) {
        self.jitterProbability = jitterProbability; self.brightness = brightness; self.contrast = contrast
        self.saturation = saturation; self.hue = hue; self.grayscaleProbability = grayscaleProbability
        self.blurProbability = blurProbability; self.blurSigma = blurSigma; self.solarizeProbability = solarizeProbability
    }

    /// Parameters that change nothing: jitter order 0…3, factors 1, 1, 1 and hue 0, no grayscale, blur or solarize.
    public static let identity: [Float] = [0, 1, 2, 3, 1, 1, 1, 0, 0, 0, 0]

    /// Draws one view's parameters (`CK_PHOTO_PARAMS` floats) for a `size`-pixel view.
    public func sample(size: Int, rng: inout TesseraRNG) -> [Float] {
        var p = Photometric.identity
        var order: [Float] = [0, 1, 2, 3]
        if rng.uniform() < jitterProbability {
            for i in stride(from: 3, to: 0, by: -1) { order.swapAt(i, rng.int(below: i + 1)) }
            p[Int(CK_PHOTO_BRIGHTNESS)] = rng.uniform(max(0, 1 - brightness), 1 + brightness)
            p[Int(CK_PHOTO_CONTRAST)] = rng.uniform(max(0, 1 - contrast), 1 + contrast)
            p[Int(CK_PHOTO_SATURATION)] = rng.uniform(max(0, 1 - saturation), 1 + saturation)
            p[Int(CK_PHOTO_HUE)] = rng.uniform(-hue, hue)
        }
        for i in 0..<4 { p[Int(CK_PHOTO_ORDER) + i] = order[i] }
        p[Int(CK_PHOTO_GRAYSCALE)] = rng.uniform() < grayscaleProbability ? 1 : 0
        p[Int(CK_PHOTO_BLUR_SIGMA)] = rng.uniform() < blurProbability ? rng.uniform(blurSigma.lowerBound, blurSigma.upperBound) * Float(size) / 224 : 0
        p[Int(CK_PHOTO_SOLARIZE)] = rng.uniform() < solarizeProbability ? 1 : 0
        return p
    }
}

/// Resampling filter of a crop-resize.
public enum Interpolation: String, Codable, Sendable, CaseIterable {
    case bilinear, bicubic
    var code: Int32 { self == .bicubic ? Int32(CK_INTERP_BICUBIC) : Int32(CK_INTERP_BILINEAR) }
}

/// MAE's augmentation: `RandomResizedCrop(size, scale, ratio, interpolation)`, `RandomHorizontalFlip`,
/// `Normalize(mean, std)`. With `random == false` it is the evaluation transform: the whole image
/// resized to `size`, no flip.
public struct Augmentation: Codable, Sendable, Equatable {
    public var size: Int
    public var scale: ClosedRange<Float> = 0.2...1
    public var ratio: ClosedRange<Float> = 0.75...(4.0 / 3.0)
    public var interpolation: Interpolation = .bicubic
    public var flip = true
    public var random = true
    public var mean: [Float]
    public var std: [Float]
    /// Color jitter, grayscale, blur, solarize (none by default: MAE uses none).
    public var photometric: Photometric?

    public init(size: Int, mean: [Float], std: [Float], scale: ClosedRange<Float> = 0.2...1, ratio: ClosedRange<Float> = 0.75...(4.0 / 3.0),
                interpolation: Interpolation = .bicubic, flip: Bool = true, random: Bool = true) {
        self.size = size; self.mean = mean; self.std = std; self.scale = scale; self.ratio = ratio
        self.interpolation = interpolation; self.flip = flip; self.random = random
    }

    /// The evaluation transform with the same size and normalization.
    public var evaluation: Augmentation {
        var a = self; a.random = false; a.flip = false; return a
    }

    /// torchvision's `RandomResizedCrop.get_params`: up to 10 draws of an area fraction in `scale` and
    /// a log-uniform aspect ratio in `ratio`; if none fits, the centre crop clamped to `ratio`.
    public func sampleCrop(height H: Int, width W: Int, rng: inout TesseraRNG) -> (top: Int, left: Int, height: Int, width: Int) {
        let area = Float(H * W)
        let logLo = Foundation.log(ratio.lowerBound), logHi = Foundation.log(ratio.upperBound)
        for _ in 0..<10 {
            let target = area * rng.uniform(scale.lowerBound, scale.upperBound)
            let aspect = Foundation.exp(rng.uniform(logLo, logHi))
            let w = Int((target * aspect).squareRoot().rounded())
            let h = Int((target / aspect).squareRoot().rounded())
            if w > 0 && w <= W && h > 0 && h <= H {
                let top = rng.int(below: H - h + 1), left = rng.int(below: W - w + 1)
                return (top, left, h, w)
            }
        }
        let inRatio = Float(W) / Float(H)
        var w = W, h = H
        if inRatio < ratio.lowerBound { w = W; h = Int((Float(w) / ratio.lowerBound).rounded()) }
        else if inRatio > ratio.upperBound { h = H; w = Int((Float(h) * ratio.upperBound).rounded()) }
        return ((H - h) / 2, (W - w) / 2, h, w)
    }

    /// Draws one view of an image of the given size: crop box and flip.
    public func sampleView(height H: Int, width W: Int, rng: inout TesseraRNG) -> CropView {
        guard random else { return CropView(top: 0, left: 0, height: Float(H), width: Float(W), flipped: false, sourceHeight: H, sourceWidth: W) }
        let c = sampleCrop(height: H, width: W, rng: &rng)
        let f = flip && rng.uniform() < 0.5
        var v = CropView(top: Float(c.top), left: Float(c.left), height: Float(c.height), width: Float(c.width), flipped: f,
                         sourceHeight: H, sourceWidth: W)
        v.photometric = photometric?.sample(size: size, rng: &rng)
        return v
    }

    /// Renders `views[k]` of image `indices[k]` of an in-memory set into a `[B, C, size, size]` tensor,
    /// images in parallel unless `threads` is 1.
    public func render(_ set: ImageSet, indices: [Int], views: [CropView], threads: Int = 0) -> Tensor {
        precondition(indices.count == views.count, "Augmentation.render: \(indices.count) images, \(views.count) views")
        let B = indices.count, C = set.channels, S = size
        let out = Tensor(uninitialized: [B, C, S, S])
        let base = UnsafeMutablePointerBox(out.data)
        let work: @Sendable (Int) -> Void = { k in
            let i = indices[k]
            set.pixels.withUnsafeBufferPointer { px in
                var scratch = RenderScratch()
                renderView(px.baseAddress! + set.offsets[i], height: set.heights[i], width: set.widths[i], channels: C, view: views[k],
                           into: base.pointer + k * C * S * S, scratch: &scratch)
            }
        }
        if threads == 1 { for k in 0..<B { work(k) } } else { DispatchQueue.concurrentPerform(iterations: B, execute: work) }
        return out
    }

    /// Renders one view into `out` (`channels × size × size` floats): crop `view`'s box, resize,
    /// flip, the photometric ops it drew, normalize. The box is in the coordinates of `pixels`
    /// (HWC, `height × width`), which may be a region or a reduced decode of the source image.
    func renderView(_ pixels: UnsafePointer<UInt8>, height: Int, width: Int, channels C: Int, view: CropView,
                    into out: UnsafeMutablePointer<Float>, scratch: inout RenderScratch) {
        precondition(mean.count == C && std.count == C, "Augmentation: normalization has \(mean.count) channels, images have \(C)")
        let S = size
        let photo = view.photometric != nil
        // With photometric ops: render to [0, 1], apply them, then normalize.
        let renderMean = photo ? [Float](repeating: 0, count: C) : mean, renderStd = photo ? [Float](repeating: 1, count: C) : std
        let need = Int(ck_crop_resize_scratch_floats(Int64(height), Int64(width), Int64(S), Int64(C), 1))
        let box: [Float] = [view.top, view.left, view.height, view.width]
        let flip: [UInt8] = [view.flipped ? 1 : 0]
        var src: UnsafePointer<UInt8>? = pixels
        let h = [Int64(height)], w = [Int64(width)]
        scratch.withAligned(need) { p in
            let rc = ck_crop_resize_batch(out, &src, h, w, box, flip, 1, Int64(C), Int64(S), interpolation.code, renderMean, renderStd,
                                          p, Int64(need), 1)
            precondition(rc == 0, "Augmentation: scratch too small")
        }
        if let params = view.photometric {
            let need = Int(ck_photometric_scratch_floats(Int64(S), Int64(C), 1))
            scratch.withAligned(need) { p in ck_photometric_batch(out, params, 1, Int64(C), Int64(S), p, 1) }
            ck_normalize_batch(out, mean, std, 1, Int64(C), Int64(S))
        }
    }
}

/// A worker's reusable float scratch for ``Augmentation`` rendering, 64-byte aligned.
struct RenderScratch {
    private var storage: [Float] = []

    mutating func withAligned<R>(_ floats: Int, _ body: (UnsafeMutablePointer<Float>) -> R) -> R {
        if storage.count < floats + 16 { storage = [Float](repeating: 0, count: floats + 16) }
        return storage.withUnsafeMutableBufferPointer { sp in
            let aligned = (Int(bitPattern: sp.baseAddress!) + 63) & ~63   // the kernel stores int64 tables at the front
            return body(UnsafeMutablePointer<Float>(bitPattern: aligned)!)
        }
    }
}
