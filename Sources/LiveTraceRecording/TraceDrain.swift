// The drain: the single reader of a ring area. It moves published events
// from every ring into the trace directory's stream files while the program
// runs, and runs once more at the end — after a clean stop, or after the
// program died (salvage: a dead writer's published events are all in the
// file-backed mapping, so nothing published before the death is lost).
//
// One pass over ring k (reader side of the protocol in lt_ring.h):
//   1. state = load_acquire(ring.state); skip FREE and CLAIMING.
//   2. a generation the drain has not seen opens a new stream file.
//   3. h = load_acquire(ring.head); write records [tail, h) as chunks of at
//      most chunkEvents, none across the ring's wrap, each straight from
//      the ring (one writev of the chunk header and the slots: the ring's
//      record layout is the file's, and a stream's decoding state runs
//      across chunks as it runs across the ring) after one pass over its
//      records (checksum, LOST counts, events, functions entered);
//   4. after each chunk, store_release(tail) past it: the writer may reuse
//      those slots; once the pass has freed high_water slots, and at its
//      end, a writer asleep waiting for room is woken (lt_ring_release_tail).
//   5. RETIRED (the thread exited) or the final pass: the writer's lost_total
//      minus the LOST counts already in the stream is appended as one more
//      LOST record, so a loss the writer could not yet write is still
//      counted (it changes no decoding state: its time is the stream's last,
//      its depth the one an entry after the last event would have).
//   6. RETIRED: reset the ring's counters and store_release(state, FREE).
import CLiveTraceShims
import Glibc

/// What one drain saw, in total.
public struct DrainSummary: Equatable, Sendable {
    public var threads: Int
    /// Entry and exit events written to the streams.
    public var events: UInt64
    /// Events lost in the streams plus those lost without a ring.
    public var lost: UInt64
    public var lostWithoutRing: UInt64
    /// Bytes of the stream files.
    public var bytes: UInt64
    /// Distinct functions entered (distinct entry addresses).
    public var functions: Int = 0
}

public final class TraceDrain: @unchecked Sendable {
    public let directory: String
    public let area: RingArea
    private var info: TraceInfo

    private struct Cursor {
        var generation: UInt64
        var writer: StreamFileWriter
        var lostInStream: UInt64 = 0
        /// Address >> 32 of the stream's last BASE record (lt_record_scan_records).
        var base: UInt64 = .max
    }
    /// Owned by the thread calling drainOnce/finish (one at a time).
    private var cursors: [Int: Cursor] = [:]
    /// The 16-byte header of the chunk being written.
    private let chunkHeader: UnsafeMutableRawBufferPointer
    /// Owned by the thread calling drainOnce/waitForWriters (refreshActiveRings).
    private var activeRings: [UInt32] = []
    private var claimsSeen: UInt32 = 0
    private var ringsScanned = false
    /// Room for the entry addresses one chunk may add (lt_record_scan_events).
    private let newEntries: UnsafeMutableBufferPointer<UInt64>
    /// Events per chunk written: 128 KiB, a quarter of an L2 cache.
    public static let chunkEvents = 8192
    private var streams = Set<String>()
    /// The threads (pid, tid) of those streams: a thread has one stream per
    /// execution context it recorded in (docs/FORMAT.md).
    private var threadsSeen = Set<[UInt64]>()
    /// Entry addresses seen in the events moved (DrainSummary.functions).
    private var entered = Set<UInt64>()
    /// A direct-mapped filter in front of `entered`: an address found in its
    /// slot was inserted already, so the hot functions of a trace cost one
    /// compare per event, not a hash-set insert.
    private var recentlyEntered = [UInt64](repeating: .max, count: 1 << 12)
    private var events: UInt64 = 0
    private var lostInStreams: UInt64 = 0
    private var bytes: UInt64 = 0

    /// Starts draining `area` into `directory`; writes info.json (marked
    /// incomplete) and, when none exists, an empty objects.json, so the
    /// directory is a readable trace from this moment on. `options`: how
    /// the recording was made, for info.json (nil: not known).
    public init(
        directory: String, area: RingArea, command: [String], pid: UInt64, options: RecordingOptions? = nil
    ) throws(RecordingError) {
        self.directory = directory
        self.area = area
        chunkHeader = .allocate(byteCount: TraceFormat.chunkHeaderSize, alignment: 16)
        newEntries = .allocate(capacity: TraceDrain.chunkEvents)
        try Sys.mkdir(directory)
        try Sys.mkdir(directory + "/" + TraceFormat.streamsDirectory)
        let now = RingArea.calibrationPairNow()
        info = TraceInfo(
            command: command, pid: pid, clock: ClockCalibration(start: area.startPair, end: now),
            ringCount: area.ringCount, ringCapacity: area.ringCapacity, complete: false, options: options)
        try writeInfo()
        if !Sys.exists(directory + "/" + TraceFormat.objectsFile) {
            try writeObjects(ObjectTable(objects: []))
        }
        area.setReader(attached: true)
    }

    deinit {
        chunkHeader.deallocate()
        newEntries.deallocate()
    }

    /// Salvages the trace directory of a program that died: drains what its
    /// writers published, counts what they lost, and marks it salvaged.
    public static func salvage(directory: String) throws(RecordingError) -> DrainSummary {
        var command: [String] = []
        var pid: UInt64 = 0
        var options: RecordingOptions?
        if let old = try? TraceReader.readInfo(directory: directory) {
            command = old.command
            pid = old.pid
            options = old.options
        }
        // The recorder of a live process still owns the rings: draining them
        // beside it would race its writers and its own final drain.
        if pid != 0 && processIsRunning(pid) { throw .recorderAlive(pid: pid, directory: directory) }
        let area = try RingArea.open(path: directory + "/" + TraceFormat.ringsFile)
        try removeStreamsWithoutHeader(directory: directory)
        let drain = try TraceDrain(directory: directory, area: area, command: command, pid: pid, options: options)
        let summary = try drain.finish(salvaged: true)
        // Everything the ring area held is in the streams now.
        try Sys.unlinkIfPresent(area.path)
        return summary
    }

    /// A stream file the dead recorder created but had not yet given its
    /// whole header (killed between open and write) holds no event: it goes,
    /// so the salvaged trace reads. Its ring's events are in the ring area
    /// and the salvage's drain writes them to a new file.
    static func removeStreamsWithoutHeader(directory: String) throws(RecordingError) {
        let streamsPath = directory + "/" + TraceFormat.streamsDirectory
        guard access(streamsPath, F_OK) == 0 else { return }
        for name in try TraceReader.listDirectory(streamsPath) where name.hasSuffix("." + TraceFormat.streamExtension) {
            let path = streamsPath + "/" + name
            var status = stat()
            if stat(path, &status) == 0 && status.st_size < TraceFormat.streamHeaderSize {
                try Sys.unlinkIfPresent(path)
            }
        }
    }

    /// True while process `pid` exists and is not a zombie (a zombie runs
    /// nothing: its rings are final). EPERM from kill(2) means it exists.
    static func processIsRunning(_ pid: UInt64) -> Bool {
        guard pid <= UInt64(Int32.max), kill(pid_t(pid), 0) == 0 || errno == EPERM else { return false }
        guard let stat = try? Sys.readFile("/proc/\(pid)/stat"),
              let close = stat.lastIndex(of: UInt8(ascii: ")")), close + 2 < stat.count else { return true }
        return stat[close + 2] != UInt8(ascii: "Z")
    }

    /// The totals of every stream file in `directory` (each one decoded and
    /// checked), with `lostWithoutRing` added.
    static func summarize(directory: String, lostWithoutRing: UInt64) throws(RecordingError) -> DrainSummary {
        let streamsPath = directory + "/" + TraceFormat.streamsDirectory
        var summary = DrainSummary(threads: 0, events: 0, lost: lostWithoutRing, lostWithoutRing: lostWithoutRing, bytes: 0)
        var entered = Set<UInt64>()
        var threads = Set<[UInt64]>()
        for name in try TraceReader.listDirectory(streamsPath) where name.hasSuffix("." + TraceFormat.streamExtension) {
            let path = streamsPath + "/" + name
            let reader = try StreamReader(path: path)
            threads.insert([reader.identity.pid, reader.identity.tid])
            summary.threads = threads.count
            summary.bytes += UInt64(reader.fileSize)
            try reader.forEach { event in
                if event.kind == .lost { summary.lost += event.address } else { summary.events += 1 }
                if event.kind == .entry { entered.insert(event.address) }
            }
        }
        summary.functions = entered.count
        return summary
    }

    /// One pass over every ring; returns the number of events moved (entries,
    /// exits and LOST records; not the metadata records beside them).
    @discardableResult
    public func drainOnce() throws(RecordingError) -> Int {
        refreshActiveRings()
        var moved = 0
        var freed = false
        for index in activeRings {
            moved += try drain(ring: Int(index), final: false)
            freed = freed || state(of: index) == LT_RING_FREE.rawValue
        }
        if freed { activeRings.removeAll { state(of: $0) == LT_RING_FREE.rawValue } }
        return moved
    }

    /// The rings a pass looks at: those not FREE when the ring states were
    /// last read, read again only when the area's claim counter moved (a
    /// writer bumps it after each claim; only the drain frees rings). A
    /// pass thus touches the rings in use, not every ring of the area.
    private func refreshActiveRings() {
        let claims = withUnsafeMutablePointer(to: &area.header.pointee.claims) { lt_atomic_load_acquire_u32($0) }
        guard !ringsScanned || claims != claimsSeen else { return }
        ringsScanned = true
        claimsSeen = claims
        activeRings = (0..<UInt32(area.ringCount)).filter { state(of: $0) != LT_RING_FREE.rawValue }
    }

    private func state(of index: UInt32) -> UInt32 {
        withUnsafeMutablePointer(to: &area.ring(Int(index)).pointee.state) { lt_atomic_load_acquire_u32($0) }
    }

    /// The last pass: everything published, every loss counted, the end
    /// calibration pair, info.json marked complete. The reader is detached
    /// afterwards (writers still running count their events as lost).
    public func finish(salvaged: Bool = false, objects: ObjectTable? = nil) throws(RecordingError) -> DrainSummary {
        defer { area.setReader(attached: false) }
        for index in 0..<area.ringCount {
            _ = try drain(ring: index, final: true)
        }
        cursors.removeAll()
        if let objects { try writeObjects(objects) }
        info.clock.end = RingArea.calibrationPairNow()
        info.lostWithoutRing = area.lostWithoutRing
        // A salvage may follow a drain that already emptied and freed rings:
        // its totals come from the files, not from what this drain moved.
        let total = salvaged
            ? try TraceDrain.summarize(directory: directory, lostWithoutRing: info.lostWithoutRing) : summary
        info.lostEvents = total.lost
        info.complete = true
        info.salvaged = salvaged
        try writeInfo()
        return total
    }

    public var summary: DrainSummary {
        DrainSummary(
            threads: threadsSeen.count, events: events, lost: lostInStreams + area.lostWithoutRing,
            lostWithoutRing: area.lostWithoutRing, bytes: bytes, functions: entered.count)
    }

    /// Records the program's pid once it is known (info.json is rewritten).
    public func setProgram(pid: UInt64) throws(RecordingError) {
        info.pid = pid
        try writeInfo()
    }

    /// The drain thread's pause between passes: returns at once when a ring
    /// is past its high-water mark (a writer waiting for room is) or
    /// retired, or a ring was claimed; otherwise sleeps until a writer asks for the drain (passing its
    /// mark, waiting for room, exiting) or `timeout` passes. Returns whether
    /// a writer asked (false: the timeout passed).
    @discardableResult
    public func waitForWriters(timeout: Duration) -> Bool {
        let (seconds, attoseconds) = timeout.components
        let nanoseconds = UInt64(max(seconds, 0)) * 1_000_000_000 + UInt64(max(attoseconds, 0) / 1_000_000_000)
        return activeRings.withUnsafeBufferPointer {
            lt_area_drain_wait(area.header, nanoseconds, $0.baseAddress, UInt32($0.count), claimsSeen) != 0
        }
    }

    /// Ends a waitForWriters in progress now (the drain thread is being
    /// stopped).
    public func interruptWait() { lt_area_wake_drain(area.header) }

    /// Tells writers nobody drains any more: a full ring then loses at once.
    public func detachReader() { area.setReader(attached: false) }

    // MARK: - one ring

    private func drain(ring index: Int, final: Bool) throws(RecordingError) -> Int {
        let ring = area.ring(index)
        // Step 1.
        let state = withUnsafeMutablePointer(to: &ring.pointee.state) { lt_atomic_load_acquire_u32($0) }
        guard state == LT_RING_OWNED.rawValue || state == LT_RING_RETIRED.rawValue else { return 0 }
        // Step 2.
        let generation = ring.pointee.generation
        if cursors[index]?.generation != generation {
            let identity = StreamIdentity(
                pid: ring.pointee.pid, tid: ring.pointee.tid, ring: UInt32(index), generation: generation)
            let path = directory + "/" + TraceFormat.streamsDirectory + "/" + identity.fileName
            // A stream an earlier drain started (salvage after a live drain):
            // its LOST counts are already in the file.
            var lostAlready: UInt64 = 0
            var base = UInt64.max
            if Sys.exists(path) {
                var existingEvents: UInt64 = 0
                try StreamReader(path: path).forEach { event in
                    if event.kind == .lost { lostAlready += event.address } else { existingEvents += 1; base = event.address >> 32 }
                }
                lostInStreams += lostAlready
                events += existingEvents
                bytes += UInt64(Sys.fileSizeOrZero(path) - TraceFormat.streamHeaderSize)
            }
            cursors[index] = Cursor(
                generation: generation, writer: try StreamFileWriter(path: path, identity: identity), lostInStream: lostAlready,
                base: base)
            if streams.insert(identity.fileName).inserted { bytes += UInt64(TraceFormat.streamHeaderSize) }
            threadsSeen.insert([identity.pid, identity.tid])
        }
        // Step 3.
        let head = withUnsafeMutablePointer(to: &ring.pointee.head) { lt_atomic_load_acquire_u64($0) }
        let tail = ring.pointee.tail
        let capacity = UInt64(area.ringCapacity)
        let count = Int(head &- tail)
        var moved = 0
        guard head >= tail, count <= Int(capacity) else {
            throw .badRingArea(path: area.path, reason: "ring \(index): head \(head) and tail \(tail) are inconsistent")
        }
        let eventSize = TraceFormat.eventSize
        let highWater = UInt64(area.header.pointee.high_water)
        // Chunks of at most chunkEvents, none across the ring's wrap: each
        // is scanned, checksummed and written while it is in this core's
        // cache, and its slots go back to the writer at once.
        var position = tail
        while position < head {
            let slot = Int(position & (capacity - 1))
            let chunkCount = min(Int(head - position), Int(capacity) - slot, TraceDrain.chunkEvents)
            let slots = lt_ring_records(ring)! + slot
            var scan = lt_chunk_scan()
            scan.base = cursors[index]!.base
            recentlyEntered.withUnsafeMutableBufferPointer { filter in
                lt_record_scan_records(
                    slots, chunkCount, &scan, filter.baseAddress, UInt64(filter.count - 1), newEntries.baseAddress)
            }
            cursors[index]!.base = scan.base
            for address in newEntries.prefix(Int(scan.new_entries)) { entered.insert(address) }
            StreamCodec.fillChunkHeader(chunkHeader.baseAddress!, eventCount: chunkCount, crc: scan.crc)
            try cursors[index]!.writer.append(
                header: UnsafeRawBufferPointer(chunkHeader),
                spans: [UnsafeRawBufferPointer(start: slots, count: chunkCount * eventSize)])
            cursors[index]!.lostInStream += scan.lost
            lostInStreams += scan.lost
            events += scan.functions
            moved += Int(scan.functions + scan.lost_records)
            bytes += UInt64(TraceFormat.chunkHeaderSize + chunkCount * eventSize)
            position += UInt64(chunkCount)
            // Step 4. A writer asleep waiting for room is woken once the
            // pass has freed high_water slots (or at its end), not after
            // every chunk: woken per chunk, it refilled 8192 slots and slept
            // again, in lock step with the drain.
            if position - tail >= highWater || position == head {
                lt_ring_release_tail(ring, position)
            } else {
                withUnsafeMutablePointer(to: &ring.pointee.tail) { lt_atomic_store_release_u64($0, position) }
            }
        }
        // Step 5.
        let retired = state == LT_RING_RETIRED.rawValue
        if retired || final {
            let lostTotal = withUnsafeMutablePointer(to: &ring.pointee.lost_total) { lt_atomic_load_acquire_u64($0) }
            let cursor = cursors[index]!
            if lostTotal > cursor.lostInStream {
                let pending = lostTotal - cursor.lostInStream
                let nextDepth = ring.pointee.next_depth
                let depth = UInt32(nextDepth == .max ? 0 : min(nextDepth, UInt64(TraceFormat.depthMax)))
                var records: [UInt8] = []
                var left = pending
                while left > 0 {
                    let part = min(left, TraceFormat.lostCountMax)
                    records.appendLE(lt_rec_lost(part, depth))
                    left -= part
                }
                try cursor.writer.append(eventBytes: records)
                cursors[index]!.lostInStream = lostTotal
                lostInStreams += pending
                bytes += UInt64(TraceFormat.chunkHeaderSize + records.count)
            }
        }
        // Step 6.
        if retired {
            ring.pointee.head = 0
            ring.pointee.lost_total = 0
            ring.pointee.lost_emitted = 0
            withUnsafeMutablePointer(to: &ring.pointee.tail) { lt_atomic_store_release_u64($0, 0) }
            withUnsafeMutablePointer(to: &ring.pointee.state) { lt_atomic_store_release_u32($0, UInt32(LT_RING_FREE.rawValue)) }
            cursors[index] = nil
        }
        return moved
    }

    // MARK: - metadata files

    private func writeInfo() throws(RecordingError) {
        try Sys.writeFileAtomically(directory + "/" + TraceFormat.infoFile, try TraceJSON.encode(info))
    }

    public func writeObjects(_ table: ObjectTable) throws(RecordingError) {
        try Sys.writeFileAtomically(directory + "/" + TraceFormat.objectsFile, try TraceJSON.encode(table))
    }
}
