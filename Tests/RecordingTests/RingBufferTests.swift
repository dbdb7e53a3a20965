// The writer layer and the drain in one process: real threads writing
// through lt_record_entry/exit while the drain reads concurrently; losses
// are counted, never silent.
import CLiveTraceShims
import Foundation
import LiveTraceRecording
import XCTest

/// Starts `count` threads running `body(threadIndex)` and waits for all.
func runThreads(_ count: Int, _ body: @escaping @Sendable (Int) -> Void) {
    let group = DispatchGroup()
    for t in 0..<count {
        group.enter()
        let thread = Thread {
            body(t)
            group.leave()
        }
        thread.start()
    }
    group.wait()
}

/// Writes `pairs` entry/exit pairs with ring_writer's address scheme.
@Sendable func writePairs(thread t: Int, pairs: Int) {
    for s in 0..<pairs {
        let ip = UInt((t + 1) << 32 | s)
        lt_record_entry(ip, 0)
        lt_record_exit(ip, 0, 0)
    }
}

final class RingBufferTests: XCTestCase {
    func testConcurrentWritersAndDrainAccountForEveryEvent() throws {
        let dir = RecordingFixtures.scratchDirectory("concurrent")
        let threads = 4, pairs = 200_000
        // Small rings: each wraps about a hundred times while the drain runs.
        // A writer waits up to 1 s for the drain, so only a drain starved
        // for a whole second (not a busy machine) could make it lose.
        let recorder = try Recorder.start(directory: dir, ringCount: 8, ringCapacity: 4096, waitTimeoutMicroseconds: 1_000_000)
        runThreads(threads) { writePairs(thread: $0, pairs: pairs) }
        let summary = try recorder.stop()
        let trace = try TraceReader.read(directory: dir)
        XCTAssertTrue(trace.info.complete)
        XCTAssertEqual(trace.streams.count, threads)
        var stored: UInt64 = 0, lost: UInt64 = 0
        for stream in trace.streams {
            let streamLost = checkWriterStream(stream).lost
            let streamStored = UInt64(stream.events.filter { $0.kind != .lost }.count)
            XCTAssertEqual(streamStored + streamLost, UInt64(pairs * 2), "thread \(stream.identity.tid)")
            stored += streamStored
            lost += streamLost
        }
        XCTAssertEqual(stored + lost, UInt64(threads * pairs * 2), "every event stored or counted as lost")
        XCTAssertEqual(summary.events, stored)
        XCTAssertEqual(summary.lost, lost)
        XCTAssertEqual(trace.info.lostEvents, lost)
        // With the reader attached, writers wait rather than drop.
        XCTAssertEqual(lost, 0, "writers wait for an attached reader rather than drop")
    }

    func testWriterWhoseReaderIsGoneCountsTheLoss() throws {
        let dir = RecordingFixtures.scratchDirectory("reader-gone")
        let area = try RingArea.create(path: dir + "/rings", ringCount: 2, ringCapacity: 1024)
        let drain = try TraceDrain(directory: dir, area: area, command: ["test"], pid: UInt64(getpid()))
        XCTAssertEqual(lt_record_attach(area.base, area.size), 0)
        // The reader drains once, then goes away.
        runThreads(1) { writePairs(thread: $0, pairs: 300) }
        XCTAssertEqual(try drain.drainOnce(), 600)
        drain.detachReader()
        let started = Date()
        runThreads(1) { t in
            for s in 300..<5_000 {
                let ip = UInt((t + 1) << 32 | s)
                lt_record_entry(ip, 0)
                lt_record_exit(ip, 0, 0)
            }
        }
        // A gone reader is not waited for.
        XCTAssertLessThan(Date().timeIntervalSince(started), 1.0)
        XCTAssertEqual(lt_record_detach(), 0)
        let summary = try drain.finish()
        let trace = try TraceReader.read(directory: dir)
        // One stream per writer thread: the first wrote 600 events, all
        // stored; the second filled its ring (1024) and lost the rest.
        XCTAssertEqual(trace.streams.count, 2)
        let first = try XCTUnwrap(trace.streams.first { $0.events.first?.address == 1 << 32 })
        let stream = try XCTUnwrap(trace.streams.first { $0 != first })
        XCTAssertEqual(checkWriterStream(first).pairs, 300)
        let stored = UInt64(stream.events.filter { $0.kind != .lost }.count)
        // The ring holds 1024 records: the events, and before the first one
        // its TSC, BASE and DEPTH records (another TSC record for each gap
        // of 2^29 ticks the writer's thread was off the CPU).
        XCTAssertLessThanOrEqual(stored, 1024 - 3)
        XCTAssertGreaterThan(stored, 1000)
        XCTAssertEqual(checkWriterStream(stream, from: 300).lost, 9_400 - stored)
        XCTAssertEqual(summary.lost, 9_400 - stored)
        XCTAssertEqual(trace.info.lostEvents, 9_400 - stored)
        XCTAssertEqual(stream.events.last?.kind, .lost, "the loss is the last thing in the stream")
    }

    func testStalledReaderIsWaitedForBoundedlyThenLossIsCounted() throws {
        let dir = RecordingFixtures.scratchDirectory("stalled")
        let area = try RingArea.create(path: dir + "/rings", ringCount: 1, ringCapacity: 256, waitTimeoutMicroseconds: 50_000)
        let drain = try TraceDrain(directory: dir, area: area, command: ["test"], pid: UInt64(getpid()))
        XCTAssertEqual(lt_record_attach(area.base, area.size), 0)
        // Attached but never draining: the first overflowing event waits
        // once (about 50 ms), later ones at the same tail do not wait again.
        let started = Date()
        runThreads(1) { writePairs(thread: $0, pairs: 1_000) }
        let elapsed = Date().timeIntervalSince(started)
        XCTAssertGreaterThanOrEqual(elapsed, 0.045)
        XCTAssertLessThan(elapsed, 1.0)
        XCTAssertEqual(lt_record_detach(), 0)
        let summary = try drain.finish()
        // 256 records: the events and the metadata records before the
        // first (TSC, BASE, DEPTH; a TSC more per 2^29-tick gap).
        XCTAssertLessThanOrEqual(summary.events, 256 - 3)
        XCTAssertGreaterThan(summary.events, 240)
        XCTAssertEqual(summary.events + summary.lost, 2_000)
    }

    func testThreadsBeyondTheRingCountAreCountedAsLostWithoutRing() throws {
        let dir = RecordingFixtures.scratchDirectory("no-ring")
        let area = try RingArea.create(path: dir + "/rings", ringCount: 1, ringCapacity: 1 << 12)
        let drain = try TraceDrain(directory: dir, area: area, command: ["test"], pid: UInt64(getpid()))
        XCTAssertEqual(lt_record_attach(area.base, area.size), 0)
        // Thread A holds the only ring (stays alive); thread B finds none.
        let holdA = DispatchSemaphore(value: 0), aWrote = DispatchSemaphore(value: 0)
        let a = Thread {
            writePairs(thread: 0, pairs: 10)
            aWrote.signal()
            holdA.wait()
        }
        a.start()
        aWrote.wait()
        runThreads(1) { _ in writePairs(thread: 1, pairs: 25) }
        holdA.signal()
        XCTAssertEqual(lt_record_detach(), 0)
        let summary = try drain.finish()
        XCTAssertEqual(summary.events, 20)
        XCTAssertEqual(summary.lostWithoutRing, 50)
        XCTAssertEqual(try TraceReader.read(directory: dir).info.lostWithoutRing, 50)
    }

    func testExitedThreadsRingIsDrainedAndReused() throws {
        let dir = RecordingFixtures.scratchDirectory("reuse")
        let recorder = try Recorder.start(directory: dir, ringCount: 2, ringCapacity: 1 << 10)
        // Six threads one after another through two rings: each exit
        // retires its ring, the drain frees it, the next thread claims it.
        for t in 0..<6 {
            runThreads(1) { _ in writePairs(thread: t, pairs: 100) }
            let deadline = Date().addingTimeInterval(5)
            while Date() < deadline {
                let states = (0..<2).map { recorder.area.ring($0).pointee.state }
                if states.allSatisfy({ $0 == LT_RING_FREE.rawValue }) { break }
                usleep(1_000)
            }
        }
        let summary = try recorder.stop()
        XCTAssertEqual(summary.lost, 0)
        let trace = try TraceReader.read(directory: dir)
        XCTAssertEqual(trace.streams.count, 6, "one stream per thread")
        XCTAssertEqual(Set(trace.streams.map(\.identity.tid)).count, 6)
        for stream in trace.streams { XCTAssertEqual(checkWriterStream(stream).pairs, 100) }
    }

    func testRecorderNamesFunctionsFromTheProcessSymbols() throws {
        let dir = RecordingFixtures.scratchDirectory("symbols")
        let recorder = try Recorder.start(directory: dir)
        let handle = dlopen(nil, RTLD_NOW)
        let malloc = UInt64(UInt(bitPattern: dlsym(handle, "malloc")))
        let free = UInt64(UInt(bitPattern: dlsym(handle, "free")))
        runThreads(1) { _ in
            lt_record_entry(UInt(malloc), 0)
            lt_record_entry(UInt(free), 1)
            lt_record_exit(UInt(free), 1, 0)
            lt_record_exit(UInt(malloc), 0, 0)
        }
        try recorder.stop()
        XCTAssertFalse(FileManager.default.fileExists(atPath: dir + "/rings"), "the ring area is removed after a complete stop")
        let trace = try TraceReader.read(directory: dir)
        let report = TraceReport(trace: trace)
        let names = Set(report.functions.map(\.function))
        let holders = trace.objects.objects.filter { object in object.ranges.contains { $0[0] <= malloc && malloc < $0[1] } }
            .map { "\($0.path) bias 0x\(String($0.loadBias, radix: 16)) \($0.symbols.count) symbols \($0.symbolsError ?? "")" }
        XCTAssertTrue(names.contains { $0.contains("malloc") }, "\(names); malloc 0x\(String(malloc, radix: 16)) in \(holders)")
        XCTAssertTrue(names.contains { $0.contains("free") }, "\(names)")
        XCTAssertTrue(trace.objects.objects.contains { $0.path.contains("libc.so") && $0.buildId != nil })
    }
}

final class RecordingSoakTests: XCTestCase {
    /// LIVETRACE_SOAK=1 (make soak): eight writers, small rings, a long run.
    func testSoakManyWritersSmallRings() throws {
        guard ProcessInfo.processInfo.environment["LIVETRACE_SOAK"] == "1" else {
            throw XCTSkip("set LIVETRACE_SOAK=1 to run")
        }
        let dir = RecordingFixtures.scratchDirectory("soak")
        let threads = 8, pairs = 1_000_000
        let recorder = try Recorder.start(directory: dir, ringCount: 16, ringCapacity: 1 << 14)
        runThreads(threads) { writePairs(thread: $0, pairs: pairs) }
        let summary = try recorder.stop()
        let trace = try TraceReader.read(directory: dir)
        var stored: UInt64 = 0, lost: UInt64 = 0
        for stream in trace.streams {
            lost += checkWriterStream(stream).lost
            stored += UInt64(stream.events.filter { $0.kind != .lost }.count)
        }
        XCTAssertEqual(stored + lost, UInt64(threads * pairs * 2))
        XCTAssertEqual(summary.lost, lost)
        print("soak: \(stored) events stored, \(lost) lost")
    }
}
