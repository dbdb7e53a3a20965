// A real compiled program recorded end to end: gcc -finstrument-functions
// hooks write through the real writer layer, a RecordingSession drains,
// captures the program's memory map and symbols, and the report names and
// counts every function exactly.
import Foundation
import LiveTraceRecording
import TestSupport
import XCTest

final class EndToEndTests: XCTestCase {
    func testInstrumentedProgramReportIsExactAndNamed() throws {
        let shims = RecordingFixtures.repositoryRoot.appendingPathComponent("Sources/CLiveTraceShims")
        let program = try Fixtures.compile(
            ["recording/instrumented.c", shims.appendingPathComponent("lt_record.c").path, shims.appendingPathComponent("lt_context.c").path, shims.appendingPathComponent("lt_sys.c").path],
            compiler: "gcc",
            flags: ["-O0", "-g", "-pthread", "-finstrument-functions", "-finstrument-functions-exclude-file-list=lt_record,lt_ring,lt_context,lt_sys",
                    "-I", shims.appendingPathComponent("include").path],
            output: "instrumented")
        let dir = RecordingFixtures.scratchDirectory("end-to-end")
        let session = try RecordingSession.start(directory: dir, command: [program])

        let process = Process()
        process.executableURL = URL(fileURLWithPath: program)
        process.environment = ProcessInfo.processInfo.environment.merging(session.environment) { $1 }
        let stdin = Pipe(), stdout = Pipe()
        process.standardInput = stdin
        process.standardOutput = stdout
        try process.run()
        try session.programStarted(pid: process.processIdentifier)
        // Wait for "ready", capture the map while the program is alive, let it run.
        let reader = stdout.fileHandleForReading
        var output = Data()
        while !String(decoding: output, as: UTF8.self).contains("ready\n") {
            let chunk = reader.availableData
            if chunk.isEmpty { break }
            output.append(chunk)
        }
        try session.captureObjects(pid: process.processIdentifier)
        stdin.fileHandleForWriting.write(Data("go\n".utf8))
        output.append(reader.readDataToEndOfFile())
        process.waitUntilExit()
        XCTAssertEqual(process.terminationStatus, 0)
        XCTAssertEqual(String(decoding: output, as: UTF8.self), "ready\nfib(15) = 610, workers 432 432\n")
        let summary = try session.finish(programDied: false)
        XCTAssertEqual(summary.lost, 0)

        let trace = try TraceReader.read(directory: dir)
        XCTAssertEqual(trace.info.pid, UInt64(process.processIdentifier))
        XCTAssertTrue(trace.objects.objects.contains { $0.path == program && $0.buildId != nil })
        let report = TraceReport(trace: trace)
        func stats(_ name: String) throws -> FunctionStats {
            try XCTUnwrap(report.functions.first { $0.function == name }, "no \(name) in \(report.functions.map(\.function))")
        }
        XCTAssertEqual(try stats("fib").calls, 4763)
        XCTAssertEqual(try stats("worker").calls, 2)
        XCTAssertEqual(try stats("main").calls, 1)
        XCTAssertEqual(report.functions.count, 3, "only the instrumented functions")
        XCTAssertEqual(report.threads, 3)
        XCTAssertEqual(report.unmatchedExits, 0)
        XCTAssertEqual(report.functions.map(\.unfinished), [0, 0, 0])
        // Nesting is consistent: every thread's time is split into self
        // times exactly, and a caller's total covers its callees.
        let main = try stats("main"), fib = try stats("fib"), worker = try stats("worker")
        XCTAssertGreaterThan(main.totalNs, 0)
        XCTAssertLessThanOrEqual(main.selfNs, main.totalNs)
        XCTAssertLessThanOrEqual(worker.selfNs, worker.totalNs)
        XCTAssertEqual(fib.totalNs, fib.selfNs, "fib calls nothing instrumented but itself")
        // Same answer through the CLI, as JSON.
        let cli = try Fixtures.run([Fixtures.livetraceExecutable, "report", "-d", dir, "--json", "-s", "calls"])
        XCTAssertEqual(cli.status, 0, cli.stderr)
        let json = try JSONSerialization.jsonObject(with: Data(cli.stdout.utf8)) as! [String: Any]
        let first = (json["functions"] as! [[String: Any]])[0]
        XCTAssertEqual(first["function"] as? String, "fib")
        XCTAssertEqual(first["calls"] as? Int, 4763)
    }
}
