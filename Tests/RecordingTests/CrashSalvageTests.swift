// A traced program that dies (SIGSEGV, abort) leaves its ring area behind;
// the drain, running in this other process while the program writes and
// once more after it died, salvages every event published before the death.
import CLiveTraceShims
import Foundation
import LiveTraceRecording
import TestSupport
import XCTest

final class CrashSalvageTests: XCTestCase {
    func testSalvageAfterSIGSEGVHoldsEveryEventOfJoinedThreads() throws {
        // Rings large enough that no event waits for the reader: this test
        // is about the crash, the throughput test is elsewhere.
        let (trace, result, summary) = try RecordingFixtures.recordChild(
            "segv-joined", threads: 3, pairs: 50_000, minPairs: 1, end: "joined-segv", capacity: 1 << 17)
        XCTAssertTrue(result.signaled)
        XCTAssertEqual(result.status, SIGSEGV)
        XCTAssertTrue(trace.info.salvaged)
        XCTAssertEqual(trace.streams.count, 3)
        for stream in trace.streams {
            let (pairs, lost) = checkWriterStream(stream)
            XCTAssertEqual(lost, 0)
            XCTAssertEqual(pairs, 50_000, "every pair written before the crash is in the trace")
        }
        XCTAssertEqual(summary.lost, 0)
    }

    func testSalvageAfterSIGSEGVWhileThreadsWrite() throws {
        // The crash comes while every thread is still writing: each stream
        // must be an unbroken prefix of its thread's sequence, at least as
        // long as what the thread had written when the main thread crashed.
        let (trace, result, _) = try RecordingFixtures.recordChild("segv-running", threads: 4, pairs: 5_000_000, minPairs: 20_000, end: "segv")
        XCTAssertTrue(result.signaled)
        XCTAssertEqual(result.status, SIGSEGV)
        XCTAssertEqual(trace.streams.count, 4)
        for stream in trace.streams {
            // Gaps are allowed only where LOST events account for them
            // (checkWriterStream fails otherwise).
            let lost = checkWriterStream(stream).lost
            let stored = UInt64(stream.events.filter { $0.kind != .lost }.count)
            XCTAssertGreaterThanOrEqual(stored + lost, 40_000)
        }
    }

    func testSalvageAfterAbortWithoutConcurrentReaderCountsWhatDidNotFit() throws {
        // No drain runs during this one: the rings fill, the writers find no
        // reader and count; the salvage holds the rings' contents plus the
        // counts, and together they are every event written.
        let writer = try RecordingFixtures.ringWriter()
        let dir = RecordingFixtures.scratchDirectory("abort")
        let area = try RingArea.create(path: dir + "/" + TraceFormat.ringsFile, ringCount: 4, ringCapacity: 1 << 12)
        _ = area
        let result = try Fixtures.run([writer, dir + "/rings", "2", "10000", "10000", "abort"])
        XCTAssertTrue(result.signaled)
        XCTAssertEqual(result.status, SIGABRT)
        let summary = try TraceDrain.salvage(directory: dir)
        XCTAssertFalse(FileManager.default.fileExists(atPath: dir + "/rings"), "a salvaged area is removed")
        let trace = try TraceReader.read(directory: dir)
        XCTAssertEqual(trace.streams.count, 2)
        var storedTotal: UInt64 = 0
        for stream in trace.streams {
            let stored = UInt64(stream.events.filter { $0.kind != .lost }.count)
            let lost = checkWriterStream(stream).lost
            // A ring of 4096 records: the events, the TSC, BASE and DEPTH
            // records before the first (and a TSC record per 2^29-tick gap).
            XCTAssertLessThanOrEqual(stored, (1 << 12) - 3)
            XCTAssertGreaterThan(stored, (1 << 12) - 20)
            XCTAssertEqual(stored + lost, 20_000)
            storedTotal += stored
        }
        XCTAssertEqual(summary.lost, 2 * 20_000 - storedTotal)
    }

    func testCleanExitLeavesACompleteTrace() throws {
        let (trace, result, summary) = try RecordingFixtures.recordChild("exit", threads: 2, pairs: 30_000, minPairs: 1, end: "exit", capacity: 1 << 17)
        XCTAssertEqual(result.status, 0)
        XCTAssertFalse(result.signaled)
        XCTAssertEqual(result.stdout, "ready\n")
        XCTAssertEqual(summary.events, 120_000)
        XCTAssertEqual(summary.lost, 0)
        for stream in trace.streams { XCTAssertEqual(checkWriterStream(stream).pairs, 30_000) }
    }

    func testRingAreaOfAnotherKindIsRefusedByTheWriter() throws {
        let writer = try RecordingFixtures.ringWriter()
        let dir = RecordingFixtures.scratchDirectory("bad-area")
        let bogus = dir + "/rings"
        try Data(repeating: 0x41, count: 8192).write(to: URL(fileURLWithPath: bogus))
        let result = try Fixtures.run([writer, bogus, "1", "10", "1", "exit"])
        XCTAssertEqual(result.status, 3)
        XCTAssertTrue(result.stderr.contains("-1001"), result.stderr)
        XCTAssertThrowsError(try TraceDrain.salvage(directory: dir)) { error in
            XCTAssertTrue("\(error)".contains("bad magic"), "\(error)")
        }
    }
}

/// The CLI's side: a RecordingSession around a program that finds its ring
/// area through LIVETRACE_RINGS.
final class RecordingSessionTests: XCTestCase {
    private func runSession(_ name: String, end: String) throws -> (Trace, ProcessResult, DrainSummary) {
        let writer = try RecordingFixtures.ringWriter()
        let dir = RecordingFixtures.scratchDirectory(name)
        // Small rings the drain must keep emptying; writers wait up to 5 s
        // for it, so only a drain starved that long (not a busy machine)
        // makes them lose.
        let session = try RecordingSession.start(
            directory: dir, command: [writer], ringCapacity: 1 << 12, waitTimeoutMicroseconds: 5_000_000)
        XCTAssertEqual(session.environment["LIVETRACE_RINGS"], dir + "/rings")
        let result = try Fixtures.run([writer, "-", "3", "40000", "1", end], environment: session.environment)
        let summary = try session.finish(programDied: result.signaled)
        XCTAssertFalse(FileManager.default.fileExists(atPath: dir + "/rings"))
        return (try TraceReader.read(directory: dir), result, summary)
    }

    func testSessionRecordsAProgramThatExits() throws {
        let (trace, result, summary) = try runSession("session-exit", end: "exit")
        XCTAssertEqual(result.status, 0, result.stderr)
        XCTAssertEqual(summary.threads, 3)
        XCTAssertEqual(summary.events, 3 * 80_000)
        XCTAssertEqual(summary.lost, 0)
        XCTAssertTrue(trace.info.complete)
        XCTAssertFalse(trace.info.salvaged)
        for stream in trace.streams { XCTAssertEqual(checkWriterStream(stream).pairs, 40_000) }
    }

    func testSessionSalvagesAProgramThatDies() throws {
        let (trace, result, summary) = try runSession("session-segv", end: "joined-segv")
        XCTAssertTrue(result.signaled)
        XCTAssertTrue(trace.info.salvaged)
        XCTAssertEqual(summary.events + summary.lost, 3 * 80_000)
        for stream in trace.streams {
            // Count stored events, not pairs: when one half of a pair was
            // lost (and counted), the other half is still a stored event.
            let lost = checkWriterStream(stream).lost
            let stored = UInt64(stream.events.filter { $0.kind != .lost }.count)
            XCTAssertEqual(stored + lost, 80_000)
        }
    }

    func testProgramWithoutTheVariableIsNotRecorded() throws {
        let writer = try RecordingFixtures.ringWriter()
        let result = try Fixtures.run([writer, "-", "1", "10", "1", "exit"], environment: ["LIVETRACE_RINGS": ""])
        XCTAssertEqual(result.status, 3)
        XCTAssertTrue(result.stderr.contains("-\(ENOENT)"), result.stderr)
    }
}
