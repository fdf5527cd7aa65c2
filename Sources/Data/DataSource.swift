import Foundation
import TesseraEngine

/// Resolves a dataset name or path, as the CLI's `--data` takes it, to an ``ImageSet``.
///
/// - `fashion-mnist` (or `fashion-mnist:DIR`): the IDX files of Debian's `dataset-fashion-mnist`.
/// - `PATH.npy`: images; labels from `PATH-labels.npy` beside it when present.
/// - `PATH-images-idx3-ubyte[.gz]`: IDX images; labels from the matching `labels-idx1` file.
/// - a directory with `train/` and `test/` (or `val/`) subdirectories: those ImageFolders.
/// - any other directory: an ImageFolder tree, or a flat folder of unlabeled images.
public enum DataSource {
    public enum Split: String, Sendable { case train, test }

    public static func load(_ spec: String, split: Split, channels: Int? = nil) throws -> ImageSet {
        let fm = FileManager.default
        if spec == "fashion-mnist" || spec.hasPrefix("fashion-mnist:") {
            let dir = spec.hasPrefix("fashion-mnist:") ? String(spec.dropFirst("fashion-mnist:".count)) : ImageSet.fashionMNISTDirectory
            return try ImageSet.fashionMNIST(train: split == .train, directory: dir)
        }
        var isDir: ObjCBool = false
        guard fm.fileExists(atPath: spec, isDirectory: &isDir) else {
            throw DataError("\(spec): no such file or directory; pass fashion-mnist, a .npy file, an IDX file or an image folder")
        }
        if isDir.boolValue {
            let sub = split == .train ? ["train"] : ["test", "val"]
            for s in sub where fm.fileExists(atPath: spec + "/" + s) { return try ImageSet.folder(spec + "/" + s, channels: channels ?? 3) }
            return try ImageSet.folder(spec, channels: channels ?? 3)
        }
        if spec.hasSuffix(".npy") {
            let labels = String(spec.dropLast(4)) + "-labels.npy"
            return try ImageSet.npy(images: spec, labels: fm.fileExists(atPath: labels) ? labels : nil)
        }
        if spec.contains("images-idx3") {
            let labels = spec.replacingOccurrences(of: "images-idx3", with: "labels-idx1")
            return try ImageSet.idx(images: spec, labels: fm.fileExists(atPath: labels) ? labels : nil)
        }
        throw DataError("\(spec): unknown dataset format; use fashion-mnist, a .npy file, an IDX images file or an image folder")
    }
}
