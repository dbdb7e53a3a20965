// The two JSON files of a trace directory: info.json (what was recorded,
// when, and how to turn TSC ticks into nanoseconds) and objects.json (the
// memory map and symbol tables, so the trace reads without the binaries).
// Layouts are in docs/FORMAT.md; versions in TraceFormat.swift.
import Foundation

/// A TSC reading and a CLOCK_MONOTONIC reading taken back to back.
public struct ClockPair: Codable, Equatable, Sendable {
    public var tsc: UInt64
    public var monotonicNs: UInt64

    public init(tsc: UInt64, monotonicNs: UInt64) {
        self.tsc = tsc
        self.monotonicNs = monotonicNs
    }

    enum CodingKeys: String, CodingKey {
        case tsc
        case monotonicNs = "monotonic_ns"
    }
}

/// Converts TSC ticks to CLOCK_MONOTONIC nanoseconds: the line through the
/// pair taken when the ring area was created and the pair taken at the last
/// drain (the TSC is invariant on this machine: `constant_tsc nonstop_tsc`).
public struct ClockCalibration: Codable, Equatable, Sendable {
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
}

/// info.json.
public struct TraceInfo: Codable, Equatable, Sendable {
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

    public static let formatName = "livetrace-trace"

    public init(
        command: [String], pid: UInt64, clock: ClockCalibration, lostWithoutRing: UInt64 = 0,
        lostEvents: UInt64 = 0, ringCount: Int = 0, ringCapacity: Int = 0, complete: Bool = true,
        salvaged: Bool = false
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
    }

    enum CodingKeys: String, CodingKey {
        case format, version, command, pid, clock, complete, salvaged
        case lostWithoutRing = "lost_without_ring"
        case lostEvents = "lost_events"
        case ringCount = "ring_count"
        case ringCapacity = "ring_capacity"
    }
}

/// A function symbol, at its link-time address in its object.
public struct TraceSymbol: Codable, Equatable, Sendable {
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
public struct TraceObject: Codable, Equatable, Sendable {
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

    enum CodingKeys: String, CodingKey {
        case path, ranges, symbols
        case buildId = "build_id"
        case loadBias = "load_bias"
        case symbolsError = "symbols_error"
    }
}

/// objects.json.
public struct ObjectTable: Codable, Equatable, Sendable {
    public var version: Int
    public var objects: [TraceObject]

    public init(objects: [TraceObject]) {
        self.version = TraceFormat.version
        self.objects = objects
    }
}

enum TraceJSON {
    static func encode<T: Encodable>(_ value: T) throws(RecordingError) -> [UInt8] {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        do {
            return Array(try encoder.encode(value))
        } catch {
            throw .damagedTrace(file: "\(T.self)", reason: "cannot encode: \(error)")
        }
    }

    static func decode<T: Decodable>(_ type: T.Type, from bytes: [UInt8], file: String) throws(RecordingError) -> T {
        do {
            return try JSONDecoder().decode(T.self, from: Data(bytes))
        } catch let DecodingError.dataCorrupted(context) {
            throw .damagedTrace(file: file, reason: "invalid JSON: \(context.debugDescription) \(describe(context.underlyingError))")
        } catch let DecodingError.keyNotFound(key, context) {
            throw .damagedTrace(file: file, reason: "missing field \(path(context.codingPath + [key]))")
        } catch let DecodingError.typeMismatch(_, context) {
            throw .damagedTrace(file: file, reason: "wrong type at \(path(context.codingPath)): \(context.debugDescription)")
        } catch let DecodingError.valueNotFound(_, context) {
            throw .damagedTrace(file: file, reason: "missing value at \(path(context.codingPath))")
        } catch {
            throw .damagedTrace(file: file, reason: "\(error)")
        }
    }

    private static func path(_ keys: [CodingKey]) -> String {
        keys.map { $0.intValue.map { "[\($0)]" } ?? $0.stringValue }.joined(separator: ".")
    }

    private static func describe(_ error: Error?) -> String {
        guard let error else { return "" }
        return "(\((error as NSError).localizedDescription))"
    }
}
