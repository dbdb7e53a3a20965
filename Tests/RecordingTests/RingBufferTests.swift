// The writer layer and the drain in one process: real threads writing
// through lt_record_entry/exit while the drain reads concurrently; losses
// are counted, never silent.
import CLiveTraceShims
import Foundation
import LiveTraceRecording
import TestSupport
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
    /// Events the 8-byte function record alone cannot carry (format version
    /// 3, lt_ring.h): depths that do not follow the call tree, addresses in
    /// other 4 GiB windows, ENTRY_ONLY and UNWOUND, a pause longer than the
    /// delta field. The writer adds the metadata records; the reader gives
    /// back exactly what was written (the list below is the oracle).
    func testEventsNeedingMetadataRecordsReadBackExactly() throws {
        let dir = RecordingFixtures.scratchDirectory("metadata")
        let area = try RingArea.create(path: dir + "/rings", ringCount: 1, ringCapacity: 1024)
        let drain = try TraceDrain(directory: dir, area: area, command: ["test"], pid: UInt64(getpid()))
        XCTAssertEqual(lt_record_attach(area.base, area.size), 0)
        // (kind, address, depth, flags); the pause comes before the last two.
        let written: [(TraceEvent.Kind, UInt64, UInt32, UInt16)] = [
            (.entry, 0x5555_0000_1000, 0, 0),
            (.entry, 0x7f12_3456_7000, 1, 0),             // another window: BASE
            (.entry, 0x5555_0000_2000, 7, 0),             // a jump in depth: DEPTH
            (.exit, 0x5555_0000_2000, 7, TraceEvent.flagUnwound),
            (.entry, 0x7f12_3456_8000, 2, TraceEvent.flagEntryOnly),
            (.exit, 0x7f12_3456_7000, 1, 0),              // the entry-only call has no exit: DEPTH
            (.entry, 0x0000_0000_0040, 300, 0),           // both
            (.exit, 0x0000_0000_0040, 300, 0),
            (.exit, 0x5555_0000_1000, 0, 0),
            (.entry, 0x5555_0000_1000, 0, 0),             // after the pause: TSC
            (.exit, 0x5555_0000_1000, 0, 0),
        ]
        runThreads(1) { _ in
            for (index, (kind, address, depth, flags)) in written.enumerated() {
                if index == written.count - 2 { usleep(400_000) }
                if kind == .entry {
                    lt_record_entry_flags(UInt(address), depth, flags == 0 ? 0 : UInt32(LT_EVENT_FLAG_UNWOUND.rawValue))
                } else {
                    lt_record_exit(UInt(address), depth, UInt32(flags))
                }
            }
        }
        XCTAssertEqual(lt_record_detach(), 0)
        let summary = try drain.finish()
        XCTAssertEqual(summary.events, UInt64(written.count))
        XCTAssertEqual(summary.lost, 0)
        let trace = try TraceReader.read(directory: dir)
        let events = trace.streams[0].events
        XCTAssertEqual(events.map(\.kind), written.map(\.0))
        XCTAssertEqual(events.map(\.address), written.map(\.1))
        XCTAssertEqual(events.map(\.depth), written.map(\.2))
        XCTAssertEqual(events.map(\.flags), written.map(\.3))
        XCTAssertEqual(events.map(\.timestamp), events.map(\.timestamp).sorted(), "the deltas add up in order")
        let pause = trace.info.clock.nanoseconds(ticks: events[9].timestamp - events[8].timestamp)
        XCTAssertGreaterThanOrEqual(pause, 390_000_000, "the pause survives a delta field of 2^29 ticks")
        XCTAssertLessThan(pause, 30_000_000_000)
        // 11 function records, and metadata records: before the first event
        // its TSC, BASE and DEPTH; a BASE at each of the 5 changes of window;
        // a DEPTH before each of the 5 events whose depth is not derived
        // (7, 2, 1 after the entry at 2, 300, 0 after 300); a TSC after the
        // pause (and after any other gap of 2^29 ticks the thread was off the CPU).
        let path = dir + "/streams/" + trace.streams[0].identity.fileName
        XCTAssertEqual(try StreamReader(path: path).version, 3)
        let bytes = [UInt8](try Data(contentsOf: URL(fileURLWithPath: path)))
        var counts: [String: Int] = [:]
        var offset = TraceFormat.streamHeaderSize
        while offset < bytes.count {
            let n = bytes[offset + 4..<offset + 8].reversed().reduce(0) { $0 << 8 | Int($1) }
            for r in 0..<n {
                let top = bytes[offset + 16 + r * 8 + 7]
                let name = top >> 6 != 3 ? "function" : ["LOST", "TSC", "BASE", "DEPTH", "EPOCH"][Int(top & 0x1F)]
                counts[name, default: 0] += 1
            }
            offset += 16 + n * 8
        }
        XCTAssertEqual(counts["function"], 11)
        XCTAssertEqual(counts["BASE"], 6)
        XCTAssertEqual(counts["DEPTH"], 6)
        XCTAssertGreaterThanOrEqual(counts["TSC"] ?? 0, 2)
        XCTAssertNil(counts["LOST"])
    }

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

    /// The rate the writer's bounded wait converts with (taken over a short
    /// spin at every recording's start) agrees within 2% with a 100 ms
    /// measurement by a program compiled here (__rdtsc, clock_gettime).
    func testRingAreaTSCRateAgreesWithALongMeasurement() throws {
        let oracle = try Fixtures.compile(["recording/tsc_rate.c"], compiler: "gcc", flags: ["-O2"], output: "tsc_rate")
        let dir = RecordingFixtures.scratchDirectory("tsc-rate")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        for _ in 0..<3 {
            let result = try Fixtures.run([oracle])
            let expected = try XCTUnwrap(Double(result.stdout.trimmingCharacters(in: .whitespacesAndNewlines)))
            let area = try RingArea.create(path: dir + "/rings", ringCount: 1, ringCapacity: 256)
            let measured = Double(area.base.assumingMemoryBound(to: lt_area_header.self).pointee.tsc_ticks_per_ms)
            XCTAssertEqual(measured, expected, accuracy: expected * 0.02, "TSC ticks per ms")
        }
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

    /// The drain reserves a stream file's blocks ahead of its writes
    /// (TraceFormat.swift, StreamFileWriter) without the reserve ever
    /// showing in the file: after every pass the file's size is exactly its
    /// header and whole chunks, and the stream reads back complete; once the
    /// stream is closed the blocks past its end are given back.
    func testStreamFileReserveNeverShowsAndIsGivenBackAtTheEnd() throws {
        let dir = RecordingFixtures.scratchDirectory("reserve")
        let area = try RingArea.create(path: dir + "/rings", ringCount: 1, ringCapacity: 1 << 12)
        let drain = try TraceDrain(directory: dir, area: area, command: ["test"], pid: UInt64(getpid()))
        XCTAssertEqual(lt_record_attach(area.base, area.size), 0)
        let written = DispatchSemaphore(value: 0), drained = DispatchSemaphore(value: 0)
        let rounds = 6, pairsPerRound = 1_000
        let writer = Thread {
            for round in 0..<rounds {
                for s in round * pairsPerRound..<(round + 1) * pairsPerRound {
                    lt_record_entry(UInt(1 << 32 | s), 0)
                    lt_record_exit(UInt(1 << 32 | s), 0, 0)
                }
                written.signal()
                drained.wait()
            }
        }
        writer.start()
        func fileStat() throws -> stat {
            let names = try FileManager.default.contentsOfDirectory(atPath: dir + "/streams")
            XCTAssertEqual(names.count, 1)
            var st = stat()
            XCTAssertEqual(stat(dir + "/streams/" + (names.first ?? ""), &st), 0)
            return st
        }
        /// Walks the file's chunks by their headers: they must end exactly
        /// at its size. Returns the function records in them.
        func functionRecordsInWholeChunks(size: Int) throws -> Int {
            let names = try FileManager.default.contentsOfDirectory(atPath: dir + "/streams")
            let bytes = [UInt8](try Data(contentsOf: URL(fileURLWithPath: dir + "/streams/" + names[0])))
            XCTAssertEqual(bytes.count, size)
            var offset = TraceFormat.streamHeaderSize, functions = 0
            while offset + TraceFormat.chunkHeaderSize <= bytes.count {
                let n = bytes[offset + 4..<offset + 8].reversed().reduce(0) { $0 << 8 | Int($1) }
                for r in 0..<n where offset + 16 + r * 8 + 7 < bytes.count && bytes[offset + 16 + r * 8 + 7] >> 6 != 3 {
                    functions += 1
                }
                offset += TraceFormat.chunkHeaderSize + n * 8
            }
            XCTAssertEqual(offset, size, "the file ends with a whole chunk")
            return functions
        }
        var reservedAhead = 0
        for round in 0..<rounds {
            written.wait()
            XCTAssertEqual(try drain.drainOnce(), 2 * pairsPerRound)
            let st = try fileStat()
            XCTAssertEqual(try functionRecordsInWholeChunks(size: Int(st.st_size)), 2 * pairsPerRound * (round + 1))
            reservedAhead = max(reservedAhead, Int(st.st_blocks) * 512 - (Int(st.st_size) + 4095) / 4096 * 4096)
            drained.signal()
        }
        XCTAssertGreaterThanOrEqual(reservedAhead, 1 << 15, "blocks reserved ahead of the writes")
        XCTAssertEqual(lt_record_detach(), 0)
        let summary = try drain.finish()
        XCTAssertEqual(summary.events, UInt64(2 * rounds * pairsPerRound))
        let st = try fileStat()
        XCTAssertEqual(try functionRecordsInWholeChunks(size: Int(st.st_size)), 2 * rounds * pairsPerRound)
        XCTAssertLessThanOrEqual(Int(st.st_blocks) * 512, (Int(st.st_size) + 4095) / 4096 * 4096,
                                 "the reserve past the end is given back")
        let trace = try TraceReader.read(directory: dir)
        XCTAssertEqual(checkWriterStream(trace.streams[0]).pairs, rounds * pairsPerRound)
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

/// The drain's one pass over a chunk (lt_record_scan_records): its CRC,
/// counts and new entry addresses against references that share no code
/// with it (a bitwise CRC-32C, counts and a set kept here), on records in
/// an order no predictor learns, split into chunks the stream's state
/// (CRC aside, the base) runs across.
final class ChunkScanTests: XCTestCase {
    func testScanAgreesWithReferencesOnRecordsInAnyOrder() {
        var generator = SystemRandomNumberGenerator()
        var records: [UInt64] = []
        var functions: UInt64 = 0, lost: UInt64 = 0, lostRecords: UInt64 = 0
        var entered = Set<UInt64>()
        var base: UInt64 = 0x7F12
        records.append(lt_rec_meta(UInt32(LT_REC_BASE.rawValue), base))
        for _ in 0..<50_000 {
            switch UInt32.random(in: 0..<100, using: &generator) {
            case 0:
                let count = UInt64.random(in: 1...1000, using: &generator)
                records.append(lt_rec_lost(count, 3))
                lost += count
                lostRecords += 1
            case 1:
                base = UInt64.random(in: 0x7F00...0x7F03, using: &generator)
                records.append(lt_rec_meta(UInt32(LT_REC_BASE.rawValue), base))
            case 2:
                records.append(lt_rec_meta(UInt32(LT_REC_DEPTH.rawValue), 5))
            case 3:
                records.append(lt_rec_meta(UInt32(LT_REC_TSC.rawValue), 123_456))
            default:
                let low = UInt64.random(in: 0..<64, using: &generator) * 0x40 + 0x1000
                let kind = UInt32.random(in: 1...2, using: &generator)
                records.append(lt_rec_function(kind, 0, UInt64.random(in: 0..<1000, using: &generator), low))
                functions += 1
                if kind == UInt32(LT_EVENT_ENTRY.rawValue) { entered.insert(base << 32 | low) }
            }
        }
        var filter = [UInt64](repeating: .max, count: 64)
        var newEntries = [UInt64](repeating: 0, count: records.count)
        var reported = Set<UInt64>()
        var scanned: (functions: UInt64, lost: UInt64, lostRecords: UInt64) = (0, 0, 0)
        var scan = lt_chunk_scan()
        scan.base = .max
        var crc: UInt32 = 0
        var start = 0
        while start < records.count {
            let count = min(Int.random(in: 1...5000, using: &generator), records.count - start)
            scan.crc = crc
            scan.lost = 0
            scan.lost_records = 0
            scan.functions = 0
            scan.new_entries = 0
            records.withUnsafeBufferPointer { chunk in
                filter.withUnsafeMutableBufferPointer { table in
                    newEntries.withUnsafeMutableBufferPointer { out in
                        lt_record_scan_records(
                            chunk.baseAddress! + start, count, &scan, table.baseAddress, UInt64(table.count - 1), out.baseAddress)
                    }
                }
            }
            crc = scan.crc
            scanned.functions += scan.functions
            scanned.lost += scan.lost
            scanned.lostRecords += scan.lost_records
            reported.formUnion(newEntries.prefix(Int(scan.new_entries)))
            start += count
        }
        let bytes = records.flatMap { record in (0..<8).map { UInt8(truncatingIfNeeded: record >> (8 * $0)) } }
        XCTAssertEqual(crc, TraceFormatTests.crc32(bytes))
        XCTAssertEqual(scanned.functions, functions)
        XCTAssertEqual(scanned.lost, lost)
        XCTAssertEqual(scanned.lostRecords, lostRecords)
        XCTAssertEqual(scan.base, base)
        XCTAssertEqual(reported, entered)
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
