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
    /// (RecordArguments.scan, which says why). Other ARGS are parsed with
    /// `record` as the root command: parsing from the top builds the
    /// arguments of every subcommand (reflection and the runtime's
    /// protocol-conformance lookups). A parse that does not simply succeed
    /// (an error, --help) goes the usual way, so messages and usage text are
    /// those of `livetrace record`.
    static func main() {
        let arguments = Array(CommandLine.arguments.dropFirst())
        if arguments.first == RecordCommand.configuration.commandName {
            let recordArguments = Array(arguments.dropFirst())
            if let scanned = RecordArguments.scan(recordArguments), scanned.problem == nil {
                Glibc.exit(scanned.run())
            }
            if !arguments.contains(where: { $0.hasPrefix("--generate-completion-script") }),
               let command = (try? RecordCommand.parseAsRoot(recordArguments)) as? RecordCommand {
                // The program's status, or RecordFailure's: ArgumentParser's
                // exit(withError:) would first build a message for it by
                // reflection (about 0.25 ms, counted against the program),
                // then print nothing.
                Glibc.exit(command.arguments.run())
            }
        }
        main(nil)
    }
}
