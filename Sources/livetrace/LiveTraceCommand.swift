import ArgumentParser
import LiveTrace

@main
struct LiveTraceCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "livetrace",
        abstract: "A live-patching function tracer for Swift and C programs on Linux x86-64.",
        subcommands: [ListCommand.self, RecordCommand.self, ReportCommand.self, RecoverCommand.self]
    )
}
