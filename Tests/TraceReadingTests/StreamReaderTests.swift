// StreamReader, the one streaming reader of event streams: the same events
// as the whole-file decoder whatever its buffer size (chunks larger than the
// buffer are read twice: checksum, then events), no event of a damaged chunk
// handed out, and the events before damage all handed out.
import Foundation
import LiveTraceRecording
import XCTest

final class StreamReaderTests: XCTestCase {
    /// A stream of `count` events in one chunk, then the same again.
    func writeStream(_ count: Int) throws -> (path: String, events: [TraceEvent]) {
        var random = DamagedTraceTests.Random(state: UInt64(count))
        var events: [TraceEvent] = []
        for i in 0..<count {
            let address = SyntheticTraces.addresses["leaf"]! + random.next() % 64
            events.append(TraceEvent(kind: i % 2 == 0 ? .entry : .exit, address: address, timestamp: UInt64(i) * 7))
        }
        var trace = SyntheticTraces.trace([events])
        let dir = try SyntheticTraces.directory("reader-\(count)", trace)
        let path = try TraceReader.streamPaths(directory: dir)[0]
        // A second chunk: the file's first chunk appended again.
        var bytes = try Data(contentsOf: URL(fileURLWithPath: path))
        bytes.append(bytes[64...])
        try bytes.write(to: URL(fileURLWithPath: path))
        trace.streams[0].events += events
        return (path, trace.streams[0].events)
    }

    func read(_ path: String, bufferBytes: Int, oneAtATime: Bool) throws -> [TraceEvent] {
        let reader = try StreamReader(path: path, bufferBytes: bufferBytes)
        var events: [TraceEvent] = []
        if oneAtATime {
            while let event = try reader.next() { events.append(event) }
        } else {
            try reader.forEach { events.append($0) }
        }
        XCTAssertEqual(reader.eventsRead, events.count)
        XCTAssertEqual(reader.offset, reader.fileSize)
        return events
    }

    func testEveryBufferSizeReadsTheSameEvents() throws {
        let (path, expected) = try writeStream(1000)
        for bufferBytes in [16, 48, 4096, 16_000, 16_016, 1 << 20] {
            XCTAssertEqual(try read(path, bufferBytes: bufferBytes, oneAtATime: false), expected, "\(bufferBytes)")
            XCTAssertEqual(try read(path, bufferBytes: bufferBytes, oneAtATime: true), expected, "\(bufferBytes)")
        }
    }

    func testNoEventOfADamagedLargeChunkIsHandedOut() throws {
        let (path, expected) = try writeStream(1000)
        // The last byte of the second chunk: a chunk larger than the buffer
        // must still be refused before its first event.
        var bytes = try Data(contentsOf: URL(fileURLWithPath: path))
        bytes[bytes.count - 1] ^= 0x40
        try bytes.write(to: URL(fileURLWithPath: path))
        // 1000 events and their first event's EPOCH, TSC, BASE and DEPTH records.
        let secondChunk = 64 + 16 + 1004 * 8
        for bufferBytes in [4096, 1 << 20] {
            let reader = try StreamReader(path: path, bufferBytes: bufferBytes)
            var events: [TraceEvent] = []
            XCTAssertThrowsError(try reader.forEach { events.append($0) }) { error in
                XCTAssertEqual(error as? RecordingError, .damagedTrace(
                    file: path, reason: "checksum mismatch in chunk at offset \(secondChunk) (events 1004..<2008)"))
            }
            XCTAssertEqual(events, Array(expected.prefix(1000)), "\(bufferBytes)")
        }
    }

    func testTheWholeFileDecoderAndTheReaderAgree() throws {
        let traces = try ReadingFixtures.traces()
        for directory in [traces.normal, traces.crash] {
            var whole: [[TraceEvent]] = []
            try TraceReader.forEachStream(directory: directory) { whole.append($0.events) }
            let streamed = try TraceReader.streamPaths(directory: directory).map { try read($0, bufferBytes: 64, oneAtATime: false) }
            XCTAssertEqual(streamed, whole)
            XCTAssertEqual(streamed.map(\.count).reduce(0, +), directory == traces.normal ? 28 : 30)
        }
    }
}
