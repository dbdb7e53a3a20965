// `livetrace replay`: each thread's calls as a tree with durations, laid out
// as uftrace's replay is (rules in LiveTraceAnalysis/Replay.swift).
import ArgumentParser
import Glibc
import LiveTraceAnalysis
import LiveTraceRecording

struct ReplayCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "replay",
        abstract: "Show each thread's calls as a tree with durations.",
        discussion: """
            One line per call without shown calls inside it (`name();`), otherwise \
            `name() {` ... `}` with the duration on the closing line. Calls left by \
            longjmp or an exception say `unwound`; calls open at the end of the trace \
            (a crash, a thread still running) say `unfinished`.
            """
    )

    @OptionGroup var trace: TraceDirectoryOption

    @Option(name: .customShort("F"), help: ArgumentHelp("Show only calls of functions matching this glob and the calls inside them (repeatable).", valueName: "glob"))
    var functions: [String] = []

    @Option(name: .customShort("N"), help: ArgumentHelp("Hide calls of functions matching this glob and the calls inside them (repeatable).", valueName: "glob"))
    var notrace: [String] = []

    @Option(name: .customLong("tid"), help: ArgumentHelp("Show only these threads (comma-separated thread ids; repeatable).", valueName: "tid"))
    var tids: [String] = []

    @Option(name: .customShort("D"), help: ArgumentHelp("Show calls down to this many levels.", valueName: "depth"))
    var depth: Int?

    @Option(name: .customShort("t"), help: ArgumentHelp("Hide calls shorter than this time (500ns, 10us, 2ms, 1s).", valueName: "time"))
    var minTime: String?

    @Option(name: .customShort("f"), help: ArgumentHelp("Columns before the function: duration, tid, both comma-separated, or none.", valueName: "fields"))
    var fields: String = "duration,tid"

    @Option(help: ArgumentHelp("Colour: auto (on a terminal), always or never.", valueName: "when"))
    var color: String = "auto"

    func validate() throws {
        if let depth, depth < 1 { throw ValidationError("-D must be at least 1") }
        if let minTime, RecordCommand.parseDuration(minTime) == nil {
            throw ValidationError("-t \(minTime): not a time (500ns, 10us, 2ms, 1s)")
        }
        for tid in tids.flatMap({ $0.split(separator: ",") }) where UInt64(tid) == nil {
            throw ValidationError("--tid \(tid): not a thread id")
        }
        for field in fields.split(separator: ",") where !["duration", "tid", "none"].contains(field) {
            throw ValidationError("-f: unknown field '\(field)' (duration, tid, none)")
        }
        guard ["auto", "always", "never"].contains(color) else {
            throw ValidationError("--color \(color): use auto, always or never")
        }
    }

    func run() throws {
        var options = ReplayOptions()
        options.functions = GlobSet(functions)
        options.notrace = GlobSet(notrace)
        options.tids = Set(tids.flatMap { $0.split(separator: ",") }.compactMap { UInt64($0) })
        options.maxDepth = depth ?? .max
        options.minimumNs = minTime.flatMap(RecordCommand.parseDuration) ?? 0
        let columns = fields.split(separator: ",")
        options.showDuration = columns.contains("duration")
        options.showTid = columns.contains("tid")
        options.color = color == "always" || (color == "auto" && isatty(STDOUT_FILENO) == 1)
        let output = TextOutput(fd: STDOUT_FILENO)
        let progress = ProgressBar()
        let damage: [RecordingError]
        do {
            damage = try Replay.run(directory: trace.directory, options: options, output: output, progress: progress.callback)
        } catch {
            progress.finish()
            CommandOutput.error("replay", "\(error)")
            throw ExitCode(1)
        }
        progress.finish()
        if let info = try? TraceReader.readInfo(directory: trace.directory) { CommandOutput.incompleteWarning("replay", info) }
        try CommandOutput.reportDamage("replay", damage.map(\.description))
    }
}
