import Foundation
import TesseraEngine

/// The labeled training and test splits an evaluation compares (`tessera eval`, `embed`, the kNN
/// monitor of `pretrain --knn-every`), with the test labels in the training split's numbering.
///
/// Two rules keep a probe from scoring the wrong thing without a word:
/// - **Classes are matched by name.** The splits of an ImageFolder tree or of tar shards each number
///   their own classes (sorted folder names, `classes.txt`); a test split with a class fewer, or in
///   another order, is renumbered to the training split's names, and a test class the training split
///   lacks is an error naming it.
/// - **A missing test split is said.** Data without a test split of its own (a `.npy` or IDX file, a
///   folder without `test/` or `val/`) is evaluated on its training images; ``heldOut`` is then false,
///   and the commands print a warning and mark their results "not held out".
public struct EvaluationSplits {
    public let train: any ImageDataset
    public let test: any ImageDataset
    /// False when the test split is the training split itself.
    public let heldOut: Bool

    /// The splits of `spec` (see ``DataSource/load(_:split:channels:limit:)``); `train`, when given, is
    /// its training split already loaded (`pretrain --knn-every` on its own training data).
    public static func load(_ spec: String, channels: Int?, limit: Int? = nil, train loaded: (any ImageDataset)? = nil) throws -> EvaluationSplits {
        let train = try loaded ?? DataSource.load(spec, split: .train, channels: channels, limit: limit)
        guard DataSource.hasTestSplit(spec) else { return EvaluationSplits(train: train, test: train, heldOut: false) }
        let test = try DataSource.load(spec, split: .test, channels: channels ?? train.channels, limit: limit)
        return EvaluationSplits(train: train, test: try test.labeled(like: train, what: spec), heldOut: true)
    }

    init(train: any ImageDataset, test: any ImageDataset, heldOut: Bool) {
        self.train = train; self.test = test; self.heldOut = heldOut
    }

    /// The warning to print when the test split is not held out (nil when it is).
    public func warning(_ spec: String) -> String? {
        heldOut ? nil : "\(spec) has no test split (no test/ or val/ folder, or a single file): the probes are trained and tested on the same \(train.count) images, so their accuracies are not held out; pass --data with train/ and test/ folders to measure generalization"
    }
}

extension ImageDataset {
    /// This dataset with its labels in `reference`'s class numbering, matched by class name (itself
    /// when the names already agree); throws naming a class of this dataset that `reference` lacks.
    public func labeled(like reference: any ImageDataset, what: String) throws -> any ImageDataset {
        guard let own = labels, reference.labels != nil, classNames != reference.classNames else { return self }
        var position: [String: Int] = [:]
        for (i, name) in reference.classNames.enumerated() where position[name] == nil { position[name] = i }
        var map = [Int](repeating: -1, count: classNames.count)
        for (i, name) in classNames.enumerated() { map[i] = position[name] ?? -1 }
        let present = Set(own)
        if let missing = present.sorted().first(where: { $0 < 0 || $0 >= map.count || map[$0] < 0 }) {
            let name = missing >= 0 && missing < classNames.count ? classNames[missing] : "\(missing)"
            let known = reference.classNames.prefix(8).joined(separator: ", ") + (reference.classNames.count > 8 ? ", …" : "")
            throw DataError("\(what): the test split has class '\(name)', which the training split lacks (its classes: \(known)); evaluate on test classes the training split has")
        }
        if present.allSatisfy({ map[$0] == $0 }) { return self }   // the same numbering where it matters
        let renumbered = own.map { map[$0] }
        if var set = self as? ImageSet {
            set.labels = renumbered
            set.classNames = reference.classNames
            return set
        }
        return RelabeledImages(base: self, labels: renumbered, classNames: reference.classNames)
    }
}

/// A dataset read as another with its labels replaced (``ImageDataset/labeled(like:what:)``).
struct RelabeledImages: ImageDataset {
    let base: any ImageDataset
    let labels: [Int]?
    let classNames: [String]
    var count: Int { base.count }
    var channels: Int { base.channels }
    var uniformSize: (height: Int, width: Int)? { base.uniformSize }
    var summary: String { base.summary }
    func image(_ i: Int) throws -> StoredImage { try base.image(i) }
    func prefix(_ n: Int) -> any ImageDataset {
        RelabeledImages(base: base.prefix(n), labels: labels.map { Array($0.prefix(n)) }, classNames: classNames)
    }
    func epochOrder(seed: UInt64, epoch: Int) -> [Int] { base.epochOrder(seed: seed, epoch: epoch) }
    func epochReader(seed: UInt64, epoch: Int, shuffled: Bool, order: [Int], start: Int, batchSize: Int,
                     shard: EpochShard) -> (any EpochReader)? {
        base.epochReader(seed: seed, epoch: epoch, shuffled: shuffled, order: order, start: start, batchSize: batchSize, shard: shard)
    }
}
