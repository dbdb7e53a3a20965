// `livetrace report`: per function, calls, total and self time (and on
// request average, minimum and maximum) of a recorded trace; per thread with
// --threads; two traces side by side with --diff (rules in
// LiveTraceRecording/Report.swift and LiveTraceAnalysis/ReportDiff.swift;
// the --json layout is documented in docs/FORMAT.md, "report --json").
import ArgumentParser
import Glibc
import LiveTraceAnalysis
import LiveTraceRecording

struct ReportCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "report",
        abstract: "Show calls, total and self time per function of a recorded trace."
    )

    @Option(name: .shortAndLong, help: ArgumentHelp("The trace directory.", valueName: "dir"))
    var directory: String = "livetrace.data"

    @Option(name: .shortAndLong, help: "Sort by total, self, calls, avg, min, max (descending) or name.")
    var sort: String = "total"

    @Flag(help: "Add the average, minimum and maximum time of one call.")
    var avg = false

    @Flag(help: "Add a table of the threads: events, calls, time, losses.")
    var threads = false

    @Option(help: ArgumentHelp("Compare with another trace: both side by side, with the change.", valueName: "other-dir"))
    var diff: String?

    @Flag(help: "Print the stable JSON form instead of the table.")
    var json = false

    func validate() throws {
        guard ReportSort(rawValue: sort) != nil else {
            throw ValidationError("unknown sort key '\(sort)': use one of \(ReportSort.allCases.map(\.rawValue).joined(separator: ", "))")
        }
    }

    func run() throws {
        let order = ReportSort(rawValue: sort)!
        let progress = ProgressBar()
        let report: TraceReport
        let info: TraceInfo
        var other: TraceReport?
        do {
            info = try TraceReader.readInfo(directory: directory)
            report = try TraceReport(directory: directory, sort: order, tolerateDamage: true, progress: progress.callback)
            if let diff { other = try TraceReport(directory: diff, sort: order, tolerateDamage: true, progress: progress.callback) }
        } catch {
            progress.finish()
            CommandOutput.error("report", "\(error)")
            throw ExitCode(1)
        }
        progress.finish()
        let output = TextOutput(fd: STDOUT_FILENO)
        if let other {
            let table = ReportDiff(base: report, other: other, sort: order)
            output.write(json ? table.json() : table.text())
        } else if json {
            output.write(report.json(sort: order, threads: threads))
        } else {
            output.write(report.text(averages: avg || [.avg, .min, .max].contains(order)))
            if threads { output.write("\n" + report.threadsText()) }
        }
        output.flush()
        CommandOutput.incompleteWarning("report", info)
        try CommandOutput.reportDamage("report", report.damage + (other?.damage ?? []))
    }
}
