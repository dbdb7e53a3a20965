// Per-function calls, total time and self time from a trace.
//
// Rules (docs/FORMAT.md, "report"):
//   - each thread stream is replayed on its own stack;
//   - total: the time between entry and exit of the *outermost* active call
//     of the function on that thread, so recursion is counted once;
//   - self: for every call, its duration minus the durations of its direct
//     callees; the sum over all calls, so under recursion each nanosecond is
//     counted in exactly one function's self time;
//   - an exit that matches a frame below the top closes the frames above it
//     at the same time (they were left without an exit event);
//   - an exit matching no frame is counted in `unmatchedExits`;
//   - frames still open at the end of a stream are closed at its last
//     timestamp and counted as `unfinished`;
//   - times of all threads add up (total may exceed wall time).
//
// No Foundation in this module: it is linked into liblivetrace.so.

public enum ReportSort: String, CaseIterable, Sendable {
    case total, `self`, calls
}

public struct FunctionStats: Equatable, Sendable {
    public var function: String
    public var address: UInt64
    public var calls: UInt64
    public var totalNs: UInt64
    public var selfNs: UInt64
    public var unfinished: UInt64
}

public struct TraceReport: Equatable, Sendable {
    public var functions: [FunctionStats]
    public var threads: Int
    public var events: UInt64
    public var lostEvents: UInt64
    public var unmatchedExits: UInt64

    /// Computes the report of `trace`, sorted by `sort` (descending, then
    /// by name).
    public init(trace: Trace, sort: ReportSort = .total) {
        var accumulator = ReportAccumulator()
        for stream in trace.streams { accumulator.add(stream) }
        self.init(accumulator, info: trace.info, objects: trace.objects, sort: sort)
    }

    /// Computes the report of the trace in `directory` one stream at a time,
    /// so a trace larger than memory can be reported.
    public init(directory: String, sort: ReportSort = .total) throws(RecordingError) {
        let info = try TraceReader.readInfo(directory: directory)
        let objects = try TraceReader.readObjects(directory: directory)
        var accumulator = ReportAccumulator()
        try TraceReader.forEachStream(directory: directory) { accumulator.add($0) }
        self.init(accumulator, info: info, objects: objects, sort: sort)
    }

    init(_ accumulator: ReportAccumulator, info: TraceInfo, objects: ObjectTable, sort: ReportSort) {
        let symbolizer = Symbolizer(objects)
        let clock = info.clock
        func ns(_ ticks: UInt64) -> UInt64 { UInt64(clock.nanoseconds(ticks: ticks).rounded()) }
        var functions = accumulator.table.map { address, acc in
            FunctionStats(
                function: symbolizer.describe(address), address: address, calls: acc.calls,
                totalNs: ns(acc.total), selfNs: ns(acc.selfTicks), unfinished: acc.unfinished)
        }
        functions.sort { a, b in
            let (ka, kb): (UInt64, UInt64)
            switch sort {
            case .total: (ka, kb) = (a.totalNs, b.totalNs)
            case .self: (ka, kb) = (a.selfNs, b.selfNs)
            case .calls: (ka, kb) = (a.calls, b.calls)
            }
            if ka != kb { return ka > kb }
            return (a.function, a.address) < (b.function, b.address)
        }
        self.functions = functions
        self.threads = accumulator.threads
        self.events = accumulator.events
        self.lostEvents = accumulator.lostInStreams + info.lostWithoutRing
        self.unmatchedExits = accumulator.unmatchedExits
    }

    // MARK: - output

    /// The stable JSON form (docs/FORMAT.md, "report --json"), version 1.
    public func json(sort: ReportSort) -> String {
        var out = "{\n"
        out += "  \"version\": 1,\n"
        out += "  \"sort\": \"\(sort.rawValue)\",\n"
        out += "  \"threads\": \(threads),\n"
        out += "  \"events\": \(events),\n"
        out += "  \"lost_events\": \(lostEvents),\n"
        out += "  \"unmatched_exits\": \(unmatchedExits),\n"
        out += "  \"functions\": ["
        for (i, f) in functions.enumerated() {
            out += i == 0 ? "\n" : ",\n"
            out += "    {\"function\": \(JSONText.quoted(f.function)), \"address\": \"0x\(String(f.address, radix: 16))\", "
            out += "\"calls\": \(f.calls), \"total_ns\": \(f.totalNs), \"self_ns\": \(f.selfNs), \"unfinished\": \(f.unfinished)}"
        }
        out += functions.isEmpty ? "]\n" : "\n  ]\n"
        out += "}\n"
        return out
    }

    /// The table for people, uftrace-like.
    public func text() -> String {
        var out = "  Total time   Self time       Calls  Function\n"
        out += "  ==========  ==========  ==========  ====================\n"
        for f in functions {
            out += pad(Self.duration(f.totalNs), 12) + pad(Self.duration(f.selfNs), 12) + pad(String(f.calls), 12)
            out += "  " + f.function + (f.unfinished > 0 ? "  (\(f.unfinished) unfinished)" : "") + "\n"
        }
        if lostEvents > 0 || unmatchedExits > 0 {
            out += "\n\(lostEvents) events lost, \(unmatchedExits) exits without entry: times near them are not exact\n"
        }
        return out
    }

    static func duration(_ ns: UInt64) -> String {
        if ns < 1_000 { return "\(ns) ns" }
        if ns < 1_000_000 { return threeDecimals(ns, unitNs: 1_000) + " us" }
        if ns < 1_000_000_000 { return threeDecimals(ns, unitNs: 1_000_000) + " ms" }
        return threeDecimals(ns, unitNs: 1_000_000_000) + "  s"
    }

    /// `ns` in units of `unitNs` (a power of 1000) with three decimals,
    /// rounded half up: what "%.3f" printed.
    static func threeDecimals(_ ns: UInt64, unitNs: UInt64) -> String {
        let thousandth = unitNs / 1_000
        let roundsUp = ns % thousandth >= (thousandth + 1) / 2
        let thousandths = ns / thousandth + (roundsUp ? 1 : 0)
        let fraction = String(thousandths % 1_000)
        return "\(thousandths / 1_000)." + String(repeating: "0", count: 3 - fraction.count) + fraction
    }

    private func pad(_ s: String, _ width: Int) -> String {
        s.count >= width ? s : String(repeating: " ", count: width - s.count) + s
    }
}

/// Per-function sums in TSC ticks, fed one thread stream at a time (the
/// rules at the top of this file).
struct ReportAccumulator {
    struct Sums { var calls: UInt64 = 0; var total: UInt64 = 0; var selfTicks: UInt64 = 0; var unfinished: UInt64 = 0 }
    private struct Frame { var address: UInt64; var entry: UInt64; var children: UInt64 }

    private(set) var table: [UInt64: Sums] = [:]
    private(set) var threads = 0
    private(set) var events: UInt64 = 0
    private(set) var lostInStreams: UInt64 = 0
    private(set) var unmatchedExits: UInt64 = 0
    // Per stream; kept to reuse their storage.
    private var stack: [Frame] = []
    private var active: [UInt64: Int] = [:]

    mutating func add(_ stream: ThreadStream) {
        threads += 1
        stack.removeAll(keepingCapacity: true)
        active.removeAll(keepingCapacity: true)
        var lastTimestamp: UInt64 = 0
        for event in stream.events {
            lastTimestamp = max(lastTimestamp, event.timestamp)
            switch event.kind {
            case .entry:
                events += 1
                table[event.address, default: Sums()].calls += 1
                active[event.address, default: 0] += 1
                stack.append(Frame(address: event.address, entry: event.timestamp, children: 0))
            case .exit:
                events += 1
                guard let match = stack.lastIndex(where: { $0.address == event.address }) else {
                    unmatchedExits += 1
                    continue
                }
                while stack.count > match { closeTop(at: event.timestamp, unfinished: false) }
            case .lost:
                lostInStreams += event.address
            }
        }
        while !stack.isEmpty { closeTop(at: lastTimestamp, unfinished: true) }
    }

    /// Pops the innermost frame ended at `time`: its duration goes to its
    /// self time minus its callees, to its total when it is the outermost
    /// active call of its function, and to its caller's callee time.
    private mutating func closeTop(at time: UInt64, unfinished: Bool) {
        let frame = stack.removeLast()
        let duration = time >= frame.entry ? time - frame.entry : 0
        let depth = active[frame.address, default: 1] - 1
        active[frame.address] = depth
        table[frame.address, default: Sums()].selfTicks += duration >= frame.children ? duration - frame.children : 0
        if unfinished { table[frame.address, default: Sums()].unfinished += 1 }
        if depth == 0 { table[frame.address, default: Sums()].total += duration }
        if !stack.isEmpty { stack[stack.count - 1].children += duration }
    }
}
