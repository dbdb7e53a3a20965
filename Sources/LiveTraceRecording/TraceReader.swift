// Reading a trace directory back, and writing one from memory (tests with an
// injected clock, conversions). Every damaged file is a RecordingError that
// names the file and the damage; nothing here traps on bad input.
import Glibc

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
        let path = directory + "/" + TraceFormat.infoFile
        guard Sys.exists(path) else { throw .missingTraceFile(path) }
        let info = try TraceJSON.decode(TraceInfo.self, from: try Sys.readFile(path), file: path)
        guard info.format == TraceInfo.formatName else {
            throw .damagedTrace(file: path, reason: "format \"\(info.format)\", expected \"\(TraceInfo.formatName)\"")
        }
        guard info.version == TraceFormat.version else {
            throw .damagedTrace(file: path, reason: "trace format version \(info.version); this reader knows version \(TraceFormat.version)")
        }
        return info
    }

    public static func readObjects(directory: String) throws(RecordingError) -> ObjectTable {
        let objectsPath = directory + "/" + TraceFormat.objectsFile
        guard Sys.exists(objectsPath) else { throw .missingTraceFile(objectsPath) }
        let objects = try TraceJSON.decode(ObjectTable.self, from: try Sys.readFile(objectsPath), file: objectsPath)
        guard objects.version == TraceFormat.version else {
            throw .damagedTrace(file: objectsPath, reason: "objects version \(objects.version); this reader knows version \(TraceFormat.version)")
        }
        for object in objects.objects {
            for range in object.ranges where range.count != 2 || range[0] > range[1] {
                throw .damagedTrace(file: objectsPath, reason: "object \(object.path): bad address range \(range)")
            }
        }
        return objects
    }

    /// Decodes the streams one at a time, in file-name order, and hands each
    /// to `body`; only one stream is in memory at once.
    public static func forEachStream(
        directory: String, _ body: (ThreadStream) throws(RecordingError) -> Void
    ) throws(RecordingError) {
        let streamsPath = directory + "/" + TraceFormat.streamsDirectory
        guard Sys.exists(streamsPath) else { throw .missingTraceFile(streamsPath) }
        for name in try listDirectory(streamsPath) where name.hasSuffix("." + TraceFormat.streamExtension) {
            let path = streamsPath + "/" + name
            try body(try StreamCodec.decode(try Sys.readFile(path), file: path))
        }
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

    static func listDirectory(_ path: String) throws(RecordingError) -> [String] {
        guard let dir = opendir(path) else { throw .systemCall(call: "opendir", subject: path, errno: errno) }
        defer { closedir(dir) }
        var names: [String] = []
        while let entry = readdir(dir) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { raw in
                String(decoding: raw.prefix(while: { $0 != 0 }), as: UTF8.self)
            }
            if name != "." && name != ".." { names.append(name) }
        }
        return names.sorted()
    }
}

public enum TraceWriter {
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
