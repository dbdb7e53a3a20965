// `livetrace recover`: completes a trace whose recorder died before it
// could (a program recording itself from inside — lt_trace_start,
// GraphRecording — that was killed or called _exit). Every event the program
// published is in DIR/rings (a shared file mapping: it outlives the process);
// recovering drains it into the streams, marks info.json complete and
// salvaged, and removes DIR/rings. `livetrace record` does this itself when
// the program it runs dies.
import ArgumentParser
import Glibc
import LiveTraceRecording

struct RecoverCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "recover",
        abstract: "Complete a trace left by a program that died while recording itself."
    )

    @Option(name: .shortAndLong, help: "The trace directory.")
    var directory: String = "livetrace.data"

    func run() throws {
        func fail(_ message: String) -> ExitCode {
            ListOutput.write("livetrace recover: \(message)\n", to: STDERR_FILENO)
            return ExitCode(1)
        }
        let info: TraceInfo
        do {
            info = try TraceReader.readInfo(directory: directory)
        } catch {
            throw fail("\(error)")
        }
        let rings = directory + "/" + TraceFormat.ringsFile
        guard !info.complete else {
            ListOutput.write("livetrace recover: \(directory) is complete already; nothing to do\n", to: STDERR_FILENO)
            return
        }
        guard access(rings, F_OK) == 0 else {
            throw fail("\(directory) is incomplete but has no \(TraceFormat.ringsFile) to recover events from")
        }
        let summary: DrainSummary
        do {
            summary = try TraceDrain.salvage(directory: directory)
        } catch {
            throw fail("\(error)")
        }
        ListOutput.write(
            "livetrace recover: \(summary.threads) thread\(summary.threads == 1 ? "" : "s"), \(summary.events) events, \(summary.lost) events lost, recovered in \(directory)\n",
            to: STDERR_FILENO)
    }
}
