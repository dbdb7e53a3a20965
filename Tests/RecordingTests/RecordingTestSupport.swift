// Helpers shared by the recording tests: scratch trace directories, the
// ring_writer fixture, and stream checks.
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
            ["recording/ring_writer.c", shims.appendingPathComponent("lt_record.c").path],
            compiler: "gcc",
            flags: ["-O2", "-g", "-pthread", "-I", shims.appendingPathComponent("include").path],
            output: "ring_writer")
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
