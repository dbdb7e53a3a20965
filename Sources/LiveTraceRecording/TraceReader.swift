// Reading a trace directory back, and writing one from memory (tests with an
// injected clock, conversions). Every damaged file is a RecordingError that
// names the file and the damage; nothing here traps on bad input.
import Glibc
import LiveTraceSites

/// A whole trace, in memory.
public struct Trace: Equatable, Sendable {
    public var info: TraceInfo
    public var objects: ObjectTable
    /// Sorted by (pid, tid, ring, generation).
    public var streams: [ThreadStream]

    public init(info: TraceInfo, objects: ObjectTable, streams: [ThreadStream]) {
        self.info = info
        self.objects = objects
        self.streams = streams
    }
}

public enum TraceReader {
    public static func readInfo(directory: String) throws(RecordingError) -> TraceInfo {
        try checkDirectory(directory)
        let path = directory + "/" + TraceFormat.infoFile
        guard Sys.exists(path) else { throw .missingTraceFile(path) }
        let info = try TraceJSON.decode(TraceInfo.self, from: try Sys.readFile(path), file: path)
        guard info.format == TraceInfo.formatName else {
            throw .damagedTrace(file: path, reason: "format \"\(info.format)\", expected \"\(TraceInfo.formatName)\"")
        }
        guard TraceFormat.readableVersions.contains(info.version) else {
            throw .damagedTrace(file: path, reason: "trace format version \(info.version); this reader knows versions \(TraceFormat.readableVersions.map(String.init).joined(separator: " and "))")
        }
        return info
    }

    public static func readObjects(directory: String) throws(RecordingError) -> ObjectTable {
        let objectsPath = directory + "/" + TraceFormat.objectsFile
        guard Sys.exists(objectsPath) else { throw .missingTraceFile(objectsPath) }
        let objects = try TraceJSON.decode(ObjectTable.self, from: try Sys.readFile(objectsPath), file: objectsPath)
        guard TraceFormat.readableVersions.contains(objects.version) else {
            throw .damagedTrace(file: objectsPath, reason: "objects version \(objects.version); this reader knows versions \(TraceFormat.readableVersions.map(String.init).joined(separator: " and "))")
        }
        for object in objects.objects {
            for range in object.ranges where range.count != 2 || range[0] > range[1] {
                throw .damagedTrace(file: objectsPath, reason: "object \(object.path): bad address range \(range)")
            }
        }
        return objects
    }

    /// A directory that does not exist is named as such (not as a trace
    /// whose info.json is missing).
    public static func checkDirectory(_ directory: String) throws(RecordingError) {
        guard let dir = opendir(directory) else {
            if errno == ENOENT { throw .missingTraceDirectory(directory) }
            throw .systemCall(SystemCallError(call: "opendir", subject: directory, errno: errno))
        }
        closedir(dir)
    }

    /// The paths of the stream files of the trace in `directory`, in
    /// file-name order.
    public static func streamPaths(directory: String) throws(RecordingError) -> [String] {
        let streamsPath = directory + "/" + TraceFormat.streamsDirectory
        guard Sys.exists(streamsPath) else { throw .missingTraceFile(streamsPath) }
        return try listDirectory(streamsPath).filter { $0.hasSuffix("." + TraceFormat.streamExtension) }.map { streamsPath + "/" + $0 }
    }

    /// Decodes the streams one at a time, in file-name order, and hands each
    /// to `body`; only one stream is in memory at once.
    public static func forEachStream(
        directory: String, _ body: (ThreadStream) throws(RecordingError) -> Void
    ) throws(RecordingError) {
        for path in try streamPaths(directory: directory) {
            try body(try readStream(path: path))
        }
    }

    /// One stream file's events, all in memory (for rewriting a stream;
    /// readers that can go one event at a time use StreamReader).
    public static func readStream(path: String) throws(RecordingError) -> ThreadStream {
        let reader = try StreamReader(path: path)
        var events: [TraceEvent] = []
        events.reserveCapacity(max(0, reader.fileSize - TraceFormat.streamHeaderSize) / TraceFormat.version2EventSize)
        try reader.forEach { events.append($0) }
        return ThreadStream(identity: reader.identity, events: events)
    }

    public static func read(directory: String) throws(RecordingError) -> Trace {
        let info = try readInfo(directory: directory)
        let objects = try readObjects(directory: directory)
        var streams: [ThreadStream] = []
        try forEachStream(directory: directory) { streams.append($0) }
        streams.sort {
            ($0.identity.pid, $0.identity.tid, $0.identity.ring, $0.identity.generation)
                < ($1.identity.pid, $1.identity.tid, $1.identity.ring, $1.identity.generation)
        }
        return Trace(info: info, objects: objects, streams: streams)
    }

    /// The names in a directory, sorted; a missing directory is ENOENT.
    static func listDirectory(_ path: String) throws(RecordingError) -> [String] {
        do throws(SystemCallError) {
            guard let names = try SystemCall.listDirectory(path) else {
                throw SystemCallError(call: "opendir", subject: path, errno: ENOENT)
            }
            return names.sorted()
        } catch {
            throw .systemCall(error)
        }
    }
}

/// One thread's events read from its stream file in a single pass, in the
/// thread's order, with memory bounded by the read buffer, whatever the
/// file's size. This, over StreamCodec's parser (TraceFormat.swift), is how
/// every command reads events: nothing else parses stream bytes.
///
/// Rules:
///   - a chunk's events are handed out only after its checksum matched:
///     a chunk that fits the buffer is read once, a larger one is read
///     twice (checksum, then decode), so no event of a damaged chunk is
///     ever seen;
///   - damage is thrown by `next` when the reader reaches it, naming the
///     file and the offset; every event before it was handed out, so a
///     caller may show the results up to the damage;
///   - the file is read up to the size it had when opened (a trace still
///     being recorded grows).
public final class StreamReader {
    public let path: String
    public let identity: StreamIdentity
    /// The stream's format version (2 or 3).
    public let version: Int
    /// Bytes per record of that version.
    private let recordSize: Int
    /// The version 3 decoding state, run across the stream's chunks.
    private var decoder = RecordDecoder()
    /// The file's size when opened.
    public let fileSize: Int
    /// File offset up to which events were decoded (progress).
    public private(set) var offset: Int
    /// Events handed out so far (LOST records included).
    public private(set) var eventsRead = 0

    private let fd: Int32
    private let buffer: UnsafeMutableRawBufferPointer
    /// Checksummed event bytes at the start of `buffer` not handed out yet,
    /// from event `position` on; `pieceOffset` is the file offset of the
    /// piece's first byte and `pieceFirst` the stream index of its first
    /// event.
    private var pieceEvents = 0
    private var position = 0
    private var pieceOffset = 0
    private var pieceFirst = 0
    /// Events of the current (verified) chunk not read into a piece yet.
    private var chunkEventsLeft = 0

    /// Opens `path` and checks its header. `bufferBytes` bounds the memory
    /// (rounded to whole events; at least one chunk header).
    public init(path: String, bufferBytes: Int = 1 << 20) throws(RecordingError) {
        self.path = path
        fd = try Sys.open(path, O_RDONLY)
        let capacity = max(bufferBytes / TraceFormat.version2EventSize, 1) * TraceFormat.version2EventSize
        buffer = .allocate(byteCount: max(capacity, TraceFormat.streamHeaderSize), alignment: 16)
        do throws(RecordingError) {
            fileSize = try Sys.fileSize(fd, path)
            let header = try Self.pread(fd, buffer, count: min(fileSize, TraceFormat.streamHeaderSize), at: 0, path: path)
            (identity, version) = try StreamCodec.parseHeader(header, file: path)
            recordSize = TraceFormat.recordSize(version: version)
        } catch {
            Sys.close(fd)
            buffer.deallocate()
            throw error
        }
        offset = TraceFormat.streamHeaderSize
    }

    deinit {
        Sys.close(fd)
        buffer.deallocate()
    }

    /// The next event, nil at the end of the stream.
    public func next() throws(RecordingError) -> TraceEvent? {
        while true {
            if position == pieceEvents {
                guard try refill() else { return nil }
            }
            let bytes = UnsafeRawBufferPointer(buffer)
            let decoded: TraceEvent?
            if version == 2 {
                decoded = try StreamCodec.decodeVersion2(
                    bytes, index: position, firstIndex: pieceFirst, fileOffset: pieceOffset, file: path)
            } else {
                decoded = try StreamCodec.decodeRecord(
                    bytes, index: position, decoder: &decoder, firstIndex: pieceFirst, fileOffset: pieceOffset, file: path)
            }
            position += 1
            if let event = decoded {
                eventsRead += 1
                return event
            }
        }
    }

    /// Hands every remaining event to `body`, in order; the fast way through
    /// a stream (one check per piece, not per event, of this object's state).
    public func forEach(_ body: (TraceEvent) -> Void) throws(RecordingError) {
        while true {
            if position == pieceEvents {
                guard try refill() else { return }
            }
            let bytes = UnsafeRawBufferPointer(buffer)
            let (count, first, at, file) = (pieceEvents, pieceFirst, pieceOffset, path)
            var i = position
            var handed = 0
            defer {
                eventsRead += handed
                position = i
            }
            if version == 2 {
                while i < count {
                    body(try StreamCodec.decodeVersion2(bytes, index: i, firstIndex: first, fileOffset: at, file: file))
                    i += 1
                    handed += 1
                }
            } else {
                var state = decoder
                defer { decoder = state }
                while i < count {
                    let event = try StreamCodec.decodeRecord(
                        bytes, index: i, decoder: &state, firstIndex: first, fileOffset: at, file: file)
                    i += 1
                    if let event {
                        body(event)
                        handed += 1
                    }
                }
            }
        }
    }

    /// Reads the next piece of checksummed events; false at the end.
    private func refill() throws(RecordingError) -> Bool {
        pieceFirst += pieceEvents
        pieceEvents = 0
        position = 0
        while pieceEvents == 0 {
            if chunkEventsLeft == 0 {
                guard offset < fileSize else { return false }
                try startChunk()
                continue
            }
            let count = min(chunkEventsLeft, buffer.count / recordSize)
            _ = try Self.pread(fd, buffer, count: count * recordSize, at: offset, path: path)
            takePiece(count)
        }
        return true
    }

    /// Reads and verifies the chunk header at `offset` and the checksum of
    /// its events; a chunk that fits the buffer becomes the piece at once.
    private func startChunk() throws(RecordingError) {
        let chunkOffset = offset
        let header = try Self.pread(fd, buffer, count: min(TraceFormat.chunkHeaderSize, fileSize - offset), at: offset, path: path)
        let (count, crc) = try StreamCodec.parseChunkHeader(
            header, offset: chunkOffset, remaining: fileSize - chunkOffset, recordSize: recordSize, file: path)
        let start = chunkOffset + TraceFormat.chunkHeaderSize
        let length = count * recordSize
        if length <= buffer.count {
            let bytes = try Self.pread(fd, buffer, count: length, at: start, path: path)
            guard CRC32C.checksum(bytes) == crc else {
                throw StreamCodec.checksumMismatch(offset: chunkOffset, firstIndex: pieceFirst, count: count, file: path)
            }
            offset = start
            chunkEventsLeft = count
            takePiece(count)
            return
        }
        var checksum: UInt32 = 0
        var at = start
        while at < start + length {
            let bytes = try Self.pread(fd, buffer, count: min(buffer.count, start + length - at), at: at, path: path)
            checksum = CRC32C.extend(checksum, bytes)
            at += bytes.count
        }
        guard checksum == crc else {
            throw StreamCodec.checksumMismatch(offset: chunkOffset, firstIndex: pieceFirst, count: count, file: path)
        }
        offset = start
        chunkEventsLeft = count
    }

    /// The `count` events at the start of `buffer`, read from `offset`, are
    /// the new piece.
    private func takePiece(_ count: Int) {
        pieceOffset = offset
        pieceEvents = count
        chunkEventsLeft -= count
        offset += count * recordSize
    }

    /// Exactly `count` bytes at file offset `at` into the start of `buffer`.
    private static func pread(
        _ fd: Int32, _ buffer: UnsafeMutableRawBufferPointer, count: Int, at: Int, path: String
    ) throws(RecordingError) -> UnsafeRawBufferPointer {
        var done = 0
        while done < count {
            let n = try Sys.retrying("pread", path) { Glibc.pread(fd, buffer.baseAddress! + done, count - done, off_t(at + done)) }
            if n == 0 {
                throw .damagedTrace(file: path, reason: "file shrank while being read: ends at offset \(at + done)")
            }
            done += n
        }
        return UnsafeRawBufferPointer(rebasing: buffer[0..<count])
    }
}

public enum TraceWriter {
    /// Makes `directory` ready for a new trace: a missing or empty directory
    /// is used as it is, an older trace becomes `directory.old`, anything
    /// else is refused (`traceDirectoryIsAFile`, `traceDirectoryHoldsOtherFiles`).
    public static func prepareDirectory(_ directory: String) throws(RecordingError) {
        try Sys.prepareTraceDirectory(directory)
    }

    /// Undoes a recording that could not start or go on: removes the files
    /// a recording writes into `directory` (and their temporary names), then
    /// the directory when the recording created it. `prepareDirectory` left
    /// the directory missing or empty, so every such file is this
    /// recording's. Used by the library's recorders and by `livetrace
    /// record` (the program, or the attached process, failed to start one).
    public static func removeRecording(in directory: String, createdDirectory: Bool) {
        try? Sys.removeTree(directory + "/" + TraceFormat.streamsDirectory)
        for file in [TraceFormat.infoFile, TraceFormat.objectsFile, TraceFormat.ringsFile] {
            try? Sys.unlinkIfPresent(directory + "/" + file)
            try? Sys.unlinkIfPresent(directory + "/" + file + Sys.temporarySuffix)
        }
        if createdDirectory { _ = try? Sys.retrying("rmdir", directory) { Glibc.rmdir(directory) } }
    }

    /// Writes `trace` as a complete trace directory (no ring area).
    public static func write(_ trace: Trace, to directory: String) throws(RecordingError) {
        try Sys.mkdir(directory)
        try Sys.mkdir(directory + "/" + TraceFormat.streamsDirectory)
        for stream in trace.streams {
            let path = directory + "/" + TraceFormat.streamsDirectory + "/" + stream.identity.fileName
            let writer = try StreamFileWriter(path: path, identity: stream.identity)
            try writer.append(stream.events)
        }
        try Sys.writeFileAtomically(directory + "/" + TraceFormat.objectsFile, try TraceJSON.encode(trace.objects))
        try Sys.writeFileAtomically(directory + "/" + TraceFormat.infoFile, try TraceJSON.encode(trace.info))
    }
}

/// Run-time address → function name, from objects.json alone:
///   1. the object whose executable ranges contain the address;
///   2. in that object's symbols (link-time), the last one starting at or
///      below `address - load_bias`, if the address lies inside it.
/// Symbols of one object never name an address of another, so an object
/// mapped twice, or an object whose bias could not be found, cannot make
/// another object's functions nameless.
public struct Symbolizer: Sendable {
    struct Range { var start: UInt64; var end: UInt64; var object: Int }
    struct Object { var bias: UInt64; var starts: [UInt64]; var ends: [UInt64]; var names: [String] }
    private let ranges: [Range]
    private let objects: [Object]

    public init(_ table: ObjectTable) {
        var ranges: [Range] = []
        var objects: [Object] = []
        for (index, object) in table.objects.enumerated() {
            for range in object.ranges where range.count == 2 {
                ranges.append(Range(start: range[0], end: range[1], object: index))
            }
            let symbols = object.symbols.sorted { $0.address < $1.address }
            objects.append(Object(
                bias: object.loadBias, starts: symbols.map(\.address),
                ends: symbols.map { $0.address &+ max($0.size, 1) }, names: symbols.map(\.name)))
        }
        self.ranges = ranges.sorted { $0.start < $1.start }
        self.objects = objects
    }

    /// The name of the function containing `address`, or nil.
    public func name(of address: UInt64) -> String? {
        // Step 1.
        guard let r = Self.lastIndex(in: ranges.lazy.map(\.start), atOrBelow: address),
              address < ranges[r].end else { return nil }
        // Step 2.
        let object = objects[ranges[r].object]
        let linkAddress = address &- object.bias
        guard let s = Self.lastIndex(in: object.starts, atOrBelow: linkAddress),
              linkAddress < object.ends[s] else { return nil }
        return object.names[s]
    }

    /// The name, or the address in hex.
    public func describe(_ address: UInt64) -> String {
        name(of: address) ?? "0x" + String(address, radix: 16)
    }

    /// Binary search in ascending `values`: the last index whose value is
    /// at most `key`.
    private static func lastIndex<C: RandomAccessCollection>(in values: C, atOrBelow key: UInt64) -> Int?
    where C.Element == UInt64, C.Index == Int {
        var low = values.startIndex, high = values.endIndex
        while low < high {
            let mid = (low + high) / 2
            if values[mid] <= key { low = mid + 1 } else { high = mid }
        }
        return low > values.startIndex ? low - 1 : nil
    }
}
