import ArgumentParser
import TesseraModels

/// RC-MAE's flags: MAE's, and the teacher's (``RCMAEOptions``).
struct RCMAEFlags: MethodFlags {
    static var kind: MethodKind { .rcmae }
    static var sharedFlags: Set<SharedFlag> { MAEFlags.sharedFlags.union([.teacherMomentum]) }

    @Option(parsing: .unconditional, help: "Weight of the consistency term (default \(RCMAEOptions().gamma)).") var gamma: Float?
    @Option(help: "Teacher momentum schedule, cosine (to 1, the paper) or constant (the released code); default \(RCMAEOptions().schedule.rawValue).")
    var momentumSchedule: String?

    var given: [String] { [("--gamma", gamma != nil), ("--momentum-schedule", momentumSchedule != nil)].filter(\.1).map(\.0) }

    func validate() throws {
        try Check.number("--gamma", gamma, 0, 1000)
        if let momentumSchedule, RCMAEOptions.Schedule(rawValue: momentumSchedule) == nil {
            throw CLIError("--momentum-schedule must be cosine or constant")
        }
    }

    func apply(_ shared: SharedMethodFlags, minScale: Float?, to config: inout PretrainConfig) {
        MAEFlags().apply(shared, minScale: minScale, to: &config)
        if let gamma { config.rcmae!.gamma = gamma }
        if let m = shared.teacherMomentum { config.rcmae!.momentum = m }
        if let momentumSchedule { config.rcmae!.schedule = RCMAEOptions.Schedule(rawValue: momentumSchedule)! }
    }
}
