// The trace directory format (docs/FORMAT.md is its description for users).
//
// Format history (TraceFormat.version; bump on any incompatible change and
// add a line here and in docs/FORMAT.md):
//   1  info.json, objects.json, streams/*.lts with 64-byte stream header and
//      CRC-32C-checked chunks of 24-byte events.
//   2  16-byte events: u64 TSC, u64 word packing the address (48 bits), the
//      depth (13 bits, saturating), UNWOUND and the kind (2 bits) — the
//      ring's own layout, so the drain writes ring memory as it is.
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
//   8       4     format version (2)
//   12      4     header size (64)
//   16      4     event size (16)
//   20      4     ring index
//   24      8     pid
//   32      8     tid
//   40      8     ring generation
//   48      16    zero
//
//   then chunks, each:
//   0       4     magic "LTCK"
//   4       4     event count n
//   8       4     CRC-32C (Castagnoli) of the n * 16 event bytes
//   12      4     zero
//   16      16*n  events (struct lt_event, lt_ring.h):
//                   0  u64 timestamp (TSC ticks)
//                   8  u64 word: bits 0-47 address (LOST: count),
//                      48-60 depth (8191 = 8191 or deeper), 61 UNWOUND (exits) or ENTRY_ONLY (entries),
//                      62-63 kind (1 entry, 2 exit, 3 lost; 0 is damage)
import CLiveTraceShims

public enum TraceFormat {
    public static let version = 2
    public static let streamMagic: [UInt8] = Array("LTSTREAM".utf8)
    public static let chunkMagic: [UInt8] = Array("LTCK".utf8)
    public static let streamHeaderSize = 64
    public static let chunkHeaderSize = 16
    public static let eventSize = MemoryLayout<lt_event>.size
    /// The widest address (and LOST count) an event holds.
    public static let addressMax = UInt64(LT_EVENT_ADDRESS_MAX)
    /// Depths at or above this are written as this.
    public static let depthMax = UInt32(LT_EVENT_DEPTH_MAX)
    public static let infoFile = "info.json"
    public static let objectsFile = "objects.json"
    public static let streamsDirectory = "streams"
    public static let ringsFile = "rings"
    public static let streamExtension = "lts"
}

/// One recorded event.
public struct TraceEvent: Equatable, Sendable {
    public enum Kind: UInt16, Sendable {
        case entry = 1
        case exit = 2
        /// `address` holds how many events were lost at this point.
        case lost = 3
    }
    public static let flagUnwound: UInt16 = UInt16(LT_EVENT_FLAG_UNWOUND.rawValue)
    /// The same bit on an entry: no exit follows (`LT_EVENT_FLAG_ENTRY_ONLY`).
    public static let flagEntryOnly: UInt16 = UInt16(LT_EVENT_FLAG_ENTRY_ONLY.rawValue)

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

    public var isUnwound: Bool { kind == .exit && flags & TraceEvent.flagUnwound != 0 }
    public var isEntryOnly: Bool { kind == .entry && flags & TraceEvent.flagEntryOnly != 0 }

    /// The event's packed word (lt_ring.h); nil when a field does not fit
    /// the format: an address or count wider than 48 bits, a flag other than
    /// bit 61, bit 61 on a LOST event. A depth above TraceFormat.depthMax
    /// saturates, as the writer's does.
    var packedWord: UInt64? {
        guard address <= TraceFormat.addressMax, flags & ~TraceEvent.flagUnwound == 0,
              flags == 0 || kind != .lost else { return nil }
        return lt_event_pack(address, depth, UInt32(kind.rawValue), UInt32(flags))
    }

    /// Decodes one 16-byte event; nil for kind 0 or bit 61 on a LOST event.
    init?(timestamp: UInt64, word: UInt64) {
        guard let kind = Kind(rawValue: UInt16(lt_event_kind(word))) else { return nil }
        let flags = UInt16(lt_event_flags(word))
        guard flags == 0 || kind != .lost else { return nil }
        self.init(kind: kind, address: lt_event_address(word), timestamp: timestamp, depth: lt_event_depth(word), flags: flags)
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

    /// A chunk holding `events`, already in the 24-byte event layout.
    static func chunk(eventBytes: [UInt8]) -> [UInt8] {
        var out: [UInt8] = TraceFormat.chunkMagic
        out.reserveCapacity(TraceFormat.chunkHeaderSize + eventBytes.count)
        out.appendLE(UInt32(eventBytes.count / TraceFormat.eventSize))
        out.appendLE(eventBytes.withUnsafeBytes { CRC32C.checksum($0) })
        out.appendLE(UInt32(0))
        out.append(contentsOf: eventBytes)
        return out
    }

    /// Writes the 16-byte header of a chunk of `eventCount` events whose
    /// CRC-32C is `crc` at `header`.
    static func fillChunkHeader(_ header: UnsafeMutableRawPointer, eventCount: Int, crc: UInt32) {
        for (i, byte) in TraceFormat.chunkMagic.enumerated() { header.storeBytes(of: byte, toByteOffset: i, as: UInt8.self) }
        header.storeBytes(of: UInt32(eventCount).littleEndian, toByteOffset: 4, as: UInt32.self)
        header.storeBytes(of: crc.littleEndian, toByteOffset: 8, as: UInt32.self)
        header.storeBytes(of: UInt32(0), toByteOffset: 12, as: UInt32.self)
    }

    /// The 16-byte events of `events`. A LOST count wider than the address
    /// bits goes out as several LOST events; any other field that does not
    /// fit (TraceEvent.packedWord) is an error naming the event and `file`.
    static func encode(_ events: [TraceEvent], file: String) throws(RecordingError) -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(events.count * TraceFormat.eventSize)
        for (index, event) in events.enumerated() {
            var e = event
            while e.kind == .lost && e.address > TraceFormat.addressMax {
                var part = e
                part.address = TraceFormat.addressMax
                out.appendLE(part.timestamp)
                out.appendLE(part.packedWord!)
                e.address -= TraceFormat.addressMax
            }
            guard let word = e.packedWord else {
                throw .damagedTrace(
                    file: file,
                    reason: "event \(index) (\(e.kind), address 0x\(String(e.address, radix: 16)), flags \(e.flags)) does not fit the version \(TraceFormat.version) event")
            }
            out.appendLE(e.timestamp)
            out.appendLE(word)
        }
        return out
    }

    // The one parser of stream bytes: the file reader (StreamReader,
    // TraceReader.swift), through which every reader of events goes, uses
    // these three steps, so a format change touches this enum alone.

    /// Step 1: the 64-byte header; its identity, or the damage.
    static func parseHeader(_ header: UnsafeRawBufferPointer, file: String) throws(RecordingError) -> StreamIdentity {
        func damaged(_ reason: String) -> RecordingError { .damagedTrace(file: file, reason: reason) }
        guard header.count >= TraceFormat.streamHeaderSize else {
            throw damaged("truncated header: \(header.count) bytes, a stream starts with \(TraceFormat.streamHeaderSize)")
        }
        func le<T: FixedWidthInteger>(_ type: T.Type, _ at: Int) -> T {
            T(littleEndian: header.loadUnaligned(fromByteOffset: at, as: T.self))
        }
        guard header.prefix(8).elementsEqual(TraceFormat.streamMagic) else { throw damaged("not a LiveTrace event stream (bad magic)") }
        let version = le(UInt32.self, 8)
        guard version == TraceFormat.version else {
            throw damaged("stream format version \(version); this reader knows version \(TraceFormat.version)")
        }
        guard le(UInt32.self, 12) == TraceFormat.streamHeaderSize, le(UInt32.self, 16) == TraceFormat.eventSize else {
            throw damaged("header or event size differs from version \(TraceFormat.version)")
        }
        return StreamIdentity(pid: le(UInt64.self, 24), tid: le(UInt64.self, 32), ring: le(UInt32.self, 20), generation: le(UInt64.self, 40))
    }

    /// Step 2: a chunk header at file offset `offset`, with `remaining`
    /// bytes in the file from there; the chunk's event count and checksum.
    static func parseChunkHeader(
        _ header: UnsafeRawBufferPointer, offset: Int, remaining: Int, file: String
    ) throws(RecordingError) -> (count: Int, crc: UInt32) {
        func damaged(_ reason: String) -> RecordingError { .damagedTrace(file: file, reason: reason) }
        guard remaining >= TraceFormat.chunkHeaderSize, header.count >= TraceFormat.chunkHeaderSize else {
            throw damaged("truncated chunk header at offset \(offset) (\(remaining) bytes left)")
        }
        guard header.prefix(4).elementsEqual(TraceFormat.chunkMagic) else { throw damaged("bad chunk magic at offset \(offset)") }
        let count = Int(UInt32(littleEndian: header.loadUnaligned(fromByteOffset: 4, as: UInt32.self)))
        let crc = UInt32(littleEndian: header.loadUnaligned(fromByteOffset: 8, as: UInt32.self))
        let present = (remaining - TraceFormat.chunkHeaderSize) / TraceFormat.eventSize
        guard count <= present else {
            throw damaged("truncated chunk at offset \(offset): \(count) events announced, \(present) present")
        }
        return (count, crc)
    }

    /// Step 3: event `index` of checksummed event bytes; an event no
    /// writer can produce (kind 0, bit 61 on a LOST event) is damage naming
    /// its index in the stream (`firstIndex` + `index`) and its file offset
    /// (`fileOffset` is that of `events`).
    @inline(__always)
    static func decodeEvent(
        _ events: UnsafeRawBufferPointer, index: Int, firstIndex: Int, fileOffset: Int, file: String
    ) throws(RecordingError) -> TraceEvent {
        let at = index * TraceFormat.eventSize
        let timestamp = UInt64(littleEndian: events.loadUnaligned(fromByteOffset: at, as: UInt64.self))
        let word = UInt64(littleEndian: events.loadUnaligned(fromByteOffset: at + 8, as: UInt64.self))
        guard let event = TraceEvent(timestamp: timestamp, word: word) else {
            let kind = lt_event_kind(word)
            let reason = kind == 0 ? "unknown kind 0" : "UNWOUND/ENTRY_ONLY flag on an event of kind \(TraceEvent.Kind(rawValue: UInt16(kind))!)"
            throw .damagedTrace(file: file, reason: "event \(firstIndex + index) at offset \(fileOffset + at): \(reason)")
        }
        return event
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
final class StreamFileWriter {
    let path: String
    private let fd: Int32

    init(path: String, identity: StreamIdentity) throws(RecordingError) {
        self.path = path
        fd = try Sys.open(path, O_WRONLY | O_CREAT | O_APPEND)
        do throws(RecordingError) {
            if try Sys.fileSize(fd, path) == 0 {
                try Sys.writeAll(fd, StreamCodec.header(identity), path)
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

    /// Runs a write; when it fails (disk full), cuts the file back to its
    /// size before, so the stream still ends with a whole chunk and stays
    /// readable up to the failure.
    private func wholeOrNothing(_ write: () throws(RecordingError) -> Void) throws(RecordingError) {
        let before = try Sys.fileSize(fd, path)
        do throws(RecordingError) {
            try write()
        } catch {
            _ = Glibc.ftruncate(fd, off_t(before))
            throw error
        }
    }

    deinit { Sys.close(fd) }

    /// One chunk: header and events in one write, so a reader sees a chunk
    /// either whole or (when this process dies inside write) truncated.
    func append(eventBytes: [UInt8]) throws(RecordingError) {
        guard eventBytes.count > 0 else { return }
        try wholeOrNothing { () throws(RecordingError) in try Sys.writeAll(fd, StreamCodec.chunk(eventBytes: eventBytes), path) }
    }

    /// A whole chunk, header included, in one write.
    func append(chunk: UnsafeRawBufferPointer) throws(RecordingError) {
        try wholeOrNothing { () throws(RecordingError) in try Sys.writeAll(fd, chunk, path) }
    }

    func append(_ events: [TraceEvent]) throws(RecordingError) {
        try append(eventBytes: StreamCodec.encode(events, file: path))
    }

    /// One chunk whose events are in up to two spans of memory (a ring that
    /// wrapped), written with one writev straight from them: `header` is
    /// the chunk header for the spans (StreamCodec.chunkHeader).
    func append(header: UnsafeRawBufferPointer, spans: [UnsafeRawBufferPointer]) throws(RecordingError) {
        try wholeOrNothing { () throws(RecordingError) in try writevAll([header] + spans) }
    }

    /// writev until every byte is written; EINTR retried, a short write
    /// continued from where it stopped, errors named "writev".
    private func writevAll(_ buffers: [UnsafeRawBufferPointer]) throws(RecordingError) {
        var vectors = buffers.filter { $0.count > 0 }.map {
            iovec(iov_base: UnsafeMutableRawPointer(mutating: $0.baseAddress), iov_len: $0.count)
        }
        var first = 0
        while first < vectors.count {
            let written = vectors[first...].withUnsafeBufferPointer { Glibc.writev(fd, $0.baseAddress, Int32($0.count)) }
            if written < 0 {
                if errno == EINTR { continue }
                throw .systemCall(call: "writev", subject: path, errno: errno)
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
