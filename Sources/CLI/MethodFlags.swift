import ArgumentParser
import TesseraModels

// `tessera pretrain`'s method plug-ins: each method's flags are one option group in Sources/CLI/Methods
// (beside its model file in Sources/Models), and `MethodFlagGroups` is the registry from `--method` to
// them. Pretrain itself has no per-method branch: it asks the chosen method's group to set the
// method's options and refuses flags that the chosen method does not read.

/// Flags that several methods read, each in its own way (`--mask-ratio` is MAE's random mask and SIM's
/// block mask). A method's group lists those it reads (``MethodFlags/sharedFlags``). The mask ratio and
/// the teacher's momentum given to a method that does not read them are refused; the decoder's sizes
/// and `--no-norm-pix` are part of the model's size (`--model`) and accepted by every method (scripts
/// pass one model size to all of them): a method without a decoder (MSN) ignores them.
enum SharedFlag: String, CaseIterable {
    case maskRatio = "--mask-ratio", teacherMomentum = "--teacher-momentum", decoderDim = "--decoder-dim",
         decoderDepth = "--decoder-depth", decoderHeads = "--decoder-heads", noNormPix = "--no-norm-pix"

    /// Whether the flag is refused under a method that does not read it.
    var refusedWhereUnread: Bool { self == .maskRatio || self == .teacherMomentum }

    /// The methods that read the flag, for its help: `MAE, RC-MAE and SIM`.
    var readers: String {
        let titles = MethodFlagGroups.types.filter { $0.sharedFlags.contains(self) }.map { $0.kind.title }
        return titles.count < 2 ? titles.joined() : titles.dropLast().joined(separator: ", ") + " and " + titles.last!
    }
}

/// The shared flags (``SharedFlag``), in the help's model options.
struct SharedMethodFlags: ParsableArguments {
    @Option(parsing: .unconditional, help: "Decoder width (\(SharedFlag.decoderDim.readers); SIM's projector and predictor, default the encoder's).")
    var decoderDim: Int?
    @Option(parsing: .unconditional, help: "Decoder depth (\(SharedFlag.decoderDepth.readers)).") var decoderDepth: Int?
    @Option(parsing: .unconditional, help: "Decoder heads (\(SharedFlag.decoderHeads.readers); SIM's projector and predictor).") var decoderHeads: Int?
    @Option(parsing: .unconditional, help: "Fraction of patches masked (\(SharedFlag.maskRatio.readers); default MAE and RC-MAE \(MAEOptions.defaultMaskRatio), random; SIM \(SIMOptions().maskRatio), block-wise).")
    var maskRatio: Float?
    @Flag(help: "Regress raw pixels instead of per-patch normalized ones (\(SharedFlag.noNormPix.readers)).") var noNormPix = false
    @Option(parsing: .unconditional, help: "Starting EMA momentum of the teacher or target (\(SharedFlag.teacherMomentum.readers); default RC-MAE \(RCMAEOptions().momentum), MSN \(MSNOptions().momentum), SIM \(SIMOptions().momentum)).")
    var teacherMomentum: Double?

    /// The shared flags on the command line.
    var given: [SharedFlag] {
        let set: [(SharedFlag, Bool)] = [(.maskRatio, maskRatio != nil), (.teacherMomentum, teacherMomentum != nil), (.decoderDim, decoderDim != nil),
                                         (.decoderDepth, decoderDepth != nil), (.decoderHeads, decoderHeads != nil), (.noNormPix, noNormPix)]
        return set.filter(\.1).map(\.0)
    }

    func validate() throws {
        try Check.integer("--decoder-dim", decoderDim, ConfigLimits.width)
        try Check.integer("--decoder-depth", decoderDepth, ConfigLimits.depth)
        try Check.integer("--decoder-heads", decoderHeads, ConfigLimits.heads)
        try Check.number("--mask-ratio", maskRatio, 0, 1, lowOpen: true)
        if let maskRatio, maskRatio >= 1 { throw CLIError("--mask-ratio must be below 1, got \(maskRatio)") }
        try Check.number("--teacher-momentum", teacherMomentum, 0, 1)
    }
}

/// A method's part of `tessera pretrain`: its own flags (one option group) and how they, with the shared
/// flags it reads, set the method's options in a configuration that holds the method's defaults.
protocol MethodFlags: ParsableArguments {
    /// The method these flags configure.
    static var kind: MethodKind { get }
    /// The shared flags the method reads.
    static var sharedFlags: Set<SharedFlag> { get }
    /// More to say when a shared flag the method does not read is refused (default: nothing).
    static func refusalHint(_ flag: SharedFlag) -> String?
    /// This group's flags on the command line, by name (refused under another `--method`).
    var given: [String] { get }
    /// Sets the method's options in `config` from this group's flags, the shared ones it reads and
    /// `--min-scale` (every method's; nil when not given).
    func apply(_ shared: SharedMethodFlags, minScale: Float?, to config: inout PretrainConfig)
}

extension MethodFlags {
    static func refusalHint(_ flag: SharedFlag) -> String? { nil }
}

/// Every method's flags, one option group each, and the shared ones: the registry from ``MethodKind`` to
/// a method's flags. A new method adds its group here (one line) and in ``types``.
struct MethodFlagGroups: ParsableArguments {
    @OptionGroup var shared: SharedMethodFlags
    @OptionGroup var mae: MAEFlags
    @OptionGroup(title: "\(RCMAE.title) options") var rcmae: RCMAEFlags
    @OptionGroup(title: "\(MSN.title) options") var msn: MSNFlags
    @OptionGroup(title: "\(SIM.title) options") var sim: SIMFlags

    /// The groups' types, for help texts.
    static let types: [any MethodFlags.Type] = [MAEFlags.self, RCMAEFlags.self, MSNFlags.self, SIMFlags.self]

    /// The groups as parsed.
    var all: [any MethodFlags] { [mae, rcmae, msn, sim] }

    /// The flags of `method`.
    func flags(for method: MethodKind) -> any MethodFlags { all.first { type(of: $0).kind == method }! }

    /// Refuses the mask ratio or teacher momentum where `method` does not read them, and any other
    /// method's own flag.
    func check(for method: MethodKind) throws {
        let chosen = type(of: flags(for: method))
        for flag in shared.given where flag.refusedWhereUnread && !chosen.sharedFlags.contains(flag) {
            throw CLIError("\(flag.rawValue) does not apply to \(method) (it applies to \(flag.readers))" + (chosen.refusalHint(flag).map { "; \($0)" } ?? ""))
        }
        for other in all where type(of: other).kind != method {
            if let name = other.given.first {
                throw CLIError("\(name) applies to \(type(of: other).kind) only; drop it or pass --method \(type(of: other).kind)")
            }
        }
    }
}
