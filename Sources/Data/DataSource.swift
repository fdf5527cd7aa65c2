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
            // A split layout (train/ and test/ or val/): each split from its own folder, never the
            // parent read as an ImageFolder whose classes are the split names.
            let splits = splitFolders(spec)
            guard !splits.isEmpty else { return try folder(spec) }
            let wanted = split == .train ? ["train"] : ["test", "val"]
            if let s = wanted.first(where: splits.contains) { return try folder(spec + "/" + s) }
            guard splits.contains("train") else {
                throw DataError("\(spec) has \(splits.map { $0 + "/" }.joined(separator: " and ")) but no train/ folder; put the training images in \(spec)/train")
            }
            return try folder(spec + "/train")   // no test split: the training split (hasTestSplit says so)
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

    /// Whether `spec` has a test split apart from its training split: Fashion-MNIST, and folders
    /// with `test/` or `val/`. For anything else, ``load(_:split:channels:limit:)`` gives the training
    /// images for `.test` (see ``EvaluationSplits``).
    public static func hasTestSplit(_ spec: String) -> Bool {
        if spec == "fashion-mnist" || spec.hasPrefix("fashion-mnist:") { return true }
        let splits = splitFolders(spec)
        return splits.contains("test") || splits.contains("val")
    }

    /// The split folders (`train`, `test`, `val`) directly under `spec`.
    static func splitFolders(_ spec: String) -> [String] {
        ["train", "test", "val"].filter { name in
            var isDir: ObjCBool = false
            return FileManager.default.fileExists(atPath: spec + "/" + name, isDirectory: &isDir) && isDir.boolValue
        }
    }
}
