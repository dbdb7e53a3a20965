// The shared ring area seen from Swift: creating its file, mapping it,
// validating it. Layout and protocol: include/lt_ring.h.
import CLiveTraceShims
import Glibc

/// A mapped ring-area file. The mapping is never unmapped: a writer thread
/// preempted inside lt_record_* may still store its busy flag after
/// recording stopped (lt_record.c, stop protocol).
public final class RingArea: @unchecked Sendable {
    public let path: String
    public let base: UnsafeMutableRawPointer
    public let size: Int

    public static let defaultRingCount = 64
    public static let defaultRingCapacity = 1 << 17
    public static let defaultWaitTimeoutMicroseconds: UInt32 = 20_000
    public static let maximumRingCount = 1 << 16
    public static let maximumRingCapacity = 1 << 26

    var header: UnsafeMutablePointer<lt_area_header> { base.assumingMemoryBound(to: lt_area_header.self) }

    public var ringCount: Int { Int(header.pointee.ring_count) }
    public var ringCapacity: Int { Int(header.pointee.ring_capacity) }
    public var startPair: ClockPair {
        ClockPair(tsc: header.pointee.start_tsc, monotonicNs: header.pointee.start_monotonic_ns)
    }
    public var lostWithoutRing: UInt64 {
        withUnsafeMutablePointer(to: &header.pointee.lost_without_ring) { lt_atomic_load_acquire_u64($0) }
    }

    private init(path: String, base: UnsafeMutableRawPointer, size: Int) {
        self.path = path
        self.base = base
        self.size = size
    }

    /// Creates (or replaces) the file at `path` with `ringCount` empty rings
    /// of `ringCapacity` events (rounded up to a power of two) and maps it.
    public static func create(
        path: String, ringCount: Int = defaultRingCount, ringCapacity: Int = defaultRingCapacity,
        waitTimeoutMicroseconds: UInt32 = defaultWaitTimeoutMicroseconds
    ) throws(RecordingError) -> RingArea {
        guard (1...maximumRingCount).contains(ringCount), (2...maximumRingCapacity).contains(ringCapacity) else {
            throw .badRingArea(
                path: path,
                reason: "\(ringCount) rings of \(ringCapacity) events: 1...\(maximumRingCount) rings of 2...\(maximumRingCapacity) events are possible")
        }
        var capacity = 2
        while capacity < ringCapacity { capacity <<= 1 }
        let size = lt_ring_area_size(UInt32(ringCount), UInt32(capacity))
        let fd = try Sys.open(path, O_RDWR | O_CREAT | O_TRUNC, 0o600)
        defer { Sys.close(fd) }
        try Sys.ftruncate(fd, size, path)
        try Sys.fallocate(fd, size, path)
        let (start, ticksPerMs) = calibrateCoarsely()
        let status = lt_ring_area_write(
            fd, size, UInt32(ringCount), UInt32(capacity), waitTimeoutMicroseconds,
            start.tsc, start.monotonicNs, ticksPerMs)
        guard status == 0 else {
            let reason = status == -Int32(LT_RECORD_ELAYOUT.rawValue)
                ? "cannot lay out \(ringCount) rings of \(capacity) events"
                : "cannot write its headers: \(String(cString: strerror(-status)))"
            throw .badRingArea(path: path, reason: reason)
        }
        return RingArea(path: path, base: try Sys.mmapShared(fd, size, path), size: size)
    }

    /// Maps an existing ring-area file and validates its header.
    public static func open(path: String) throws(RecordingError) -> RingArea {
        let fd = try Sys.open(path, O_RDWR)
        defer { Sys.close(fd) }
        let size = try Sys.fileSize(fd, path)
        guard size >= Int(LT_AREA_HEADER_SIZE) else {
            throw .badRingArea(path: path, reason: "\(size) bytes, shorter than the \(LT_AREA_HEADER_SIZE)-byte header")
        }
        let base = try Sys.mmapShared(fd, size, path)
        let area = RingArea(path: path, base: base, size: size)
        do {
            try area.validate()
        } catch {
            Sys.munmap(base, size)
            throw error
        }
        return area
    }

    func validate() throws(RecordingError) {
        let h = header.pointee
        let magic = withUnsafeBytes(of: h.magic) { Array($0) }
        guard magic == Array(LT_RING_AREA_MAGIC.utf8) + [0] else { throw .badRingArea(path: path, reason: "bad magic: not a ring area") }
        guard h.version == LT_RING_AREA_VERSION else {
            throw .badRingArea(path: path, reason: "version \(h.version); this reader knows \(LT_RING_AREA_VERSION)")
        }
        let capacity = UInt64(h.ring_capacity)
        let eventSize = UInt64(TraceFormat.eventSize)
        guard h.header_size == LT_AREA_HEADER_SIZE, h.ring_header_size == LT_RING_HEADER_SIZE,
              UInt64(h.event_size) == eventSize, capacity > 0, capacity & (capacity - 1) == 0, h.ring_count > 0,
              h.rings_offset == UInt64(LT_AREA_HEADER_SIZE),
              h.ring_stride >= UInt64(LT_RING_HEADER_SIZE) + capacity * eventSize,
              h.area_size == UInt64(size), h.high_water > 0, UInt64(h.high_water) <= capacity, h.tsc_ticks_per_ms > 0,
              h.rings_offset + UInt64(h.ring_count) * h.ring_stride <= UInt64(size) else {
            throw .badRingArea(path: path, reason: "inconsistent layout (file size \(size), \(h.ring_count) rings of \(capacity) events)")
        }
    }

    public func ring(_ index: Int) -> UnsafeMutablePointer<lt_ring_header> {
        lt_area_ring(header, UInt32(index))
    }

    /// The reader's side of the handshake (enum lt_reader_state).
    public func setReader(attached: Bool) {
        header.pointee.reader_pid = UInt32(getpid())
        withUnsafeMutablePointer(to: &header.pointee.reader_state) {
            lt_atomic_store_release_u32($0, attached ? UInt32(LT_READER_ATTACHED.rawValue) : UInt32(LT_READER_GONE.rawValue))
        }
    }

    /// A calibration pair now, and the TSC rate measured over `spinNs`
    /// (only for the writer's bounded wait, in milliseconds; the trace uses
    /// two pairs taken far apart). The spin is on every recording's start,
    /// before the program is spawned, so it is short: each pair brackets its
    /// clock reading within tens of nanoseconds (the narrowest of 16 tries),
    /// which over 20 us leaves the rate within about half a percent.
    static func calibrateCoarsely(spinNs: UInt64 = 20_000) -> (ClockPair, UInt64) {
        var tsc0: UInt64 = 0, ns0: UInt64 = 0
        lt_record_calibration_pair(&tsc0, &ns0)
        var tsc1: UInt64 = 0, ns1: UInt64 = 0
        repeat { lt_record_calibration_pair(&tsc1, &ns1) } while ns1 - ns0 < spinNs
        let perMs = (tsc1 - tsc0) * 1_000_000 / max(ns1 - ns0, 1)
        return (ClockPair(tsc: tsc1, monotonicNs: ns1), max(perMs, 1))
    }

    public static func calibrationPairNow() -> ClockPair {
        var tsc: UInt64 = 0, ns: UInt64 = 0
        lt_record_calibration_pair(&tsc, &ns)
        return ClockPair(tsc: tsc, monotonicNs: ns)
    }
}
