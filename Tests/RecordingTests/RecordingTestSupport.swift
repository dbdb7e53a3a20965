// Helpers shared by the recording tests: scratch trace directories, the
// ring_writer fixture, and stream checks.
import CLiveTraceShims
import Foundation
import LiveTraceRecording
import TestSupport
import XCTest

enum RecordingFixtures {
    /// A fresh, empty directory for one test.
    static func scratchDirectory(_ name: String) -> String {
        let path = Fixtures.buildDirectory.appendingPathComponent("recording-\(name)-\(UUID().uuidString.prefix(8))").path
        try? FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        return path
    }

    /// The repository root, from Tests/Fixtures.
    static var repositoryRoot: URL { Fixtures.sourceDirectory.deletingLastPathComponent().deletingLastPathComponent() }

    /// ring_writer.c compiled with the real writer layer (lt_record.c).
    static func ringWriter() throws -> String {
        let shims = repositoryRoot.appendingPathComponent("Sources/CLiveTraceShims")
        return try Fixtures.compile(
            ["recording/ring_writer.c", shims.appendingPathComponent("lt_record.c").path, shims.appendingPathComponent("lt_context.c").path, shims.appendingPathComponent("lt_sys.c").path],
            compiler: "gcc",
            flags: ["-O2", "-g", "-pthread", "-I", shims.appendingPathComponent("include").path],
            output: "ring_writer")
    }

    /// Runs ring_writer into a fresh trace directory with a drain in this
    /// process running concurrently, then salvages. Returns the trace and
    /// how the writer ended.
    static func recordChild(
        _ name: String, threads: Int, pairs: Int, minPairs: Int, end: String, capacity: Int = 1 << 12,
        ringCount: Int = 16
    ) throws -> (Trace, ProcessResult, DrainSummary) {
        let writer = try RecordingFixtures.ringWriter()
        let dir = RecordingFixtures.scratchDirectory(name)
        let area = try RingArea.create(path: dir + "/" + TraceFormat.ringsFile, ringCount: ringCount, ringCapacity: capacity)
        let drain = try TraceDrain(directory: dir, area: area, command: [writer], pid: 0)
        // The concurrent reader: drains until told to stop.
        let stop = DispatchSemaphore(value: 0), stopped = DispatchSemaphore(value: 0)
        nonisolated(unsafe) var drainError: Error?
        let reader = Thread {
            defer { stopped.signal() }
            while stop.wait(timeout: .now() + .milliseconds(1)) == .timedOut {
                do { try drain.drainOnce() } catch {
                    drainError = error
                    return
                }
            }
        }
        reader.start()
        let result = try Fixtures.run([writer, dir + "/rings", String(threads), String(pairs), String(minPairs), end])
        stop.signal()
        stopped.wait()
        if let drainError { throw drainError }
        // The reader of the run is done; salvage is a new, independent drain.
        drain.detachReader()
        let summary = try TraceDrain.salvage(directory: dir)
        return (try TraceReader.read(directory: dir), result, summary)
    }
}

/// Checks that the events of a stream written by ring_writer thread t are
/// pairs 0..<n in order, with gaps only where a LOST event accounts for
/// them; the first pair is `from`. Returns (pairs seen, events lost).
func checkWriterStream(
    _ stream: ThreadStream, from: UInt64 = 0, file: StaticString = #filePath, line: UInt = #line
) -> (pairs: Int, lost: UInt64) {
    var expectedSequence: UInt64 = from
    var expectEntry = true
    var lost: UInt64 = 0
    var pairs = 0
    var thread: UInt64?
    var pendingLost: UInt64 = 0
    for event in stream.events {
        switch event.kind {
        case .lost:
            lost += event.address
            pendingLost += event.address
        case .entry, .exit:
            let t = event.address >> 32, s = event.address & 0xffff_ffff
            if thread == nil { thread = t }
            XCTAssertEqual(t, thread, "one writer thread per stream", file: file, line: line)
            // Position of this event in the writer's sequence of 2 per pair.
            let position = s * 2 + (event.kind == .exit ? 1 : 0)
            let expected = expectedSequence * 2 + (expectEntry ? 0 : 1)
            XCTAssertEqual(position - expected, pendingLost, "gap not accounted for by LOST events", file: file, line: line)
            if position - expected != pendingLost { return (pairs, lost) }
            pendingLost = 0
            if event.kind == .exit { pairs += 1 }
            expectedSequence = s + (event.kind == .exit ? 1 : 0)
            expectEntry = event.kind == .exit
        }
    }
    return (pairs, lost)
}
