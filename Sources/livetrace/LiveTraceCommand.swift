import ArgumentParser
import LiveTrace

@main
struct LiveTraceCommand: ParsableCommand {
    /// The version `livetrace --version` prints.
    static let version = "0.4.0"

    static let configuration = CommandConfiguration(
        commandName: "livetrace",
        abstract: "A live-patching function tracer for Swift and C programs on Linux x86-64.",
        version: version,
        subcommands: [
            ListCommand.self, RecordCommand.self, ReportCommand.self, ReplayCommand.self, DumpCommand.self,
            InfoCommand.self, RecoverCommand.self,
        ]
    )
}
