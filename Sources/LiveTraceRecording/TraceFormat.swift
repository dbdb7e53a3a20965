// The trace directory format (docs/FORMAT.md is its description for users).
//
// Format history (TraceFormat.version; bump on any incompatible change and
// add a line here and in docs/FORMAT.md):
//   1  info.json, objects.json, streams/*.lts with 64-byte stream header and
//      CRC-32C-checked chunks of 24-byte events.
//   2  16-byte events: u64 TSC, u64 word packing the address (48 bits), the
//      depth (13 bits, saturating), UNWOUND and the kind (2 bits) — the
//      ring's own layout, so the drain writes ring memory as it is.
//   3  8-byte records (lt_ring.h): a function record packs kind, flag
//      (UNWOUND on exits, ENTRY_ONLY on entries), a 29-bit TSC delta and the
//      address's low 32 bits; metadata records (LOST, TSC, BASE, DEPTH,
//      EPOCH) carry the rest, the depth is derived. Still the ring's own
//      layout. Readers read versions 2 and 3.
//
// A trace directory:
//
//   DIR/info.json        metadata: command, pid, clock calibration, counts
//   DIR/objects.json     memory map and symbol table of every object
//   DIR/streams/*.lts    one event stream per thread (per ring claim)
//   DIR/rings            the shared ring area while recording (removed at
//                        the end of a complete recording)
//
// Stream file, little-endian:
//
//   offset  size  header
//   0       8     magic "LTSTREAM"
//   8       4     format version (3; 2 is read too)
//   12      4     header size (64)
//   16      4     record size (8; 16 in version 2)
//   20      4     ring index
//   24      8     pid
//   32      8     tid
//   40      8     ring generation
//   48      16    zero
//
//   then chunks, each:
//   0       4     magic "LTCK"
//   4       4     record count n
//   8       4     CRC-32C (Castagnoli) of the n records' bytes
//   12      4     zero
//   16      8*n   records (version 3, lt_ring.h; a stream's decoding state
//                 runs across its chunks), or 16*n events (version 2,
//                 struct lt_event: u64 timestamp, u64 word: bits 0-47
//                 address (LOST: count), 48-60 depth, 61 UNWOUND (exits) or
//                 ENTRY_ONLY (entries), 62-63 kind)
import CLiveTraceShims

public enum TraceFormat {
    public static let version = 3
    /// The versions a reader accepts (info.json, objects.json, streams).
    public static let readableVersions = [2, 3]
    public static let streamMagic: [UInt8] = Array("LTSTREAM".utf8)
    public static let chunkMagic: [UInt8] = Array("LTCK".utf8)
    public static let streamHeaderSize = 64
    public static let chunkHeaderSize = 16
    /// Bytes per record of the current version (a record is one event in
    /// the common case).
    public static let eventSize = 8
    /// Bytes per event of version 2 streams.
    public static let version2EventSize = MemoryLayout<lt_event>.size
    /// The widest address an event holds.
    public static let addressMax = UInt64(LT_EVENT_ADDRESS_MAX)
    /// The largest count one LOST record holds; a larger one is written as
    /// several.
    public static let lostCountMax = lt_rec_lost_count_max()
    /// Depths at or above this are read as this.
    public static let depthMax = UInt32(LT_EVENT_DEPTH_MAX)
    public static let infoFile = "info.json"
    public static let objectsFile = "objects.json"
    public static let streamsDirectory = "streams"
    public static let ringsFile = "rings"
    public static let streamExtension = "lts"

    static func recordSize(version: Int) -> Int { version == 2 ? version2EventSize : eventSize }
}

/// One recorded event.
public struct TraceEvent: Equatable, Sendable {
    public enum Kind: UInt16, Sendable {
        case entry = 1
        case exit = 2
        /// `address` holds how many events were lost at this point.
        case lost = 3
    }
    /// An exit left by unwinding (longjmp, exception), not by a return.
    public static let flagUnwound: UInt16 = UInt16(LT_EVENT_FLAG_UNWOUND.rawValue)
    /// An entry that will never have an exit (a Swift async function's
    /// entry recorded alone).
    public static let flagEntryOnly: UInt16 = 2

    public var kind: Kind
    /// Function entry address; for `.lost` the number of events lost.
    public var address: UInt64
    /// Raw TSC ticks; see `ClockCalibration`.
    public var timestamp: UInt64
    public var depth: UInt32
    public var flags: UInt16

    public init(kind: Kind, address: UInt64, timestamp: UInt64, depth: UInt32 = 0, flags: UInt16 = 0) {
        self.kind = kind
        self.address = address
        self.timestamp = timestamp
        self.depth = depth
        self.flags = flags
    }

    public var isUnwound: Bool { flags & TraceEvent.flagUnwound != 0 }
    public var isEntryOnly: Bool { flags & TraceEvent.flagEntryOnly != 0 }

    /// The flag bit this event's kind allows (UNWOUND on an exit,
    /// ENTRY_ONLY on an entry, none on LOST); nil when `flags` holds another.
    var flagBit: UInt64? {
        switch (kind, flags) {
        case (_, 0): return 0
        case (.exit, TraceEvent.flagUnwound), (.entry, TraceEvent.flagEntryOnly): return 1
        default: return nil
        }
    }

    /// Decodes one version 2 event; nil for kind 0 or bit 61 on a LOST event.
    init?(version2Timestamp timestamp: UInt64, word: UInt64) {
        guard let kind = Kind(rawValue: UInt16(lt_event_kind(word))) else { return nil }
        let bit = lt_event_flags(word)
        let flags: UInt16
        switch (kind, bit) {
        case (_, 0): flags = 0
        case (.exit, _): flags = TraceEvent.flagUnwound
        case (.entry, _): flags = TraceEvent.flagEntryOnly
        default: return nil
        }
        self.init(kind: kind, address: lt_event_address(word), timestamp: timestamp, depth: lt_event_depth(word), flags: flags)
    }
}

/// The decoder of version 3 records (lt_ring.h): the stream's state (its
/// timestamp, address base, the last function record's depth and
/// kind, a pending DEPTH) and the rule that turns each record into an
/// event or into state. One per stream, fed every record in order.
public struct RecordDecoder: Sendable {
    private var timestamp: UInt64 = 0
    private var base: UInt64?
    private var lastDepth: UInt64?
    private var lastWasEntry = false
    private var pendingDepth: UInt64?

    public init() {}

    /// What is wrong with a record, for the error that names it.
    public enum Damage: Error, Equatable, Sendable {
        case kindZero, flagOnMetadata, unknownType(UInt32), noBase, depthNotDerivable
    }

    /// The event `record` stands for, nil for a record that only changes
    /// the state (TSC, EPOCH, BASE, DEPTH).
    public mutating func decode(_ record: UInt64) throws(Damage) -> TraceEvent? {
        let kind = lt_rec_kind(record)
        switch kind {
        case UInt32(LT_EVENT_ENTRY.rawValue), UInt32(LT_EVENT_EXIT.rawValue):
            let isEntry = kind == UInt32(LT_EVENT_ENTRY.rawValue)
            guard let base else { throw .noBase }
            let depth: UInt64
            if let pendingDepth {
                depth = pendingDepth
            } else if let lastDepth {
                // lt_ring.h: previous ENTRY d: entry d + 1, exit d; previous EXIT d: entry d, exit d - 1.
                let next = lastWasEntry ? lastDepth + 1 : lastDepth
                guard isEntry || next > 0 else { throw .depthNotDerivable }
                depth = isEntry ? next : next - 1
            } else {
                throw .depthNotDerivable
            }
            pendingDepth = nil
            lastDepth = depth
            lastWasEntry = isEntry
            timestamp &+= lt_rec_delta(record)
            let flag = lt_rec_flag(record) != 0
            return TraceEvent(
                kind: isEntry ? .entry : .exit, address: base << 32 | (record & LT_REC_LOW_MASK), timestamp: timestamp,
                depth: UInt32(min(depth, UInt64(TraceFormat.depthMax))),
                flags: flag ? (isEntry ? TraceEvent.flagEntryOnly : TraceEvent.flagUnwound) : 0)
        case LT_REC_META:
            guard lt_rec_flag(record) == 0 else { throw .flagOnMetadata }
            let payload = lt_rec_payload(record)
            switch lt_rec_type(record) {
            case UInt32(LT_REC_LOST.rawValue):
                return TraceEvent(
                    kind: .lost, address: payload & TraceFormat.lostCountMax, timestamp: timestamp,
                    depth: UInt32(payload >> UInt64(LT_REC_LOST_COUNT_BITS)))
            case UInt32(LT_REC_TSC.rawValue): timestamp = timestamp & ~LT_REC_PAYLOAD_MASK | payload
            case UInt32(LT_REC_BASE.rawValue): base = payload
            case UInt32(LT_REC_DEPTH.rawValue): pendingDepth = payload
            case UInt32(LT_REC_EPOCH.rawValue): timestamp = (payload & 0xFF) << 56 | timestamp & LT_REC_PAYLOAD_MASK
            case let type: throw .unknownType(type)
            }
            return nil
        default:
            throw .kindZero
        }
    }
}

/// The encoder of version 3 records from events, for streams written from
/// memory (TraceWriter, tests, conversions). Its state starts unknown, so
/// the records of one `encode` call decode alike after any stream prefix:
/// the first function record gets its EPOCH, TSC, BASE and DEPTH records.
struct RecordEncoder {
    private var timestamp: UInt64?
    private var base: UInt64?
    private var nextDepth: UInt64?

    /// Appends the records of `event` to `out`; nil when a field does not
    /// fit the format (an address wider than 48 bits, a flag its kind does
    /// not carry).
    mutating func encode(_ event: TraceEvent, into out: inout [UInt64]) -> Bool {
        guard let flag = event.flagBit else { return false }
        func setTime(_ t: UInt64) {
            if timestamp.map({ $0 >> 56 != t >> 56 }) ?? true { out.append(lt_rec_meta(UInt32(LT_REC_EPOCH.rawValue), t >> 56)) }
            out.append(lt_rec_meta(UInt32(LT_REC_TSC.rawValue), t))
            timestamp = t
        }
        if event.kind == .lost {
            if timestamp != event.timestamp { setTime(event.timestamp) }
            var count = event.address
            repeat {
                let part = min(count, TraceFormat.lostCountMax)
                out.append(lt_rec_lost(part, event.depth))
                count -= part
            } while count > 0
            return true
        }
        guard event.address <= TraceFormat.addressMax else { return false }
        var delta = timestamp.map { event.timestamp &- $0 } ?? .max
        if delta >= lt_rec_delta_limit() {
            setTime(event.timestamp)
            delta = 0
        }
        if base != event.address >> 32 {
            out.append(lt_rec_meta(UInt32(LT_REC_BASE.rawValue), event.address >> 32))
            base = event.address >> 32
        }
        let isEntry = event.kind == .entry
        let depth = UInt64(event.depth)
        if nextDepth != depth + (isEntry ? 0 : 1) { out.append(lt_rec_meta(UInt32(LT_REC_DEPTH.rawValue), depth)) }
        nextDepth = depth + (isEntry ? 1 : 0)
        out.append(lt_rec_function(UInt32(event.kind.rawValue), UInt32(flag), delta, event.address))
        timestamp = event.timestamp
        return true
    }
}

/// Who wrote a stream.
public struct StreamIdentity: Equatable, Hashable, Sendable {
    public var pid: UInt64
    public var tid: UInt64
    public var ring: UInt32
    public var generation: UInt64

    public init(pid: UInt64, tid: UInt64, ring: UInt32 = 0, generation: UInt64 = 1) {
        self.pid = pid
        self.tid = tid
        self.ring = ring
        self.generation = generation
    }

    public var fileName: String { "\(pid)-\(tid)-\(ring)-\(generation).\(TraceFormat.streamExtension)" }
}

/// One thread's events, as read back.
public struct ThreadStream: Equatable, Sendable {
    public var identity: StreamIdentity
    public var events: [TraceEvent]

    public init(identity: StreamIdentity, events: [TraceEvent]) {
        self.identity = identity
        self.events = events
    }
}

// MARK: - encoding

extension Array where Element == UInt8 {
    mutating func appendLE<T: FixedWidthInteger>(_ value: T) {
        Swift.withUnsafeBytes(of: value.littleEndian) { append(contentsOf: $0) }
    }
}

enum StreamCodec {
    static func header(_ identity: StreamIdentity) -> [UInt8] {
        var out: [UInt8] = TraceFormat.streamMagic
        out.appendLE(UInt32(TraceFormat.version))
        out.appendLE(UInt32(TraceFormat.streamHeaderSize))
        out.appendLE(UInt32(TraceFormat.eventSize))
        out.appendLE(identity.ring)
        out.appendLE(identity.pid)
        out.appendLE(identity.tid)
        out.appendLE(identity.generation)
        out.append(contentsOf: [UInt8](repeating: 0, count: TraceFormat.streamHeaderSize - out.count))
        return out
    }

    /// A chunk holding `recordBytes`, already in the current record layout.
    static func chunk(eventBytes: [UInt8]) -> [UInt8] {
        var out: [UInt8] = TraceFormat.chunkMagic
        out.reserveCapacity(TraceFormat.chunkHeaderSize + eventBytes.count)
        out.appendLE(UInt32(eventBytes.count / TraceFormat.eventSize))
        out.appendLE(eventBytes.withUnsafeBytes { CRC32C.checksum($0) })
        out.appendLE(UInt32(0))
        out.append(contentsOf: eventBytes)
        return out
    }

    /// Writes the 16-byte header of a chunk of `eventCount` records whose
    /// CRC-32C is `crc` at `header`.
    static func fillChunkHeader(_ header: UnsafeMutableRawPointer, eventCount: Int, crc: UInt32) {
        for (i, byte) in TraceFormat.chunkMagic.enumerated() { header.storeBytes(of: byte, toByteOffset: i, as: UInt8.self) }
        header.storeBytes(of: UInt32(eventCount).littleEndian, toByteOffset: 4, as: UInt32.self)
        header.storeBytes(of: crc.littleEndian, toByteOffset: 8, as: UInt32.self)
        header.storeBytes(of: UInt32(0), toByteOffset: 12, as: UInt32.self)
    }

    /// The version 3 records of `events` (RecordEncoder: they decode alike
    /// after any stream prefix). A LOST count wider than a record goes out
    /// as several LOST records; any other field that does not fit is an
    /// error naming the event and `file`.
    static func encode(_ events: [TraceEvent], file: String) throws(RecordingError) -> [UInt8] {
        var encoder = RecordEncoder()
        var records: [UInt64] = []
        records.reserveCapacity(events.count + 4)
        for (index, event) in events.enumerated() {
            guard encoder.encode(event, into: &records) else {
                throw .damagedTrace(
                    file: file,
                    reason: "event \(index) (\(event.kind), address 0x\(String(event.address, radix: 16)), flags \(event.flags)) does not fit the version \(TraceFormat.version) event")
            }
        }
        var out: [UInt8] = []
        out.reserveCapacity(records.count * TraceFormat.eventSize)
        for record in records { out.appendLE(record) }
        return out
    }

    // The one parser of stream bytes: the file reader (StreamReader,
    // TraceReader.swift), through which every reader of events goes, uses
    // these steps, so a format change touches this enum alone.

    /// Step 1: the 64-byte header; its identity and format version, or the
    /// damage.
    static func parseHeader(
        _ header: UnsafeRawBufferPointer, file: String
    ) throws(RecordingError) -> (identity: StreamIdentity, version: Int) {
        func damaged(_ reason: String) -> RecordingError { .damagedTrace(file: file, reason: reason) }
        guard header.count >= TraceFormat.streamHeaderSize else {
            throw damaged("truncated header: \(header.count) bytes, a stream starts with \(TraceFormat.streamHeaderSize)")
        }
        func le<T: FixedWidthInteger>(_ type: T.Type, _ at: Int) -> T {
            T(littleEndian: header.loadUnaligned(fromByteOffset: at, as: T.self))
        }
        guard header.prefix(8).elementsEqual(TraceFormat.streamMagic) else { throw damaged("not a LiveTrace event stream (bad magic)") }
        let version = Int(le(UInt32.self, 8))
        guard TraceFormat.readableVersions.contains(version) else {
            throw damaged("stream format version \(version); this reader knows versions \(TraceFormat.readableVersions.map(String.init).joined(separator: " and "))")
        }
        guard le(UInt32.self, 12) == TraceFormat.streamHeaderSize,
              le(UInt32.self, 16) == TraceFormat.recordSize(version: version) else {
            throw damaged("header or event size differs from version \(version)")
        }
        let identity = StreamIdentity(
            pid: le(UInt64.self, 24), tid: le(UInt64.self, 32), ring: le(UInt32.self, 20), generation: le(UInt64.self, 40))
        return (identity, version)
    }

    /// Step 2: a chunk header at file offset `offset`, with `remaining`
    /// bytes in the file from there; the chunk's record count and checksum.
    static func parseChunkHeader(
        _ header: UnsafeRawBufferPointer, offset: Int, remaining: Int, recordSize: Int, file: String
    ) throws(RecordingError) -> (count: Int, crc: UInt32) {
        func damaged(_ reason: String) -> RecordingError { .damagedTrace(file: file, reason: reason) }
        guard remaining >= TraceFormat.chunkHeaderSize, header.count >= TraceFormat.chunkHeaderSize else {
            throw damaged("truncated chunk header at offset \(offset) (\(remaining) bytes left)")
        }
        guard header.prefix(4).elementsEqual(TraceFormat.chunkMagic) else { throw damaged("bad chunk magic at offset \(offset)") }
        let count = Int(UInt32(littleEndian: header.loadUnaligned(fromByteOffset: 4, as: UInt32.self)))
        let crc = UInt32(littleEndian: header.loadUnaligned(fromByteOffset: 8, as: UInt32.self))
        let present = (remaining - TraceFormat.chunkHeaderSize) / recordSize
        guard count <= present else {
            throw damaged("truncated chunk at offset \(offset): \(count) events announced, \(present) present")
        }
        return (count, crc)
    }

    /// Step 3, version 2: event `index` of checksummed event bytes; an
    /// event no writer can produce (kind 0, bit 61 on a LOST event) is
    /// damage naming its index in the stream (`firstIndex` + `index`) and
    /// its file offset (`fileOffset` is that of `events`).
    @inline(__always)
    static func decodeVersion2(
        _ events: UnsafeRawBufferPointer, index: Int, firstIndex: Int, fileOffset: Int, file: String
    ) throws(RecordingError) -> TraceEvent {
        let at = index * TraceFormat.version2EventSize
        let timestamp = UInt64(littleEndian: events.loadUnaligned(fromByteOffset: at, as: UInt64.self))
        let word = UInt64(littleEndian: events.loadUnaligned(fromByteOffset: at + 8, as: UInt64.self))
        guard let event = TraceEvent(version2Timestamp: timestamp, word: word) else {
            let kind = lt_event_kind(word)
            let reason = kind == 0 ? "unknown kind 0" : "UNWOUND/ENTRY_ONLY flag on an event of kind \(TraceEvent.Kind(rawValue: UInt16(kind))!)"
            throw .damagedTrace(file: file, reason: "event \(firstIndex + index) at offset \(fileOffset + at): \(reason)")
        }
        return event
    }

    /// Step 3, version 3: record `index` of checksummed record bytes through
    /// the stream's decoder; the event it stands for, or nil (metadata); a
    /// record no writer can produce is damage named as in version 2.
    @inline(__always)
    static func decodeRecord(
        _ records: UnsafeRawBufferPointer, index: Int, decoder: inout RecordDecoder, firstIndex: Int, fileOffset: Int,
        file: String
    ) throws(RecordingError) -> TraceEvent? {
        let at = index * TraceFormat.eventSize
        let record = UInt64(littleEndian: records.loadUnaligned(fromByteOffset: at, as: UInt64.self))
        do {
            return try decoder.decode(record)
        } catch {
            let reason: String
            switch error {
            case .kindZero: reason = "unknown kind 0"
            case .flagOnMetadata: reason = "flag bit 61 on a metadata record"
            case let .unknownType(type): reason = "unknown metadata record type \(type)"
            case .noBase: reason = "a function record before any BASE record"
            case .depthNotDerivable: reason = "a function record whose depth cannot be derived (no DEPTH record, or an exit below depth 0)"
            }
            throw .damagedTrace(file: file, reason: "event \(firstIndex + index) at offset \(fileOffset + at): \(reason)")
        }
    }

    static func checksumMismatch(offset: Int, firstIndex: Int, count: Int, file: String) -> RecordingError {
        .damagedTrace(file: file, reason: "checksum mismatch in chunk at offset \(offset) (events \(firstIndex)..<\(firstIndex + count))")
    }
}

/// CRC-32C (Castagnoli): computed in C with the SSE4.2 instruction, since
/// the drain checksums every byte it moves (lt_record_crc.c).
enum CRC32C {
    static func checksum(_ bytes: UnsafeRawBufferPointer) -> UInt32 {
        lt_record_crc32c(bytes.baseAddress, bytes.count)
    }

    /// The checksum of the bytes checksummed into `crc` followed by `bytes`.
    static func extend(_ crc: UInt32, _ bytes: UnsafeRawBufferPointer) -> UInt32 {
        lt_record_crc32c_extend(crc, bytes.baseAddress, bytes.count)
    }
}

/// Appends chunks to one stream file.
///
/// The file's blocks are reserved ahead of the writes (fallocate with
/// KEEP_SIZE, in steps that double with the file up to `reserveStepMax`):
/// a buffered write into reserved blocks skips the file system's delayed
/// allocation bookkeeping per page, a quarter of the drain's write cost on
/// ext4 (Benchmarks/uftrace-compare.sh). The size stays that of the whole
/// chunks written, so a reader or a crash never sees the reserve; closing
/// the writer cuts the reserve off (a crash leaves it allocated past the
/// end, which costs disk only).
final class StreamFileWriter {
    let path: String
    private let fd: Int32
    /// The file's size: its header and the whole chunks written.
    private var size: Int
    /// The end of the blocks reserved so far (0: none).
    private var reservedEnd = 0
    static let reserveStepMin = 1 << 16
    static let reserveStepMax = 8 << 20

    init(path: String, identity: StreamIdentity) throws(RecordingError) {
        self.path = path
        fd = try Sys.open(path, O_WRONLY | O_CREAT | O_APPEND)
        do throws(RecordingError) {
            size = try Sys.fileSize(fd, path)
            if size == 0 {
                let header = StreamCodec.header(identity)
                try Sys.writeAll(fd, header, path)
                size = header.count
            }
        } catch {
            // A header cut short (disk full) would make the whole trace
            // unreadable: the file goes, nothing was in it.
            _ = Glibc.ftruncate(fd, 0)
            Sys.close(fd)
            _ = try? Sys.unlinkIfPresent(path)
            throw error
        }
    }

    /// Runs a write of `count` bytes; when it fails (disk full), cuts the
    /// file back to its size before, so the stream still ends with a whole
    /// chunk and stays readable up to the failure. A reserve that fails is
    /// no error: the write itself says whether there was room.
    private func wholeOrNothing(count: Int, _ write: () throws(RecordingError) -> Void) throws(RecordingError) {
        let before = size
        if before + count > reservedEnd {
            let step = min(max(before, StreamFileWriter.reserveStepMin), StreamFileWriter.reserveStepMax)
            let end = before + count + step
            if lt_record_preallocate(fd, UInt64(before), UInt64(end - before)) == 0 { reservedEnd = end }
        }
        do throws(RecordingError) {
            try write()
            size = before + count
        } catch {
            _ = Glibc.ftruncate(fd, off_t(before))
            throw error
        }
    }

    deinit {
        if reservedEnd > size { _ = Glibc.ftruncate(fd, off_t(size)) }
        Sys.close(fd)
    }

    /// One chunk: header and events in one write, so a reader sees a chunk
    /// either whole or (when this process dies inside write) truncated.
    func append(eventBytes: [UInt8]) throws(RecordingError) {
        guard eventBytes.count > 0 else { return }
        let chunk = StreamCodec.chunk(eventBytes: eventBytes)
        try wholeOrNothing(count: chunk.count) { () throws(RecordingError) in try Sys.writeAll(fd, chunk, path) }
    }

    /// A whole chunk, header included, in one write.
    func append(chunk: UnsafeRawBufferPointer) throws(RecordingError) {
        try wholeOrNothing(count: chunk.count) { () throws(RecordingError) in try Sys.writeAll(fd, chunk, path) }
    }

    func append(_ events: [TraceEvent]) throws(RecordingError) {
        try append(eventBytes: StreamCodec.encode(events, file: path))
    }

    /// One chunk whose events are in up to two spans of memory (a ring that
    /// wrapped), written with one writev straight from them: `header` is
    /// the chunk header for the spans (StreamCodec.chunkHeader).
    func append(header: UnsafeRawBufferPointer, spans: [UnsafeRawBufferPointer]) throws(RecordingError) {
        let count = spans.reduce(header.count) { $0 + $1.count }
        try wholeOrNothing(count: count) { () throws(RecordingError) in try writevAll([header] + spans) }
    }

    /// writev until every byte is written; EINTR retried, a short write
    /// continued from where it stopped, errors named "writev".
    private func writevAll(_ buffers: [UnsafeRawBufferPointer]) throws(RecordingError) {
        var vectors = buffers.filter { $0.count > 0 }.map {
            iovec(iov_base: UnsafeMutableRawPointer(mutating: $0.baseAddress), iov_len: $0.count)
        }
        var first = 0
        while first < vectors.count {
            let written: Int
            do throws(SystemCallError) {
                written = try SystemCall.retrying("writev", subject: path) {
                    vectors[first...].withUnsafeBufferPointer { Glibc.writev(fd, $0.baseAddress, Int32($0.count)) }
                }
            } catch {
                throw .systemCall(error)
            }
            var left = written
            while first < vectors.count && left >= vectors[first].iov_len {
                left -= vectors[first].iov_len
                first += 1
            }
            if left > 0 {
                vectors[first].iov_base += left
                vectors[first].iov_len -= left
            }
        }
    }
}

import Glibc
import LiveTraceSites
