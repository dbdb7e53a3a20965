// Running `livetrace record` on compiled fixtures (Tests/Fixtures/record)
// and reading back what it recorded.
import Foundation
import LiveTrace
import TestSupport
import XCTest

/// A finished run: exit status (or the signal, when `signaled`) and output.
struct RunResult {
    var status: Int32
    var signaled: Bool
    var stdout: String
    var stderr: String
}

enum RecordFixtures {
    /// Flags every fixture gets: no sibling calls (a tail call returns for
    /// its caller, so the call tree would not be the source's).
    static let commonFlags = ["-g", "-pthread", "-fno-optimize-sibling-calls"]

    /// The compiler flag sets that give entry sites, one per site kind.
    static let siteFlagSets: [(compiler: String, flags: [String], kind: String)] = [
        ("gcc", ["-O2", "-fpatchable-function-entry=5"], "nop1x5"),
        ("clang", ["-O2", "-fpatchable-function-entry=5"], "nop5"),
        ("gcc", ["-O0", "-pg", "-mfentry"], "call-fentry-got"),
        ("clang", ["-O1", "-pg", "-mfentry"], "call-fentry"),
        ("gcc", ["-O2", "-pg", "-mfentry", "-mnop-mcount", "-mrecord-mcount", "-fno-pie", "-no-pie"], "nop5 (mcount_loc)"),
    ]

    static func build(_ source: String, compiler: String = "gcc", flags: [String] = ["-O2", "-fpatchable-function-entry=5"], output: String) throws -> String {
        try Fixtures.compile(["record/\(source)"], compiler: compiler, flags: flags + commonFlags, output: output)
    }

    /// A fresh scratch directory (the cwd of the runs: -pg programs write gmon.out).
    static func scratch(_ name: String) -> String {
        let path = Fixtures.buildDirectory.appendingPathComponent("record-\(name)-\(UUID().uuidString.prefix(8))").path
        try? FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        return path
    }

    /// Runs `argv` in `directory` to completion.
    static func run(_ argv: [String], in directory: String, stdin: String = "", environment: [String: String] = [:]) throws -> RunResult {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: argv[0])
        process.arguments = Array(argv.dropFirst())
        process.currentDirectoryURL = URL(fileURLWithPath: directory)
        // The siteless cache (SitelessCache.swift) of the test runs stays in
        // the fixtures' directory, not in the user's ~/.cache.
        process.environment = ProcessInfo.processInfo.environment.merging(Fixtures.cacheEnvironment) { $1 }
            .merging(environment) { $1 }
        let outPipe = Pipe(), errPipe = Pipe(), inPipe = Pipe()
        process.standardOutput = outPipe
        process.standardError = errPipe
        process.standardInput = inPipe
        try process.run()
        inPipe.fileHandleForWriting.write(Data(stdin.utf8))
        try? inPipe.fileHandleForWriting.close()
        nonisolated(unsafe) var errData = Data()
        let errDone = DispatchSemaphore(value: 0)
        Thread {
            errData = errPipe.fileHandleForReading.readDataToEndOfFile()
            errDone.signal()
        }.start()
        let outData = outPipe.fileHandleForReading.readDataToEndOfFile()
        errDone.wait()
        process.waitUntilExit()
        return RunResult(
            status: process.terminationStatus, signaled: process.terminationReason == .uncaughtSignal,
            stdout: String(decoding: outData, as: UTF8.self), stderr: String(decoding: errData, as: UTF8.self))
    }

    /// `livetrace record [options] -d DIR -- program args` in `directory`.
    static func record(
        _ options: [String], trace: String, program: [String], in directory: String, stdin: String = "",
        environment: [String: String] = [:]
    ) throws -> RunResult {
        try run([Fixtures.livetraceExecutable, "record"] + options + ["-d", trace, "--"] + program, in: directory, stdin: stdin, environment: environment)
    }

    /// Calls per function name in the trace at `trace`.
    static func calls(_ trace: String) throws -> [String: UInt64] {
        let report = try TraceReport(directory: trace)
        return Dictionary(report.functions.map { ($0.function, $0.calls) }, uniquingKeysWith: +)
    }

    /// The summary line `livetrace record` ends with.
    static func summaryLine(_ stderr: String) -> String? {
        stderr.split(separator: "\n").last { $0.hasPrefix("livetrace record: ") && $0.contains(" events lost") }.map(String.init)
    }
}
