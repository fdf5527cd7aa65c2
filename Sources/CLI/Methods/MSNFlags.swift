import ArgumentParser
import TesseraModels

/// MSN's flags (``MSNOptions``): the views, the patch drop, the prototypes and the head; `--min-scale`
/// is its target and anchor views' crop scale.
struct MSNFlags: MethodFlags {
    static var kind: MethodKind { .msn }
    static var sharedFlags: Set<SharedFlag> { [.teacherMomentum] }
    static func refusalHint(_ flag: SharedFlag) -> String? { flag == .maskRatio ? "its anchor masking is --patch-drop" : nil }

    @Option(parsing: .unconditional, help: "Focal views per image (default \(MSNOptions().focalViews)).") var focalViews: Int?
    @Option(parsing: .unconditional, help: "Focal view size in pixels, a multiple of the patch size (default \(MSNOptions().focalSize)).") var focalSize: Int?
    @Option(parsing: .unconditional, help: "Fraction of the anchor view's patches dropped, shared by the batch (default \(MSNOptions().patchDrop)).") var patchDrop: Float?
    @Option(parsing: .unconditional, help: "Number of prototypes (default \(MSNOptions().prototypes)).") var prototypes: Int?
    @Option(parsing: .unconditional, help: "Projection head hidden width (default \(MSNOptions().hiddenDim)).") var headHidden: Int?

    var given: [String] {
        [("--focal-views", focalViews != nil), ("--focal-size", focalSize != nil), ("--patch-drop", patchDrop != nil),
         ("--prototypes", prototypes != nil), ("--head-hidden", headHidden != nil)].filter(\.1).map(\.0)
    }

    func validate() throws {
        try Check.integer("--focal-views", focalViews, ConfigLimits.focalViews)
        try Check.integer("--focal-size", focalSize, ConfigLimits.imageSize)
        try Check.number("--patch-drop", patchDrop, 0, 1)
        if let patchDrop, patchDrop >= 1 { throw CLIError("--patch-drop must be below 1, got \(patchDrop)") }
        try Check.integer("--prototypes", prototypes, ConfigLimits.prototypes)
        try Check.integer("--head-hidden", headHidden, ConfigLimits.headHidden)
    }

    func apply(_ shared: SharedMethodFlags, minScale: Float?, to config: inout PretrainConfig) {
        var o = config.msn!
        if let focalViews { o.focalViews = focalViews }
        if let focalSize { o.focalSize = focalSize }
        if let patchDrop { o.patchDrop = patchDrop }
        if let prototypes { o.prototypes = prototypes }
        if let headHidden { o.hiddenDim = headHidden }
        if let minScale { o.randomScale = minScale...max(minScale, o.randomScale.upperBound) }
        if let m = shared.teacherMomentum { o.momentum = m }
        config.msn = o
    }
}
