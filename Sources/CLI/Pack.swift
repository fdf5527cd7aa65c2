import ArgumentParser
import Foundation
import TesseraData
import TesseraEngine

struct Pack: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Pack an image folder into WebDataset tar shards (for large sets and network file systems).",
        discussion: """
        Each image becomes a sample of two members, KEY.jpg (or .png, the file's bytes unchanged) and \
        KEY.cls (its class index as text), where KEY is the image's 8-digit position in the folder's \
        index (torchvision's ImageFolder order). Samples are shuffled across shards by default (seeded), \
        so that reading shard after shard through a shuffle buffer mixes classes; classes.txt lists the \
        class names. Each shard is written atomically. Train on the result with --data OUT.

        Example: tessera pack /data/imagenet/train /data/imagenet-shards/train --shard-size 1000
        """)

    @Argument(help: "An ImageFolder (or a flat folder of images).") var source: String
    @Argument(help: "Output directory for shard-NNNNNN.tar and classes.txt (created; must hold no shards).") var output: String
    @Option(parsing: .unconditional, help: "Samples per shard.") var shardSize = 1000
    @Option(parsing: .unconditional, help: "Seed of the order of the samples across shards.") var seed: UInt64 = 0
    @Flag(help: "Keep the folder's order (class after class) instead of shuffling.") var noShuffle = false

    func run() throws {
        try Check.integer("--shard-size", shardSize, 1...1 << 24)
        let set = try ImageFiles.index(source, channels: 3)
        let fm = FileManager.default
        if fm.fileExists(atPath: output), (try? TarShards.shardPaths(output)) != nil {
            throw CLIError("\(output) already holds .tar shards; choose an empty directory")
        }
        try FileIO.checkCreatable(output)
        let t0 = Date()
        let (shards, bytes) = try TarShards.pack(set, into: output, shardSize: shardSize, shuffleSeed: noShuffle ? nil : seed)
        print(String(format: "packed %d images of %@ into %d shards in %@ (%.1f MB, %.1f s)", set.count, source, shards, output,
                     Double(bytes) / 1e6, Date().timeIntervalSince(t0)))
    }
}
