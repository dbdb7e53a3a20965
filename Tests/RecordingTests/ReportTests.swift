// `report`: calls, total and self time per function, exact on synthetic
// traces with known nesting (recursion, several threads), and the CLI.
import Foundation
import LiveTraceRecording
import TestSupport
import XCTest

final class ReportTests: XCTestCase {
    // Functions of the synthetic program, at link-time addresses in one
    // object loaded with bias 0x400000.
    static let bias: UInt64 = 0x40_0000
    static let mainAddress: UInt64 = bias + 0x1000
    static let fibAddress: UInt64 = bias + 0x1100
    static let leafAddress: UInt64 = bias + 0x1200
    static let workerAddress: UInt64 = bias + 0x1300

    static let objects = ObjectTable(objects: [
        TraceObject(
            path: "/synthetic/prog", buildId: "feedface", loadBias: bias, ranges: [[bias + 0x1000, bias + 0x2000]],
            symbols: [
                TraceSymbol(name: "main", address: 0x1000, size: 0x100),
                TraceSymbol(name: "fib", address: 0x1100, size: 0x100),
                TraceSymbol(name: "leaf", address: 0x1200, size: 0x100),
                TraceSymbol(name: "worker", address: 0x1300, size: 0x100),
            ])
    ])

    /// Builds events from (time, "+name" | "-name") with an injected clock.
    static func events(_ script: [(UInt64, String)]) -> [TraceEvent] {
        let addresses = ["main": mainAddress, "fib": fibAddress, "leaf": leafAddress, "worker": workerAddress]
        var depth: UInt32 = 0
        return script.map { time, step in
            let name = String(step.dropFirst())
            if step.hasPrefix("+") {
                defer { depth += 1 }
                return TraceEvent(kind: .entry, address: addresses[name]!, timestamp: time, depth: depth)
            }
            depth -= 1
            return TraceEvent(kind: .exit, address: addresses[name]!, timestamp: time, depth: depth)
        }
    }

    /// 1 tick = 1 ns exactly; or 3 ticks = 1 ns.
    static func trace(_ streams: [[TraceEvent]], ticksPerNs: UInt64 = 1) -> Trace {
        let clock = ClockCalibration(
            start: ClockPair(tsc: 0, monotonicNs: 0), end: ClockPair(tsc: 3_000_000_000 * ticksPerNs / 3, monotonicNs: 1_000_000_000))
        let info = TraceInfo(command: ["prog"], pid: 1, clock: clock)
        let threadStreams = streams.enumerated().map { i, events in
            ThreadStream(identity: StreamIdentity(pid: 1, tid: UInt64(100 + i), ring: UInt32(i)), events: events)
        }
        return Trace(info: info, objects: objects, streams: threadStreams)
    }

    /// Thread 1: main calls fib(3) recursively; each fib leaf calls leaf.
    ///
    ///   0   +main
    ///   10    +fib            (fib 3)
    ///   20      +fib          (fib 2)
    ///   30        +fib        (fib 1)
    ///   35          +leaf
    ///   45          -leaf
    ///   50        -fib
    ///   60        +fib        (fib 0)
    ///   70        -fib
    ///   80      -fib
    ///   90      +fib          (fib 1)
    ///   92        +leaf
    ///   98        -leaf
    ///   100     -fib
    ///   130   -fib
    ///   200 -main
    ///
    /// Thread 2: worker calls leaf twice; worker is itself unfinished at the
    /// end of the stream (the thread still ran), closed at the last event.
    ///
    ///   1000 +worker, 1010 +leaf, 1030 -leaf, 1040 +leaf, 1045 -leaf, 1100 (last event: -leaf at 1100?)
    static let thread1 = events([
        (0, "+main"), (10, "+fib"), (20, "+fib"), (30, "+fib"), (35, "+leaf"), (45, "-leaf"), (50, "-fib"),
        (60, "+fib"), (70, "-fib"), (80, "-fib"), (90, "+fib"), (92, "+leaf"), (98, "-leaf"), (100, "-fib"),
        (130, "-fib"), (200, "-main"),
    ])
    static let thread2 = events([
        (1000, "+worker"), (1010, "+leaf"), (1030, "-leaf"), (1040, "+leaf"), (1045, "-leaf"), (1100, "+fib"), (1150, "-fib"),
    ])

    func stats(_ report: TraceReport, _ name: String) throws -> FunctionStats {
        try XCTUnwrap(report.functions.first { $0.function == name }, "no \(name) in \(report.functions)")
    }

    func testTotalsAndSelfTimesAreExactUnderRecursionAndThreads() throws {
        let report = TraceReport(trace: Self.trace([Self.thread1, Self.thread2]))
        // main: total 200; its only child is the outer fib (10..130 = 120).
        let main = try stats(report, "main")
        XCTAssertEqual([main.calls, main.totalNs, main.selfNs, main.unfinished], [1, 200, 80, 0])
        // fib: 6 calls (5 on thread 1, 1 on thread 2). Total counts the
        // outermost call once: 120 (thread 1) + 50 (thread 2) = 170.
        // Self: fib3 120-(60+10)=50; fib2 60-(20+10)=30; fib1 20-10=10;
        // fib0 10; fib1' 10-6=4; thread 2's fib 50: 154.
        let fib = try stats(report, "fib")
        XCTAssertEqual([fib.calls, fib.totalNs, fib.selfNs, fib.unfinished], [6, 170, 154, 0])
        // leaf: 2 + 2 calls: 10 + 6 + 20 + 5 = 41, no callees.
        let leaf = try stats(report, "leaf")
        XCTAssertEqual([leaf.calls, leaf.totalNs, leaf.selfNs], [4, 41, 41])
        // worker never exits: closed at its stream's last timestamp 1150,
        // total 150, self 150 - 20 - 5 - 50 = 75, marked unfinished.
        let worker = try stats(report, "worker")
        XCTAssertEqual([worker.calls, worker.totalNs, worker.selfNs, worker.unfinished], [1, 150, 75, 1])
        // Self times add up to the threads' covered time: 200 + 150.
        XCTAssertEqual(report.functions.map(\.selfNs).reduce(0, +), 350)
        XCTAssertEqual(report.threads, 2)
        XCTAssertEqual(report.unmatchedExits, 0)
        XCTAssertEqual(report.functions.map(\.function), ["main", "fib", "worker", "leaf"], "sorted by total")
    }

    func testStreamingReportOfADirectoryEqualsTheInMemoryReport() throws {
        let dir = RecordingFixtures.scratchDirectory("report-streaming")
        let trace = Self.trace([Self.thread1, Self.thread2])
        try TraceWriter.write(trace, to: dir)
        for sort in ReportSort.allCases {
            XCTAssertEqual(try TraceReport(directory: dir, sort: sort), TraceReport(trace: trace, sort: sort))
        }
    }

    func testTicksAreConvertedWithTheCalibration() throws {
        // 3 ticks per ns: every duration is a third.
        let scaled = Self.thread1.map { event -> TraceEvent in
            var e = event
            e.timestamp *= 3
            return e
        }
        let report = TraceReport(trace: Self.trace([scaled], ticksPerNs: 3))
        XCTAssertEqual(try stats(report, "main").totalNs, 200)
        XCTAssertEqual(try stats(report, "fib").selfNs, 104)
    }

    func testUnwoundFramesAndStrayExitsAreHandledNotFatal() throws {
        // fib is left by longjmp: no exit of its own; main's exit closes it.
        // A stray exit of leaf matches nothing and is counted.
        let events = Self.events([(0, "+main"), (10, "+fib"), (20, "+leaf"), (30, "-leaf")])
            + [TraceEvent(kind: .exit, address: Self.leafAddress, timestamp: 35, depth: 5),
               TraceEvent(kind: .exit, address: Self.mainAddress, timestamp: 50, depth: 0)]
        let report = TraceReport(trace: Self.trace([events]))
        XCTAssertEqual(report.unmatchedExits, 1)
        XCTAssertEqual(try stats(report, "fib").totalNs, 40)
        XCTAssertEqual(try stats(report, "main").selfNs, 10)
    }

    func testSortOrders() throws {
        let trace = Self.trace([Self.thread1, Self.thread2])
        XCTAssertEqual(TraceReport(trace: trace, sort: .calls).functions.map(\.function), ["fib", "leaf", "main", "worker"])
        XCTAssertEqual(TraceReport(trace: trace, sort: .self).functions.map(\.function), ["fib", "main", "worker", "leaf"])
    }

    // MARK: - the CLI

    func testReportCommandJSONIsStableAndExact() throws {
        let dir = RecordingFixtures.scratchDirectory("report-cli")
        var trace = Self.trace([Self.thread1, Self.thread2])
        trace.streams[1].events.insert(TraceEvent(kind: .lost, address: 4, timestamp: 1001), at: 1)
        try TraceWriter.write(trace, to: dir)
        let result = try Fixtures.run([Fixtures.livetraceExecutable, "report", "-d", dir, "-s", "calls", "--json"])
        XCTAssertEqual(result.status, 0, result.stderr)
        let json = try JSONSerialization.jsonObject(with: Data(result.stdout.utf8)) as! [String: Any]
        XCTAssertEqual(json["version"] as? Int, 1)
        XCTAssertEqual(json["sort"] as? String, "calls")
        XCTAssertEqual(json["lost_events"] as? Int, 4)
        let functions = json["functions"] as! [[String: Any]]
        XCTAssertEqual(functions.map { $0["function"] as! String }, ["fib", "leaf", "main", "worker"])
        let fib = functions[0]
        XCTAssertEqual(fib["calls"] as? Int, 6)
        XCTAssertEqual(fib["total_ns"] as? Int, 170)
        XCTAssertEqual(fib["self_ns"] as? Int, 154)
        XCTAssertEqual(fib["address"] as? String, "0x401100")
    }

    func testReportCommandTable() throws {
        let dir = RecordingFixtures.scratchDirectory("report-table")
        try TraceWriter.write(Self.trace([Self.thread1]), to: dir)
        let result = try Fixtures.run([Fixtures.livetraceExecutable, "report", "--directory", dir])
        XCTAssertEqual(result.status, 0, result.stderr)
        let lines = result.stdout.split(separator: "\n").map(String.init)
        XCTAssertEqual(lines[0], "  Total time   Self time       Calls  Function")
        XCTAssertEqual(lines[2], "      200 ns       80 ns           1  main")
        XCTAssertEqual(lines[3], "      120 ns      104 ns           5  fib")
    }

    func testReportCommandHelpNamesItsOptions() throws {
        let help = try Fixtures.run([Fixtures.livetraceExecutable, "report", "--help"])
        XCTAssertEqual(help.status, 0)
        for fragment in ["USAGE: livetrace report", "-d, --directory", "livetrace.data", "-s, --sort", "--json"] {
            XCTAssertTrue(help.stdout.contains(fragment), "help lacks '\(fragment)':\n\(help.stdout)")
        }
    }

    func testReportCommandRejectsDamageClearly() throws {
        let dir = RecordingFixtures.scratchDirectory("report-damaged")
        try TraceWriter.write(Self.trace([Self.thread1]), to: dir)
        let stream = dir + "/streams/" + StreamIdentity(pid: 1, tid: 100, ring: 0).fileName
        let handle = try FileHandle(forUpdating: URL(fileURLWithPath: stream))
        try handle.truncate(atOffset: 100)
        try handle.close()
        let result = try Fixtures.run([Fixtures.livetraceExecutable, "report", "-d", dir])
        XCTAssertEqual(result.status, 1)
        XCTAssertTrue(result.stderr.contains("damaged trace file"), result.stderr)
        XCTAssertTrue(result.stderr.contains("truncated chunk at offset 64"), result.stderr)
        let missing = try Fixtures.run([Fixtures.livetraceExecutable, "report", "-d", dir + "/nope"])
        XCTAssertEqual(missing.status, 1)
        XCTAssertTrue(missing.stderr.contains("no trace directory \(dir)/nope"), missing.stderr)
        let badSort = try Fixtures.run([Fixtures.livetraceExecutable, "report", "-d", dir, "-s", "size"])
        XCTAssertNotEqual(badSort.status, 0)
        XCTAssertTrue(badSort.stderr.contains("unknown sort key 'size'"), badSort.stderr)
    }
}
