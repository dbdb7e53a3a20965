// `livetrace report`: per function, calls, total time and self time of a
// recorded trace (rules in LiveTraceRecording/Report.swift; the --json
// layout is documented in docs/FORMAT.md, "report --json").
import ArgumentParser
import Foundation
import LiveTraceRecording

struct ReportCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "report",
        abstract: "Show calls, total and self time per function of a recorded trace."
    )

    @Option(name: .shortAndLong, help: "The trace directory.")
    var directory: String = "livetrace.data"

    @Option(name: .shortAndLong, help: "Sort by total, self or calls (descending).")
    var sort: String = "total"

    @Flag(help: "Print the stable JSON form instead of the table.")
    var json = false

    func validate() throws {
        guard ReportSort(rawValue: sort) != nil else {
            throw ValidationError("unknown sort key '\(sort)': use one of \(ReportSort.allCases.map(\.rawValue).joined(separator: ", "))")
        }
    }

    func run() throws {
        let order = ReportSort(rawValue: sort)!
        let report: TraceReport
        let info: TraceInfo
        do {
            info = try TraceReader.readInfo(directory: directory)
            report = try TraceReport(directory: directory, sort: order)
        } catch {
            FileHandle.standardError.write(Data("livetrace report: \(error)\n".utf8))
            throw ExitCode(1)
        }
        let output = json ? report.json(sort: order) : report.text()
        FileHandle.standardOutput.write(Data(output.utf8))
        if !info.complete {
            FileHandle.standardError.write(Data("livetrace report: the trace is incomplete (recording still running, or not salvaged)\n".utf8))
        }
    }
}
