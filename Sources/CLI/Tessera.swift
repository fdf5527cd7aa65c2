import ArgumentParser
import Foundation
import TesseraData
import TesseraEngine
import TesseraModels
#if canImport(Glibc)
import Glibc
#endif

/// `tessera`: self-supervised ViT pretraining on CPUs.
struct Tessera: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "tessera",
        abstract: "Self-supervised ViT pretraining (MAE, RC-MAE, MSN, SIM) on CPUs.",
        discussion: """
        Examples:
          tessera pretrain --run runs/fmnist --epochs 10 --depth 6
          tessera pretrain --method msn --run runs/msn --depth 6
          tessera eval runs/fmnist/last.safetensors
          tessera reconstruct runs/fmnist/last.safetensors --out recon.png
          tessera embed runs/fmnist/last.encoder.safetensors --split test --out test.npy
          tessera inspect runs/fmnist/last.safetensors
          tessera bench -- --method mae --depth 6
        """,
        subcommands: [Pretrain.self, Eval.self, Embed.self, Reconstruct.self, Inspect.self, Bench.self, Pack.self])
}

/// A command-line failure: printed as one line, exit status 1.
struct CLIError: Error, CustomStringConvertible {
    let description: String
    init(_ d: String) { description = d }
}

@main
enum Main {
    static func main() {
        // `tessera bench` also has the OpenMP runtime count its regions and barriers.
        Runtime.restartWithTunedRuntimeIfNeeded(countingParallelRegions: CommandLine.arguments.dropFirst().first == "bench")
        Runtime.lineBufferStandardOutput()   // progress lines reach a pipe or log file as they happen
        LineLogHandler.bootstrap()   // the libraries' log lines as this command's output
        BufferPool.onAllocationFailure = { bytes in
            let message = String(format: "out of memory: a tensor of %.1f GiB does not fit; lower --batch-size, the image size or the model size",
                                 Double(bytes) / 1073741824)
            RunClaim.abandonEveryOpenClaim()   // a run that never saved leaves nothing behind
            Processes.fail(message, onEveryProcess: false)   // in an MPI job: stops every process
            FileHandle.standardError.write(Data(("error: " + message + "\n").utf8))
            exit(1)
        }
        do {
            var command = try Tessera.parseAsRoot()
            try Processes.start(dataParallel: command is Pretrain || command is Bench)
            try command.run()
            Processes.finish()
        } catch {
            let code = Tessera.exitCode(for: error)
            if code == .success { Tessera.exit(withError: error) }   // --help, --version
            var message: String
            if error is CLIError || error is CheckpointError || error is ConfigError || error is DataError || error is FileIO.Error || error is TrainingError || error is SafeTensors.FormatError {
                message = "\(error)"
            } else {
                message = Tessera.message(for: error)
                if message.isEmpty { message = "\(error)" }
                message = message.split(separator: "\n").first.map(String.init) ?? message
                if !message.contains("--help") { message += " (see 'tessera help')" }
            }
            if message.hasPrefix("Error: ") { message.removeFirst(7) }
            Processes.fail(message.replacingOccurrences(of: "\n", with: " "), onEveryProcess: (error as? TrainingError)?.onEveryProcess ?? false)
            FileHandle.standardError.write(Data(("error: " + message.replacingOccurrences(of: "\n", with: " ") + "\n").utf8))
            exit(code.rawValue == 0 ? 1 : code.rawValue)
        }
    }
}

/// Options every command that runs a model takes.
struct RuntimeOptions: ParsableArguments {
    @Option(parsing: .unconditional, help: "Threads for the kernels and the BLAS (default: TESSERA_THREADS, OMP_NUM_THREADS, or all cores).")
    var threads: Int?
    @Option(parsing: .unconditional, help: "Decode workers: threads that read, decode and augment images ahead of the step (default: 1 for data held in memory, else min(4, cores)); results do not depend on it.")
    var workers: Int?
    @Flag(help: "Replace an image that cannot be read by the next one of the epoch, with a warning, instead of stopping.")
    var skipUnreadable = false

    /// The decode workers for `data`: the option, else one for data in memory and min(4, cores) for
    /// files (the cores of this machine shared among the job's processes on it).
    func workers(for data: any ImageDataset) -> Int {
        workers ?? (data is ImageSet || data is NpyImages ? 1 : min(4, Processes.coresPerProcess))
    }

    func validate() throws {
        try Check.integer("--workers", workers, 1...256)
        try Check.integer("--threads", threads, 1...1024)
    }

    func apply() throws {
        if let error = Runtime.gemmSetupError { throw CLIError(error) }
        try validate()
        if let threads { Runtime.setThreads(threads) }
    }
}

/// Prints "warning: …" on standard error.
func warning(_ text: String) {
    FileHandle.standardError.write(Data(("warning: " + text + "\n").utf8))
}

/// A checkpoint (``Checkpoint``, the library's reader) with what the commands add: its data, checked
/// against the model, and a warning when its weights are not finite.
struct LoadedCheckpoint {
    /// A split of `spec` for this checkpoint's model: its images must have the model's channels (one
    /// line naming both otherwise); images of another uniform size are resized to the model's, with a
    /// warning naming both sizes.
    func data(_ spec: String, split: DataSource.Split, limit: Int? = nil, warn: Bool = true) throws -> any ImageDataset {
        try fitted(DataSource.load(spec, split: split, channels: config.encoder.channels, limit: limit), spec, warn: warn)
    }

    /// The labeled splits of `spec` for this checkpoint's model (see ``data(_:split:limit:warn:)``);
    /// a warning when the test split is the training split, unless `quiet`.
    func splits(_ spec: String, quiet: Bool = false) throws -> EvaluationSplits {
        let s = try EvaluationSplits.load(spec, channels: config.encoder.channels)
        _ = try fitted(s.train, spec, warn: true)
        _ = try fitted(s.test, spec, warn: false)
        if !quiet, let w = s.warning(spec) { warning(w) }
        return s
    }

    private func fitted(_ set: any ImageDataset, _ spec: String, warn: Bool) throws -> any ImageDataset {
        let e = config.encoder
        guard set.channels == e.channels else {
            throw CLIError("\(spec) has \(set.channels)-channel images, but \(path) was trained on \(e.channels)-channel images")
        }
        if warn, let u = set.uniformSize, u.height != e.imageSize || u.width != e.imageSize {
            warning("\(spec) has \(u.width)x\(u.height) images, \(path) was trained on \(e.imageSize)x\(e.imageSize); they are resized")
        }
        return set
    }

    let checkpoint: Checkpoint
    var path: String { checkpoint.path }
    var config: PretrainConfig { checkpoint.config }
    var encoder: ViTEncoder { checkpoint.encoder }
    var model: MaskedAutoencoder? { checkpoint.autoencoder }

    /// Reads a full model (`last.safetensors`) or an encoder-only file (`last.encoder.safetensors`).
    init(_ path: String) throws {
        checkpoint = try Checkpoint(contentsOf: path)
        if let bad = checkpoint.nonFiniteTensor {
            warning("\(path): tensor '\(bad)' holds NaN or infinite values, so what is computed from it means nothing; evaluate an earlier checkpoint of the run")
        }
    }
}
