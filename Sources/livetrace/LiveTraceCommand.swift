import ArgumentParser
import Glibc
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

    /// `livetrace record ARGS`: its start-up counts against the program it
    /// runs, so its plain forms are read without the argument parser
    /// (RecordArguments.scan, which says why). Everything else, and every
    /// error, goes through the parser as for any other command.
    static func main() {
        let arguments = Array(CommandLine.arguments.dropFirst())
        if arguments.first == RecordCommand.configuration.commandName,
           let scanned = RecordArguments.scan(Array(arguments.dropFirst())), scanned.problem == nil {
            Glibc.exit(scanned.run())
        }
        main(nil)
    }
}
