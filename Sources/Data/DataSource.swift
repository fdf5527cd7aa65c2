import Foundation
import TesseraEngine

/// Resolves a dataset name or path, as the CLI's `--data` takes it, to an ``ImageDataset``: indexed, not
/// decoded (only IDX files, small by nature, are read into memory). `limit` keeps the first images only
/// and, for folders, stops the index there.
///
/// - `fashion-mnist` (or `fashion-mnist:DIR`): the IDX files of Debian's `dataset-fashion-mnist`.
/// - `PATH.npy`: images; labels from `PATH-labels.npy` beside it when present.
/// - `PATH-images-idx3-ubyte[.gz]`: IDX images; labels from the matching `labels-idx1` file.
/// - `PATH.tar`, `DIR/name-{000000..000099}.tar`, or a directory of `.tar` files: WebDataset shards
///   (``TarShards``); a directory with `train/` and `test/` (or `val/`) holding shards: those.
/// - a directory with `train/` and `test/` (or `val/`) subdirectories: those ImageFolders.
/// - any other directory: an ImageFolder tree, or a flat folder of unlabeled images.
public enum DataSource {
    public enum Split: String, Sendable { case train, test }

    public static func load(_ spec: String, split: Split, channels: Int? = nil, limit: Int? = nil) throws -> any ImageDataset {
        let fm = FileManager.default
        // A shard file or brace range (TarShards.shardPaths names a missing file itself).
        if spec.hasSuffix(".tar") { return try TarShards.index(spec, channels: channels ?? 3, limit: limit) }
        if spec == "fashion-mnist" || spec.hasPrefix("fashion-mnist:") {
            let dir = spec.hasPrefix("fashion-mnist:") ? String(spec.dropFirst("fashion-mnist:".count)) : ImageSet.fashionMNISTDirectory
            return try ImageSet.fashionMNIST(train: split == .train, directory: dir).prefix(limit ?? Int.max)
        }
        var isDir: ObjCBool = false
        guard fm.fileExists(atPath: spec, isDirectory: &isDir) else {
            throw DataError("\(spec): no such file or directory; pass fashion-mnist, a .npy file, an IDX file or an image folder")
        }
        if isDir.boolValue {
            func folder(_ dir: String) throws -> any ImageDataset {
                let hasShards = try ImageFiles.listDirectory(dir).files.contains { $0.count > 4 && String(decoding: $0.suffix(4), as: UTF8.self) == ".tar" }
                return hasShards ? try TarShards.index(dir, channels: channels ?? 3, limit: limit)
                                 : try ImageFiles.index(dir, channels: channels ?? 3, limit: limit)
            }
            let sub = split == .train ? ["train"] : ["test", "val"]
            for s in sub where fm.fileExists(atPath: spec + "/" + s) { return try folder(spec + "/" + s) }
            return try folder(spec)
        }
        if spec.hasSuffix(".npy") {
            let labels = String(spec.dropLast(4)) + "-labels.npy"
            return try NpyImages(images: spec, labels: fm.fileExists(atPath: labels) ? labels : nil).prefix(limit ?? Int.max)
        }
        if spec.contains("images-idx3") {
            let labels = spec.replacingOccurrences(of: "images-idx3", with: "labels-idx1")
            return try ImageSet.idx(images: spec, labels: fm.fileExists(atPath: labels) ? labels : nil).prefix(limit ?? Int.max)
        }
        throw DataError("\(spec): unknown dataset format; use fashion-mnist, a .npy file, an IDX images file, an image folder or .tar shards")
    }
}
