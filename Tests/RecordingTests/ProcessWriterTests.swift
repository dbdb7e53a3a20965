// What real programs do to the writer: fork (the child must write into a
// ring of its own) and signal handlers that record while they interrupt the
// thread's own write (counted as lost, never a corrupted ring). A handler
// that interrupts a writer waiting for room in a full ring is such a case
// too; the rings here are large enough that writers rarely wait, so both
// stored and lost handler events occur.
import Foundation
import LiveTraceRecording
import TestSupport
import XCTest

final class ProcessWriterTests: XCTestCase {
    func testForkedChildRecordsIntoItsOwnRing() throws {
        let (trace, result, summary) = try RecordingFixtures.recordChild(
            "fork", threads: 2, pairs: 20_000, minPairs: 1, end: "fork", capacity: 1 << 16)
        XCTAssertEqual(result.status, 0, result.stderr)
        XCTAssertEqual(summary.lost, 0)
        // Threads 0 and 1 and the main thread (62) in the parent, 63 in the child.
        XCTAssertEqual(trace.streams.count, 4)
        var byThread: [UInt64: ThreadStream] = [:]
        for stream in trace.streams {
            byThread[(stream.events.first?.address ?? 0) >> 32] = stream
        }
        let parent = try XCTUnwrap(byThread[63]).identity.pid
        XCTAssertEqual(checkWriterStream(try XCTUnwrap(byThread[1])).pairs, 20_000)
        XCTAssertEqual(checkWriterStream(try XCTUnwrap(byThread[2])).pairs, 20_000)
        let main = try XCTUnwrap(byThread[63])
        XCTAssertEqual(checkWriterStream(main).pairs, 1_000, "the parent's ring holds only the parent's events")
        let child = try XCTUnwrap(byThread[64])
        XCTAssertEqual(checkWriterStream(child).pairs, 20_000)
        XCTAssertNotEqual(child.identity.pid, parent, "the child writes under its own pid")
        XCTAssertNotEqual(child.identity.ring, main.identity.ring, "the child claimed a ring of its own")
    }

    func testSignalHandlerEventsAreStoredOrCountedNeverCorrupting() throws {
        let handlerAddress: UInt64 = 0xABC_0000
        let (trace, result, summary) = try RecordingFixtures.recordChild(
            "signals", threads: 2, pairs: 300_000, minPairs: 1, end: "signals", capacity: 1 << 20, ringCount: 4)
        XCTAssertEqual(result.status, 0, result.stderr)
        let handlerPairs = try XCTUnwrap(
            result.stdout.split(separator: "\n").first { $0.hasPrefix("handler pairs ") }.flatMap { UInt64($0.dropFirst(14)) })
        XCTAssertGreaterThan(handlerPairs, 0, "the timer never fired")
        var handlerStored: UInt64 = 0, lost: UInt64 = 0, writerStored: UInt64 = 0
        for stream in trace.streams {
            // The writer's own sequence, with the handler's events taken out,
            // is complete and in order: a handler never broke a write.
            var writerEvents: [TraceEvent] = []
            for event in stream.events {
                switch event.kind {
                case .lost: lost += event.address
                case _ where event.address == handlerAddress: handlerStored += 1
                default: writerEvents.append(event)
                }
            }
            writerStored += UInt64(writerEvents.count)
            if !writerEvents.isEmpty {
                let only = ThreadStream(identity: stream.identity, events: writerEvents)
                XCTAssertEqual(checkWriterStream(only).pairs, 300_000)
            }
        }
        print("signal handler pairs \(handlerPairs): \(handlerStored) events stored, \(lost) lost (interrupted writes), \(trace.info.lostWithoutRing) after thread exit")
        XCTAssertEqual(writerStored, 2 * 2 * 300_000)
        // A signal that reaches a thread after its ring was released at
        // thread exit is counted without a ring.
        let withoutRing = trace.info.lostWithoutRing
        XCTAssertEqual(handlerStored + lost + withoutRing, 2 * handlerPairs, "every handler event stored or counted")
        XCTAssertEqual(summary.lost, lost + withoutRing)
        XCTAssertEqual(trace.info.lostEvents, lost + withoutRing)
    }
}
