// Bytes for people and tools, written as they are made: every reader streams
// its output (a replay of 100 million events is not held in memory), either
// to a file descriptor in 256 KiB writes or into memory (tests, SVG pieces).
import Glibc
import LiveTraceSites
import LiveTraceRecording

public final class TextOutput {
    public private(set) var bytes: [UInt8] = []
    private let fd: Int32?
    private static let flushSize = 1 << 18
    /// The first write error, if any (EPIPE when the reader went away);
    /// after it, output is discarded.
    public private(set) var error: RecordingError?

    /// Output to a file descriptor.
    public init(fd: Int32) {
        self.fd = fd
        ownsFile = false
        bytes.reserveCapacity(Self.flushSize + 4096)
    }

    /// Output collected in `bytes`.
    public init() {
        fd = nil
        ownsFile = false
    }

    private var ownsFile = false

    /// Output to a new file at `path` (replaced if it exists), closed when
    /// this output goes away.
    public convenience init(creating path: String) throws(RecordingError) {
        let fd = Glibc.open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw .systemCall(SystemCallError(call: "open", subject: path, errno: errno)) }
        self.init(fd: fd)
        ownsFile = true
    }

    deinit {
        if ownsFile, let fd {
            flush()
            Glibc.close(fd)
        }
    }

    public var text: String { String(decoding: bytes, as: UTF8.self) }

    @inline(__always)
    public func write(_ string: String) {
        var string = string
        string.withUTF8 { write($0) }
    }

    /// A piece as large as a flush goes to the file as it is, after what
    /// is buffered (not copied into the buffer first).
    @inline(__always)
    public func write(_ buffer: UnsafeBufferPointer<UInt8>) {
        if let fd, buffer.count >= Self.flushSize {
            flush()
            writeAll(fd, UnsafeRawBufferPointer(buffer))
            return
        }
        bytes.append(contentsOf: buffer)
        if fd != nil && bytes.count >= Self.flushSize { flush() }
    }

    @inline(__always)
    public func write(_ array: [UInt8]) {
        bytes.append(contentsOf: array)
        if fd != nil && bytes.count >= Self.flushSize { flush() }
    }

    @inline(__always)
    public func byte(_ value: UInt8) { bytes.append(value) }

    /// A decimal number.
    public func number(_ value: UInt64) {
        var digits: (UInt64, UInt64, UInt64) = (0, 0, 0)
        withUnsafeMutableBytes(of: &digits) { raw in
            var remaining = value
            var first = raw.count
            repeat {
                first -= 1
                raw[first] = 0x30 + UInt8(remaining % 10)
                remaining /= 10
            } while remaining > 0
            bytes.append(contentsOf: raw[first...])
        }
    }

    /// Writes what is buffered (file descriptor output only).
    public func flush() {
        guard let fd, !bytes.isEmpty else { return }
        bytes.withUnsafeBytes { writeAll(fd, $0) }
        bytes.removeAll(keepingCapacity: true)
    }

    /// Writes all of `piece` unless an earlier write failed.
    private func writeAll(_ fd: Int32, _ piece: UnsafeRawBufferPointer) {
        guard error == nil, let start = piece.baseAddress else { return }
        var done = 0
        while done < piece.count {
            let n: Int
            do throws(SystemCallError) {
                n = try SystemCall.retrying("write", subject: "output") { Glibc.write(fd, start + done, piece.count - done) }
            } catch {
                self.error = .systemCall(error)
                return
            }
            done += n
        }
    }
}

/// Function names by address index, looked up once per function.
public struct FunctionNames {
    public private(set) var index = AddressIndex()
    private var names: [[UInt8]] = []
    private let symbolizer: Symbolizer

    public init(_ objects: ObjectTable) { symbolizer = Symbolizer(objects) }

    /// The dense index of `address` (AddressIndex), its name made on first sight.
    @inline(__always)
    public mutating func id(_ address: UInt64) -> Int {
        let i = index.index(of: address)
        if i == names.count { names.append(Array(symbolizer.describe(address).utf8)) }
        return i
    }

    public func name(_ id: Int) -> [UInt8] { names[id] }
    public func string(_ id: Int) -> String { String(decoding: names[id], as: UTF8.self) }
    public var count: Int { names.count }
}

/// fnmatch(3) globs (*, ?, [...]), as `livetrace record -F` takes them.
public struct GlobSet: Sendable {
    public let patterns: [String]
    public init(_ patterns: [String]) { self.patterns = patterns }
    public var isEmpty: Bool { patterns.isEmpty }
    public func matches(_ name: String) -> Bool {
        patterns.contains { fnmatch($0, name, 0) == 0 }
    }
}

/// Bytes being formatted by one reader, handed to a TextOutput in large
/// pieces. The bytes live in raw memory the buffer owns: an append is a
/// bounds check and a memcpy, with no array uniqueness check and no
/// reference counting on the way (the per-line cost of `replay`, which
/// writes a line per call). One writer: copies of a LineBuffer share its
/// memory, so only one of them may be written to.
public struct LineBuffer {
    /// Frees the memory with the last copy; `base` caches its address.
    private final class Storage {
        var base: UnsafeMutablePointer<UInt8>
        init(capacity: Int) { base = .allocate(capacity: capacity) }
        deinit { base.deallocate() }
    }

    private let storage: Storage
    private var base: UnsafeMutablePointer<UInt8>
    private var capacity: Int
    public private(set) var count = 0
    static let initialCapacity = 1 << 18 + 4096

    public init() {
        storage = Storage(capacity: Self.initialCapacity)
        base = storage.base
        capacity = Self.initialCapacity
    }

    /// The bytes written and not yet flushed.
    public var bytes: [UInt8] { Array(UnsafeBufferPointer(start: base, count: count)) }

    /// Room for `extra` more bytes.
    @inline(__always) mutating func reserve(_ extra: Int) {
        if count + extra > capacity { grow(count + extra) }
    }

    private mutating func grow(_ needed: Int) {
        var size = capacity * 2
        while size < needed { size *= 2 }
        let bigger = UnsafeMutablePointer<UInt8>.allocate(capacity: size)
        bigger.update(from: base, count: count)
        storage.base.deallocate()
        storage.base = bigger
        base = bigger
        capacity = size
    }

    @inline(__always) public mutating func write(_ buffer: UnsafeBufferPointer<UInt8>) {
        guard let start = buffer.baseAddress else { return }
        reserve(buffer.count)
        (base + count).update(from: start, count: buffer.count)
        count += buffer.count
    }

    @inline(__always) public mutating func write(_ string: String) {
        var string = string
        string.withUTF8 { write($0) }
    }

    @inline(__always) public mutating func write(_ array: [UInt8]) {
        array.withUnsafeBufferPointer { write($0) }
    }

    /// `length` bytes of `other` from `offset` (a name table kept in a LineBuffer).
    @inline(__always) public mutating func write(from other: LineBuffer, offset: Int, length: Int) {
        reserve(length)
        (base + count).update(from: other.base + offset, count: length)
        count += length
    }

    @inline(__always) public mutating func byte(_ value: UInt8) {
        reserve(1)
        base[count] = value
        count += 1
    }

    @inline(__always) public mutating func spaces(_ n: Int) {
        guard n > 0 else { return }
        reserve(n)
        (base + count).update(repeating: 0x20, count: n)
        count += n
    }

    /// A duration as TraceReport.duration writes it ("123 ns", "1.234 us",
    /// "2.000 ms", "1.500  s"), right-aligned in `width` columns, with an
    /// optional colour around it.
    public mutating func duration(_ ns: UInt64, width: Int, color: String? = nil) {
        // Formatted right to left into a fixed buffer.
        var digits: (UInt64, UInt64, UInt64, UInt64) = (0, 0, 0, 0)
        let length = withUnsafeMutableBytes(of: &digits) { raw -> Int in
            var end = raw.count
            @inline(__always) func put(_ byte: UInt8) { end -= 1; raw[end] = byte }
            @inline(__always) func putNumber(_ value: UInt64) {
                var v = value
                repeat { put(0x30 + UInt8(v % 10)); v /= 10 } while v > 0
            }
            if ns < 1_000 {
                put(UInt8(ascii: "s")); put(UInt8(ascii: "n")); put(0x20)
                putNumber(ns)
            } else {
                let (unit, scale): (UInt8, UInt64) =
                    ns < 1_000_000 ? (UInt8(ascii: "u"), 1_000) : ns < 1_000_000_000 ? (UInt8(ascii: "m"), 1_000_000) : (0x20, 1_000_000_000)
                let thousandth = scale / 1_000
                let thousandths = ns / thousandth + (ns % thousandth >= (thousandth + 1) / 2 ? 1 : 0)
                put(UInt8(ascii: "s")); put(unit); put(0x20)
                let fraction = thousandths % 1_000
                put(0x30 + UInt8(fraction % 10)); put(0x30 + UInt8(fraction / 10 % 10)); put(0x30 + UInt8(fraction / 100))
                put(UInt8(ascii: "."))
                putNumber(thousandths / 1_000)
            }
            return raw.count - end
        }
        spaces(width - length)
        if let color { write(color) }
        withUnsafeBytes(of: &digits) { raw in
            write(UnsafeBufferPointer(start: raw.baseAddress!.assumingMemoryBound(to: UInt8.self) + (raw.count - length), count: length))
        }
        if color != nil { write("\u{1b}[0m") }
    }

    /// Hands the bytes to `output` when at least `threshold` are waiting.
    @inline(__always) public mutating func flush(to output: TextOutput, threshold: Int = 1 << 18) {
        guard count >= threshold, count > 0 else { return }
        output.write(UnsafeBufferPointer(start: base, count: count))
        count = 0
    }
}
