// The two JSON files of a trace directory: info.json (what was recorded,
// when, and how to turn TSC ticks into nanoseconds) and objects.json (the
// memory map and symbol tables, so the trace reads without the binaries).
// Layouts are in docs/FORMAT.md; versions in TraceFormat.swift.
//
// Both are written and read by JSONText (no Foundation: this code is linked
// into liblivetrace.so). Written compact, keys in sorted order (the order the
// files always had); read with unknown keys ignored, so a reader accepts a
// file with fields added later in the same version.

/// A TSC reading and a CLOCK_MONOTONIC reading taken back to back.
public struct ClockPair: Equatable, Sendable {
    public var tsc: UInt64
    public var monotonicNs: UInt64

    public init(tsc: UInt64, monotonicNs: UInt64) {
        self.tsc = tsc
        self.monotonicNs = monotonicNs
    }
}

/// Converts TSC ticks to CLOCK_MONOTONIC nanoseconds: the line through the
/// pair taken when the ring area was created and the pair taken at the last
/// drain (the TSC is invariant on this machine: `constant_tsc nonstop_tsc`).
public struct ClockCalibration: Equatable, Sendable {
    public var start: ClockPair
    public var end: ClockPair

    public init(start: ClockPair, end: ClockPair) {
        self.start = start
        self.end = end
    }

    /// Nanoseconds per tick; 1 when the pairs do not span any time.
    public var nanosecondsPerTick: Double {
        guard end.tsc > start.tsc, end.monotonicNs > start.monotonicNs else { return 1 }
        return Double(end.monotonicNs - start.monotonicNs) / Double(end.tsc - start.tsc)
    }

    /// The CLOCK_MONOTONIC time of a TSC reading.
    public func monotonicNs(tsc: UInt64) -> Double {
        Double(start.monotonicNs) + (Double(tsc) - Double(start.tsc)) * nanosecondsPerTick
    }

    /// A duration in ticks as nanoseconds.
    public func nanoseconds(ticks: UInt64) -> Double { Double(ticks) * nanosecondsPerTick }

    /// A duration in ticks as whole nanoseconds, rounded. Readers convert
    /// with these: they saturate (0 below, UInt64.max above) instead of
    /// trapping, so a damaged calibration cannot crash a reader.
    public func wholeNanoseconds(ticks: UInt64) -> UInt64 { Self.whole(nanoseconds(ticks: ticks)) }

    /// The CLOCK_MONOTONIC time of a TSC reading in whole nanoseconds.
    public func wholeMonotonicNs(tsc: UInt64) -> UInt64 { Self.whole(monotonicNs(tsc: tsc)) }

    /// Nanoseconds from the recording's start to a TSC reading (0 before it).
    public func nanosecondsSinceStart(tsc: UInt64) -> UInt64 {
        Self.whole(monotonicNs(tsc: tsc) - Double(start.monotonicNs))
    }

    /// Rounds half away from zero, as `rounded()` does, without its libm
    /// call (a reader converts every call's duration): the integer part
    /// truncated, plus one when the fraction, which the subtraction gives
    /// exactly, is at least a half.
    @inlinable
    public static func whole(_ value: Double) -> UInt64 {
        if !(value > 0) { return 0 }
        if value >= 18_446_744_073_709_551_615.0 { return .max }
        // Below 2^63 through Int64: one instruction each way (the UInt64
        // conversions take a dozen on x86-64).
        if value < 9_223_372_036_854_775_808.0 {
            let integer = Int64(value)
            return UInt64(value - Double(integer) >= 0.5 ? integer + 1 : integer)
        }
        let integer = UInt64(value)
        return value - Double(integer) >= 0.5 ? integer + 1 : integer
    }
}

/// info.json.
public struct TraceInfo: Equatable, Sendable {
    public var format: String
    public var version: Int
    public var command: [String]
    public var pid: UInt64
    public var clock: ClockCalibration
    /// Events lost because every ring was taken (also in no stream).
    public var lostWithoutRing: UInt64
    /// Events lost, in total, including the LOST events inside the streams.
    public var lostEvents: UInt64
    public var ringCount: Int
    public var ringCapacity: Int
    /// True once the recording was stopped and drained to the end.
    public var complete: Bool
    /// True when the last drain ran after the program died.
    public var salvaged: Bool
    /// How the recording was made; nil in traces written before info.json
    /// held it.
    public var options: RecordingOptions?

    public static let formatName = "livetrace-trace"

    public init(
        command: [String], pid: UInt64, clock: ClockCalibration, lostWithoutRing: UInt64 = 0,
        lostEvents: UInt64 = 0, ringCount: Int = 0, ringCapacity: Int = 0, complete: Bool = true,
        salvaged: Bool = false, options: RecordingOptions? = nil
    ) {
        self.format = TraceInfo.formatName
        self.version = TraceFormat.version
        self.command = command
        self.pid = pid
        self.clock = clock
        self.lostWithoutRing = lostWithoutRing
        self.lostEvents = lostEvents
        self.ringCount = ringCount
        self.ringCapacity = ringCapacity
        self.complete = complete
        self.salvaged = salvaged
        self.options = options
    }
}

/// How a recording was made: who recorded (`livetrace record` or an
/// in-process recorder) and with which choices (info.json's `recording`,
/// docs/FORMAT.md). The recorder that starts a recording states them; the
/// drain writes them into info.json from its first write on.
public struct RecordingOptions: Equatable, Sendable {
    /// `livetrace record`, `GraphRecording`, `lt_trace_start` or `Recorder`.
    public var recorder: String
    /// The recorder's own command line (`livetrace record`'s argv); empty
    /// for an in-process recorder, whose command line is info.json's `command`.
    public var tracerCommand: [String]
    /// Globs of the traced functions (-F); empty: every function with a site.
    public var functions: [String]
    /// Globs of the functions left out (-N).
    public var excluding: [String]
    /// Globs of the functions traced by relocating their prologue (-P).
    public var relocating: [String]
    /// Deepest recorded nesting (-D); nil: no limit was asked for.
    public var maxDepth: Int?
    /// Calls shorter than this were left out after recording (-t); nil: none.
    public var minTimeNs: UInt64?
    /// How long a writer waits for room in a full buffer before it counts
    /// its events lost (--wait), in microseconds.
    public var waitMicroseconds: UInt64

    public static let recordCommand = "livetrace record"

    public init(
        recorder: String, tracerCommand: [String] = [], functions: [String] = [], excluding: [String] = [],
        relocating: [String] = [], maxDepth: Int? = nil, minTimeNs: UInt64? = nil,
        waitMicroseconds: UInt64 = UInt64(RingArea.defaultWaitTimeoutMicroseconds)
    ) {
        self.recorder = recorder
        self.tracerCommand = tracerCommand
        self.functions = functions
        self.excluding = excluding
        self.relocating = relocating
        self.maxDepth = maxDepth
        self.minTimeNs = minTimeNs
        self.waitMicroseconds = waitMicroseconds
    }
}

/// A function symbol, at its link-time address in its object.
public struct TraceSymbol: Equatable, Sendable {
    public var name: String
    public var address: UInt64
    public var size: UInt64

    public init(name: String, address: UInt64, size: UInt64) {
        self.name = name
        self.address = address
        self.size = size
    }
}

/// One mapped object.
public struct TraceObject: Equatable, Sendable {
    public var path: String
    public var buildId: String?
    /// Run-time address minus link-time address.
    public var loadBias: UInt64
    /// Executable run-time ranges [start, end).
    public var ranges: [[UInt64]]
    public var symbols: [TraceSymbol]
    /// Why the object's file could not be read for symbols; nil when it was.
    public var symbolsError: String?

    public init(
        path: String, buildId: String?, loadBias: UInt64, ranges: [[UInt64]], symbols: [TraceSymbol],
        symbolsError: String? = nil
    ) {
        self.path = path
        self.buildId = buildId
        self.loadBias = loadBias
        self.ranges = ranges
        self.symbols = symbols
        self.symbolsError = symbolsError
    }
}

/// objects.json.
public struct ObjectTable: Equatable, Sendable {
    public var version: Int
    public var objects: [TraceObject]

    public init(objects: [TraceObject]) {
        self.version = TraceFormat.version
        self.objects = objects
    }
}

/// A value that is one JSON document of the trace directory, or part of one.
protocol TraceJSONDocument {
    /// Writes the value as compact JSON, keys in sorted order.
    func write(to json: inout JSONWriter)
    /// Reads the value from `json`, found at `path` in its document.
    init(json: JSONValue, path: String) throws(JSONDecodingProblem)
}

extension ClockPair: TraceJSONDocument {
    func write(to json: inout JSONWriter) {
        json.object { members in
            members.member("monotonic_ns") { $0.number(monotonicNs) }
            members.member("tsc") { $0.number(tsc) }
        }
    }

    init(json: JSONValue, path: String) throws(JSONDecodingProblem) {
        let fields = try JSONFields(json, path: path)
        self.init(tsc: try fields.integer("tsc"), monotonicNs: try fields.integer("monotonic_ns"))
    }
}

extension ClockCalibration: TraceJSONDocument {
    func write(to json: inout JSONWriter) {
        json.object { members in
            members.member("end") { end.write(to: &$0) }
            members.member("start") { start.write(to: &$0) }
        }
    }

    init(json: JSONValue, path: String) throws(JSONDecodingProblem) {
        let fields = try JSONFields(json, path: path)
        self.init(
            start: try ClockPair(json: try fields.value("start"), path: fields.childPath("start")),
            end: try ClockPair(json: try fields.value("end"), path: fields.childPath("end")))
    }
}

extension TraceInfo: TraceJSONDocument {
    func write(to json: inout JSONWriter) {
        json.object { members in
            members.member("clock") { clock.write(to: &$0) }
            members.member("command") { $0.array(command) { $0.string($1) } }
            members.member("complete") { $0.bool(complete) }
            members.member("format") { $0.string(format) }
            members.member("lost_events") { $0.number(lostEvents) }
            members.member("lost_without_ring") { $0.number(lostWithoutRing) }
            members.member("pid") { $0.number(pid) }
            // Absent when unknown (docs/FORMAT.md).
            if let options { members.member("recording") { options.write(to: &$0) } }
            members.member("ring_capacity") { $0.number(ringCapacity) }
            members.member("ring_count") { $0.number(ringCount) }
            members.member("salvaged") { $0.bool(salvaged) }
            members.member("version") { $0.number(version) }
        }
    }

    init(json: JSONValue, path: String) throws(JSONDecodingProblem) {
        let fields = try JSONFields(json, path: path)
        let command = try fields.array("command")
        var arguments: [String] = []
        for (index, argument) in command.enumerated() {
            arguments.append(try JSONFields.string(argument, path: fields.childPath("command") + "[\(index)]"))
        }
        self.init(
            command: arguments, pid: try fields.integer("pid"),
            clock: try ClockCalibration(json: try fields.value("clock"), path: fields.childPath("clock")),
            lostWithoutRing: try fields.integer("lost_without_ring"), lostEvents: try fields.integer("lost_events"),
            ringCount: try fields.integer("ring_count"), ringCapacity: try fields.integer("ring_capacity"),
            complete: try fields.bool("complete"), salvaged: try fields.bool("salvaged"),
            options: try fields.optional("recording").map { value throws(JSONDecodingProblem) in
                try RecordingOptions(json: value, path: fields.childPath("recording"))
            })
        // The file's own format and version, for the reader to check.
        format = try fields.string("format")
        version = try fields.integer("version")
    }
}

extension RecordingOptions: TraceJSONDocument {
    func write(to json: inout JSONWriter) {
        json.object { members in
            members.member("excluding") { $0.array(excluding) { $0.string($1) } }
            members.member("functions") { $0.array(functions) { $0.string($1) } }
            members.member("max_depth") { json in
                if let maxDepth { json.number(maxDepth) } else { json.null() }
            }
            members.member("min_time_ns") { json in
                if let minTimeNs { json.number(minTimeNs) } else { json.null() }
            }
            members.member("recorder") { $0.string(recorder) }
            members.member("relocating") { $0.array(relocating) { $0.string($1) } }
            members.member("tracer_command") { $0.array(tracerCommand) { $0.string($1) } }
            members.member("wait_us") { $0.number(waitMicroseconds) }
        }
    }

    init(json: JSONValue, path: String) throws(JSONDecodingProblem) {
        let fields = try JSONFields(json, path: path)
        func strings(_ key: String) throws(JSONDecodingProblem) -> [String] {
            var result: [String] = []
            for (index, item) in try fields.array(key).enumerated() {
                result.append(try JSONFields.string(item, path: fields.childPath(key) + "[\(index)]"))
            }
            return result
        }
        func optionalInteger<T: FixedWidthInteger>(_ key: String) throws(JSONDecodingProblem) -> T? {
            guard let found = fields.optional(key), found != .null else { return nil }
            return try JSONFields.integer(found, path: fields.childPath(key))
        }
        self.init(
            recorder: try fields.string("recorder"), tracerCommand: try strings("tracer_command"),
            functions: try strings("functions"), excluding: try strings("excluding"),
            relocating: try strings("relocating"), maxDepth: try optionalInteger("max_depth"),
            minTimeNs: try optionalInteger("min_time_ns"), waitMicroseconds: try fields.integer("wait_us"))
    }
}

extension RecordingOptions {
    /// The object info.json holds, for outputs that show it (`livetrace info --json`).
    public func writeJSON(to json: inout JSONWriter) { write(to: &json) }
}

extension TraceSymbol: TraceJSONDocument {
    func write(to json: inout JSONWriter) {
        json.object { members in
            members.member("address") { $0.number(address) }
            members.member("name") { $0.string(name) }
            members.member("size") { $0.number(size) }
        }
    }

    init(json: JSONValue, path: String) throws(JSONDecodingProblem) {
        let fields = try JSONFields(json, path: path)
        self.init(name: try fields.string("name"), address: try fields.integer("address"), size: try fields.integer("size"))
    }
}

extension TraceObject: TraceJSONDocument {
    func write(to json: inout JSONWriter) {
        json.object { members in
            members.member("build_id") { json in
                if let buildId { json.string(buildId) } else { json.null() }
            }
            members.member("load_bias") { $0.number(loadBias) }
            members.member("path") { $0.string(path) }
            members.member("ranges") { $0.array(ranges) { json, range in json.array(range) { $0.number($1) } } }
            members.member("symbols") { $0.array(symbols) { json, symbol in symbol.write(to: &json) } }
            // Absent when the symbols were read (docs/FORMAT.md).
            if let symbolsError { members.member("symbols_error") { $0.string(symbolsError) } }
        }
    }

    init(json: JSONValue, path: String) throws(JSONDecodingProblem) {
        let fields = try JSONFields(json, path: path)
        var ranges: [[UInt64]] = []
        for (index, range) in try fields.array("ranges").enumerated() {
            let rangePath = fields.childPath("ranges") + "[\(index)]"
            guard case let .array(bounds) = range else {
                throw .wrongType(path: rangePath, expected: "an array", found: range.kindName)
            }
            var values: [UInt64] = []
            for (position, bound) in bounds.enumerated() {
                values.append(try JSONFields.integer(bound, path: rangePath + "[\(position)]"))
            }
            ranges.append(values)
        }
        var symbols: [TraceSymbol] = []
        let symbolsPath = fields.childPath("symbols")
        for (index, symbol) in try fields.array("symbols").enumerated() {
            symbols.append(try TraceSymbol(json: symbol, path: symbolsPath + "[\(index)]"))
        }
        self.init(
            path: try fields.string("path"), buildId: try fields.optionalString("build_id"),
            loadBias: try fields.integer("load_bias"), ranges: ranges, symbols: symbols,
            symbolsError: try fields.optionalString("symbols_error"))
    }
}

extension ObjectTable: TraceJSONDocument {
    func write(to json: inout JSONWriter) {
        json.object { members in
            members.member("objects") { $0.array(objects) { json, object in object.write(to: &json) } }
            members.member("version") { $0.number(version) }
        }
    }

    init(json: JSONValue, path: String) throws(JSONDecodingProblem) {
        let fields = try JSONFields(json, path: path)
        var objects: [TraceObject] = []
        let objectsPath = fields.childPath("objects")
        for (index, object) in try fields.array("objects").enumerated() {
            objects.append(try TraceObject(json: object, path: objectsPath + "[\(index)]"))
        }
        self.init(objects: objects)
        // The file's own version, for the reader to check.
        version = try fields.integer("version")
    }
}

/// info.json and objects.json as bytes, and back.
enum TraceJSON {
    static func encode<T: TraceJSONDocument>(_ value: T) throws(RecordingError) -> [UInt8] {
        var json = JSONWriter()
        value.write(to: &json)
        return json.bytes
    }

    /// Decodes `bytes`, the contents of `file`; every defect is a
    /// `damagedTrace` error naming the file and the field.
    static func decode<T: TraceJSONDocument>(_ type: T.Type, from bytes: [UInt8], file: String) throws(RecordingError) -> T {
        let value: JSONValue
        do throws(JSONSyntaxError) {
            value = try JSONValue.parse(bytes)
        } catch {
            throw .damagedTrace(file: file, reason: "invalid JSON: \(error)")
        }
        do throws(JSONDecodingProblem) {
            return try T(json: value, path: "")
        } catch {
            throw .damagedTrace(file: file, reason: "\(error)")
        }
    }
}
