import Foundation
import Logging

/// How the command shows what the libraries log through swift-log (the trainer's progress and epoch
/// lines, the loader's warnings): a message at info or notice is a plain line on standard output, a
/// warning or worse one line on standard error starting `warning:` or `error:`; debug and trace lines
/// (with their metadata, on standard error) only under `TESSERA_LOG=debug` or `trace`.
struct LineLogHandler: LogHandler {
    var logLevel: Logger.Level
    var metadata: Logger.Metadata = [:]
    var metadataProvider: Logger.MetadataProvider?

    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    func log(event: LogEvent) {
        switch event.level {
        case .info, .notice:
            print(event.message.description)   // the same buffered stream as the command's own lines
        case .warning, .error, .critical:
            FileHandle.standardError.write(Data("\(event.level == .warning ? "warning" : "error"): \(event.message)\n".utf8))
        case .debug, .trace:
            let fields = metadata.merging(event.metadata ?? [:]) { $1 }.map { "\($0)=\($1)" }.sorted()
            FileHandle.standardError.write(Data("\(event.level): \(([event.message.description] + fields).joined(separator: " "))\n".utf8))
        }
    }

    /// Makes every logger of this process one of these, at `TESSERA_LOG`'s level (default info).
    static func bootstrap() {
        let level = ProcessInfo.processInfo.environment["TESSERA_LOG"].flatMap(Logger.Level.init(rawValue:)) ?? .info
        LoggingSystem.bootstrap { _ in LineLogHandler(logLevel: level) }
    }
}
