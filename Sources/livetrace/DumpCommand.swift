// `livetrace dump`: the trace for other tools — Chrome Trace Event JSON,
// Perfetto's protobuf, folded stacks, or an SVG flame graph (exporters in
// LiveTraceAnalysis).
import ArgumentParser
import Glibc
import LiveTraceAnalysis
import LiveTraceRecording

struct DumpCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "dump",
        abstract: "Export a trace: Chrome JSON, Perfetto protobuf, folded stacks or an SVG flame graph."
    )

    @OptionGroup var trace: TraceDirectoryOption

    @Flag(help: "Chrome Trace Event JSON on stdout (chrome://tracing, the Perfetto UI).")
    var chrome = false

    @Flag(help: "Folded stacks on stdout (`a;b;c NANOSECONDS`), for flame-graph tools and speedscope.")
    var folded = false

    @Option(name: .customLong("flame-graph"), help: ArgumentHelp("Write an interactive SVG flame graph to this file.", valueName: "file.svg"))
    var flameGraph: String?

    @Option(help: ArgumentHelp("Write a Perfetto protobuf trace (TrackEvent slices) to this file.", valueName: "file"))
    var perfetto: String?

    func validate() throws {
        let chosen = [chrome, folded, flameGraph != nil, perfetto != nil].filter { $0 }.count
        guard chosen == 1 else {
            throw ValidationError("choose one of --chrome, --folded, --flame-graph FILE, --perfetto FILE")
        }
    }

    func run() throws {
        let progress = ProgressBar()
        var damage: [RecordingError] = []
        do {
            if chrome || folded {
                let output = TextOutput(fd: STDOUT_FILENO)
                damage = try chrome
                    ? ChromeTrace.write(directory: trace.directory, to: output, progress: progress.callback)
                    : FoldedStacks.write(directory: trace.directory, to: output, progress: progress.callback)
                output.flush()
                if let error = output.error { throw error }
            } else if let flameGraph {
                damage = try FlameGraph.write(directory: trace.directory, to: flameGraph, progress: progress.callback)
            } else if let perfetto {
                damage = try PerfettoTrace.write(directory: trace.directory, to: perfetto, progress: progress.callback)
            }
        } catch {
            progress.finish()
            CommandOutput.error("dump", "\(error)")
            throw ExitCode(1)
        }
        progress.finish()
        try CommandOutput.reportDamage("dump", damage.map(\.description))
    }
}
