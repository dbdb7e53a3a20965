// `livetrace info`: what a trace holds (LiveTraceAnalysis/TraceSummary.swift).
import ArgumentParser
import Glibc
import LiveTraceAnalysis
import LiveTraceRecording

struct InfoCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "info",
        abstract: "Show what a trace holds: command, time, binaries, events and losses per thread."
    )

    @OptionGroup var trace: TraceDirectoryOption

    @Flag(help: "Print JSON (docs/cli-reading.md) instead of text.")
    var json = false

    func run() throws {
        let progress = ProgressBar()
        let summary: TraceSummary
        do {
            summary = try TraceSummary(directory: trace.directory, progress: progress.callback)
        } catch {
            progress.finish()
            CommandOutput.error("info", "\(error)")
            throw ExitCode(1)
        }
        progress.finish()
        let output = TextOutput(fd: STDOUT_FILENO)
        if json { output.write(summary.json()) } else { output.write(summary.text()) }
        output.flush()
        try CommandOutput.reportDamage("info", summary.damage)
    }
}
