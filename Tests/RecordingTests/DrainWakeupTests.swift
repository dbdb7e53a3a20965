// The wake-ups between writers and the drain (lt_ring.h): a writer past its
// ring's high-water mark wakes a sleeping drain; a writer waiting for room
// is woken by the drain releasing it, not by its timeout; the drain thread
// follows the writers rather than its timer. And the writer's own limits:
// an address wider than the event is counted as lost, never cut.
import CLiveTraceShims
import Foundation
import LiveTraceRecording
import XCTest

final class DrainWakeupTests: XCTestCase {
    private func header(_ area: RingArea) -> UnsafeMutablePointer<lt_area_header> {
        area.base.assumingMemoryBound(to: lt_area_header.self)
    }

    func testWriterPastTheHighWaterMarkWakesTheSleepingDrain() throws {
        let dir = RecordingFixtures.scratchDirectory("wake-mark")
        let area = try RingArea.create(path: dir + "/rings", ringCount: 1, ringCapacity: 1024)
        let drain = try TraceDrain(directory: dir, area: area, command: ["test"], pid: UInt64(getpid()))
        XCTAssertEqual(lt_record_attach(area.base, area.size), 0)
        XCTAssertEqual(header(area).pointee.high_water, 256, "a quarter of the ring")
        // The writer stays alive between its two bursts (an exiting thread
        // retires its ring, which wakes the drain too).
        let belowMark = DispatchSemaphore(value: 0), go = DispatchSemaphore(value: 0), done = DispatchSemaphore(value: 0)
        let writer = Thread {
            writePairs(thread: 0, pairs: 100)
            belowMark.signal()
            go.wait()
            for s in 100..<300 {
                let ip = UInt(1 << 32 | s)
                lt_record_entry(ip, 0)
                lt_record_exit(ip, 0, 0)
            }
            done.signal()
            go.wait()
        }
        writer.start()
        belowMark.wait()
        // A pass: the drain has seen the writer's ring (a claim it has not
        // seen yet would end its sleep at once) and emptied it.
        XCTAssertEqual(try drain.drainOnce(), 200)
        // An empty ring, under the mark of 256: the drain sleeps its whole timeout.
        let quiet = Date()
        XCTAssertFalse(drain.waitForWriters(timeout: .milliseconds(100)), "no writer asked")
        XCTAssertGreaterThanOrEqual(Date().timeIntervalSince(quiet), 0.09)
        // Asleep with a long timeout; the writer's 256th event past the
        // drain's tail ends the sleep.
        nonisolated(unsafe) var woken = false
        nonisolated(unsafe) var slept = 0.0
        let sleeperDone = DispatchSemaphore(value: 0)
        Thread {
            let started = Date()
            woken = drain.waitForWriters(timeout: .seconds(30))
            slept = Date().timeIntervalSince(started)
            sleeperDone.signal()
        }.start()
        let asleepBy = Date().addingTimeInterval(10)
        while withUnsafeMutablePointer(to: &header(area).pointee.drain_sleeping, { lt_atomic_load_acquire_u32($0) }) == 0 {
            guard Date() < asleepBy else {
                go.signal()
                go.signal()
                return XCTFail("the drain never went to sleep")
            }
            usleep(100)
        }
        go.signal()
        done.wait()
        XCTAssertEqual(sleeperDone.wait(timeout: .now() + 10), .success, "the writer's mark did not wake the drain")
        XCTAssertTrue(woken)
        XCTAssertLessThan(slept, 10)
        XCTAssertGreaterThanOrEqual(area.ring(0).pointee.wakes, 1)
        XCTAssertEqual(area.ring(0).pointee.waits, 0, "the ring never filled")
        go.signal()
        XCTAssertEqual(lt_record_detach(), 0)
        let summary = try drain.finish()
        XCTAssertEqual(summary.events, 600)
        XCTAssertEqual(summary.lost, 0)
    }

    func testNewlyClaimedRingEndsTheDrainsSleep() throws {
        let dir = RecordingFixtures.scratchDirectory("wake-claim")
        let area = try RingArea.create(path: dir + "/rings", ringCount: 4, ringCapacity: 1024)
        let drain = try TraceDrain(directory: dir, area: area, command: ["test"], pid: UInt64(getpid()))
        XCTAssertEqual(lt_record_attach(area.base, area.size), 0)
        XCTAssertEqual(try drain.drainOnce(), 0, "no ring in use")
        XCTAssertFalse(drain.waitForWriters(timeout: .milliseconds(20)), "nothing claimed: the whole timeout")
        // One event claims a ring: the drain's next sleep ends at once, so
        // its next pass looks at the new ring.
        // The writer stays alive: an exiting thread's retired ring would
        // wake the drain too.
        let wrote = DispatchSemaphore(value: 0), release = DispatchSemaphore(value: 0)
        Thread {
            lt_record_entry(0x1000, 0)
            wrote.signal()
            release.wait()
        }.start()
        wrote.wait()
        defer { release.signal() }
        let started = Date()
        XCTAssertTrue(drain.waitForWriters(timeout: .seconds(30)))
        XCTAssertLessThan(Date().timeIntervalSince(started), 5)
        XCTAssertEqual(try drain.drainOnce(), 1)
        XCTAssertEqual(lt_record_detach(), 0)
        XCTAssertEqual(try drain.finish().events, 1)
    }

    func testWriterWaitingForRoomIsWokenByTheDrainNotItsTimeout() throws {
        let dir = RecordingFixtures.scratchDirectory("wake-room")
        // A 10 s bounded wait: a writer that slept until its timeout would
        // make this test last minutes.
        let area = try RingArea.create(path: dir + "/rings", ringCount: 1, ringCapacity: 256, waitTimeoutMicroseconds: 10_000_000)
        let drain = try TraceDrain(directory: dir, area: area, command: ["test"], pid: UInt64(getpid()))
        XCTAssertEqual(lt_record_attach(area.base, area.size), 0)
        let finished = DispatchSemaphore(value: 0)
        let started = Date()
        Thread {
            writePairs(thread: 0, pairs: 2_000)
            finished.signal()
        }.start()
        // A slow reader: one pass every 2 ms; the writer fills its 256 slots
        // between passes and waits each time.
        while finished.wait(timeout: .now() + .milliseconds(2)) == .timedOut {
            try drain.drainOnce()
        }
        let elapsed = Date().timeIntervalSince(started)
        let waits = area.ring(0).pointee.waits
        XCTAssertEqual(lt_record_detach(), 0)
        let summary = try drain.finish()
        XCTAssertEqual(summary.lost, 0, "an attached reader is waited for")
        XCTAssertEqual(summary.events, 4_000)
        XCTAssertGreaterThanOrEqual(waits, 5, "the ring filled again and again")
        XCTAssertLessThan(elapsed, 8, "\(waits) waits: the writer slept until its timeout instead of being woken")
        let trace = try TraceReader.read(directory: dir)
        XCTAssertEqual(trace.streams.map { checkWriterStream($0).pairs }, [2_000])
    }

    func testDrainThreadFollowsTheWritersNotItsTimer() throws {
        let dir = RecordingFixtures.scratchDirectory("wake-thread")
        // The drain's timer (500 ms) is far longer than a ring of 4096
        // events takes to fill: only the writers' wake-ups keep them going.
        let recorder = try Recorder.start(
            directory: dir, ringCount: 2, ringCapacity: 4096, waitTimeoutMicroseconds: 20_000_000,
            drainInterval: .milliseconds(500))
        let started = Date()
        runThreads(1) { writePairs(thread: $0, pairs: 50_000) }
        let elapsed = Date().timeIntervalSince(started)
        let summary = try recorder.stop()
        XCTAssertEqual(summary.lost, 0)
        XCTAssertEqual(summary.events, 100_000)
        // About 25 fills of the ring: on the timer alone, 12 s.
        XCTAssertLessThan(elapsed, 6)
        let trace = try TraceReader.read(directory: dir)
        XCTAssertEqual(trace.streams.map { checkWriterStream($0).pairs }, [50_000])
    }

    func testAddressWiderThanTheEventIsCountedLostNotCut() throws {
        let dir = RecordingFixtures.scratchDirectory("wide-address")
        let area = try RingArea.create(path: dir + "/rings", ringCount: 1, ringCapacity: 64)
        let drain = try TraceDrain(directory: dir, area: area, command: ["test"], pid: UInt64(getpid()))
        XCTAssertEqual(lt_record_attach(area.base, area.size), 0)
        runThreads(1) { _ in
            lt_record_entry(0x1000, 0)
            lt_record_entry(UInt(1) << 50 | 0x2000, 1)
            lt_record_exit(0x1000, 0, 0)
        }
        XCTAssertEqual(lt_record_detach(), 0)
        let summary = try drain.finish()
        XCTAssertEqual(summary.lost, 1)
        let events = try TraceReader.read(directory: dir).streams[0].events
        XCTAssertEqual(events.map(\.kind), [.entry, .lost, .exit])
        XCTAssertEqual(events.map(\.address), [0x1000, 1, 0x1000])
    }

    func testDrainWritesCacheSizedChunksSplitAtTheWrap() throws {
        let dir = RecordingFixtures.scratchDirectory("chunks")
        let area = try RingArea.create(path: dir + "/rings", ringCount: 1, ringCapacity: 16_384)
        let drain = try TraceDrain(directory: dir, area: area, command: ["test"], pid: UInt64(getpid()))
        XCTAssertEqual(lt_record_attach(area.base, area.size), 0)
        let hold = DispatchSemaphore(value: 0), wrote = DispatchSemaphore(value: 0), done = DispatchSemaphore(value: 0)
        Thread {
            writePairs(thread: 0, pairs: 6_000)
            wrote.signal()
            hold.wait()
            for s in 6_000..<10_000 {
                let ip = UInt(1 << 32 | s)
                lt_record_entry(ip, 0)
                lt_record_exit(ip, 0, 0)
            }
            wrote.signal()
            done.wait()
        }.start()
        wrote.wait()
        // 12000 events: one chunk of TraceDrain.chunkEvents, then the rest.
        XCTAssertEqual(try drain.drainOnce(), 12_000)
        hold.signal()
        wrote.wait()
        // 8000 more, from slot 12003 (below).
        XCTAssertEqual(try drain.drainOnce(), 8_000)
        done.signal()
        XCTAssertEqual(lt_record_detach(), 0)
        _ = try drain.finish()
        let trace = try TraceReader.read(directory: dir)
        XCTAssertEqual(trace.streams.map { checkWriterStream($0).pairs }, [10_000])
        let path = dir + "/streams/" + trace.streams[0].identity.fileName
        let bytes = [UInt8](try Data(contentsOf: URL(fileURLWithPath: path)))
        var counts: [Int] = []
        var offset = TraceFormat.streamHeaderSize
        while offset < bytes.count {
            XCTAssertEqual(Array(bytes[offset..<offset + 4]), Array("LTCK".utf8))
            let count = Int(bytes[offset + 4]) | Int(bytes[offset + 5]) << 8 | Int(bytes[offset + 6]) << 16
            counts.append(count)
            offset += TraceFormat.chunkHeaderSize + count * TraceFormat.eventSize
        }
        XCTAssertEqual(TraceDrain.chunkEvents, 8_192)
        // Records: the first 12000 events and their TSC, BASE and DEPTH
        // records (12003), then 8000 events from slot 12003 (and a TSC
        // record when the writer's pause lasted 2^29 ticks or more): 4381
        // up to the end of the ring, the rest from its start.
        XCTAssertEqual(Array(counts.prefix(3)), [8_192, 3_811, 4_381])
        XCTAssertTrue([3_619, 3_620].contains(counts.last ?? 0), "\(counts)")
        XCTAssertEqual(counts.count, 4)
    }
}
