import CImageData
import Foundation
import TesseraEngine

/// A decode worker's reusable buffers: the decoded region and the resampling scratch.
public struct SampleScratch {
    var decoded: [UInt8] = []
    var render = RenderScratch()
    public init() {}
}

/// Turns one stored image into its views: the crops are drawn on the full-size image (its size from
/// the header alone), then only what they need is decoded — JPEGs reduced in the DCT domain by the
/// largest of 1/2, 1/4, 1/8 that leaves every crop at least its output size, and only the rows and
/// columns the crops cover (plus a pixel of margin) — and each view is resampled from that region.
struct SampleRenderer {
    let views: [Augmentation]
    let channels: Int
    /// Reduce JPEGs in the DCT domain (by at most `maxReduction`) and decode only the crops' region.
    let reducedDecoding: Bool
    var maxReduction: Int64 = 8

    /// Renders every view of `stored` into `slots[v]` (C × S_v × S_v floats each) and returns where
    /// each was cut from, in source pixels.
    func render(_ stored: StoredImage, rng: inout TesseraRNG, into slots: [UnsafeMutablePointer<Float>],
                scratch: inout SampleScratch) throws -> [CropView] {
        switch stored {
        case let .pixels(px, h, w):
            let crops = views.map { $0.sampleView(height: h, width: w, rng: &rng) }
            px.withUnsafeBufferPointer { p in
                for (v, aug) in views.enumerated() {
                    aug.renderView(p.baseAddress!, height: h, width: w, channels: channels, view: crops[v], into: slots[v], scratch: &scratch.render)
                }
            }
            return crops
        case let .encoded(bytes, fileName):
            var W: Int64 = 0, H: Int64 = 0, fileChannels: Int64 = 0
            var rc = ck_image_info(bytes, bytes.count, &W, &H, &fileChannels)
            guard rc == 0 else { throw DataError("\(fileName): cannot read image header (\(ioMessage(rc))); the file is not a valid PNG or JPEG") }
            guard W > 0, H > 0, W * H <= Int64(ImageSet.maxPixels) else {
                throw DataError("\(fileName): \(W)×\(H) pixels exceeds the \(ImageSet.maxPixels)-pixel limit; downscale the image")
            }
            let crops = views.map { $0.sampleView(height: Int(H), width: Int(W), rng: &rng) }
            let isJPEG = ck_image_kind(bytes, bytes.count) == 2
            // The reduction: the largest that keeps every crop at least its output size (JPEG only).
            var denom: Int64 = 1
            if reducedDecoding && isJPEG {
                for d: Int64 in [8, 4, 2] where d <= maxReduction && zip(views, crops).allSatisfy({ aug, c in
                    min(c.height, c.width) / Float(d) >= Float(aug.size) }) { denom = d; break }
            }
            let rW = ck_jpeg_reduced_size(W, denom), rH = ck_jpeg_reduced_size(H, denom)
            // The region to decode, in reduced pixels: the union of the crop boxes with one pixel of
            // margin, or the whole image (as torchvision decodes it) without reduced decoding.
            var (x0, y0, x1, y1) = (Int64(0), Int64(0), rW, rH)
            if reducedDecoding {
                let sx = Float(rW) / Float(W), sy = Float(rH) / Float(H)
                (x0, y0, x1, y1) = (rW, rH, 0, 0)
                for c in crops {
                    x0 = min(x0, Int64((c.left * sx).rounded(.down)) - 1); y0 = min(y0, Int64((c.top * sy).rounded(.down)) - 1)
                    x1 = max(x1, Int64(((c.left + c.width) * sx).rounded(.up)) + 1); y1 = max(y1, Int64(((c.top + c.height) * sy).rounded(.up)) + 1)
                }
                (x0, y0, x1, y1) = (max(x0, 0), max(y0, 0), min(x1, rW), min(y1, rH))
            }
            let want = [x0, y0, x1, y1]
            let cap = Int(isJPEG ? rW * (y1 - y0) : W * H) * channels   // PNG: always the whole image
            if scratch.decoded.count < cap { scratch.decoded = [UInt8](repeating: 0, count: cap) }
            var got = [Int64](repeating: 0, count: 6)
            rc = scratch.decoded.withUnsafeMutableBufferPointer { d in
                ck_image_decode_region(d.baseAddress, cap, bytes, bytes.count, Int64(channels), Int64(ImageSet.maxPixels), denom, want, &got)
            }
            guard rc == 0 else { throw DataError("\(fileName): cannot decode image (\(ioMessage(rc))); replace or remove the file") }
            let (rx, ry, rw, rh) = (Float(got[2]), Float(got[3]), Int(got[4]), Int(got[5]))
            let gx = Float(got[0]) / Float(W), gy = Float(got[1]) / Float(H)   // PNG: no reduction
            scratch.decoded.withUnsafeBufferPointer { d in
                for (v, aug) in views.enumerated() {
                    var local = crops[v]
                    local.top = crops[v].top * gy - ry; local.left = crops[v].left * gx - rx
                    local.height = crops[v].height * gy; local.width = crops[v].width * gx
                    aug.renderView(d.baseAddress!, height: rh, width: rw, channels: channels, view: local, into: slots[v], scratch: &scratch.render)
                }
            }
            return crops
        }
    }
}
