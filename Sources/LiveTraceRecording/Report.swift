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
//   - a call recorded entry only (Swift async: its return is not hooked)
//     counts as a call and in `entryOnly`, with no time (avg, min and max
//     are over the other calls);
//   - times of all threads add up (total may exceed wall time).
//
// No Foundation in this module: it is linked into liblivetrace.so.

public enum ReportSort: String, CaseIterable, Sendable {
    case total, `self`, calls, avg, min, max, name
}

public struct FunctionStats: Equatable, Sendable {
    public var function: String
    public var address: UInt64
    public var calls: UInt64
    public var totalNs: UInt64
    public var selfNs: UInt64
    public var unfinished: UInt64
    /// Calls recorded entry only (no exit, no time).
    public var entryOnly: UInt64 = 0
    /// Mean, shortest and longest duration of one call (entry to exit, its
    /// callees included; every level of a recursion is a call).
    public var avgNs: UInt64 = 0
    public var minNs: UInt64 = 0
    public var maxNs: UInt64 = 0
}

/// One thread's line of `report --threads`.
public struct ThreadStats: Equatable, Sendable {
    public var pid: UInt64
    public var tid: UInt64
    /// Entry and exit events.
    public var events: UInt64 = 0
    public var calls: UInt64 = 0
    public var lostEvents: UInt64 = 0
    public var unfinished: UInt64 = 0
    /// The durations of its outermost calls, summed.
    public var totalNs: UInt64 = 0
    /// The function of its first outermost call ("" when none).
    public var firstFunction: String = ""
    /// Why its stream ended early, when it did.
    public var damage: String?
}

public struct TraceReport: Equatable, Sendable {
    public var functions: [FunctionStats]
    public var threads: Int
    public var events: UInt64
    public var lostEvents: UInt64
    public var unmatchedExits: UInt64
    /// Per thread, in the order read.
    public var threadStats: [ThreadStats] = []
    /// Damage met (only with `tolerateDamage`): the results stop at it.
    public var damage: [String] = []

    /// Computes the report of `trace`, sorted by `sort` (descending, then
    /// by name).
    public init(trace: Trace, sort: ReportSort = .total) {
        var accumulator = ReportAccumulator()
        var walker = CallWalker()
        for stream in trace.streams {
            accumulator.beginThread(stream.identity)
            for event in stream.events { walker.feed(event, into: &accumulator) }
            walker.finish(into: &accumulator)
            accumulator.endThread(stream.identity, damage: nil)
        }
        self.init(accumulator, info: trace.info, objects: trace.objects, sort: sort)
    }

    /// Computes the report of the trace in `directory` in one pass, memory
    /// bounded by call depth and the number of functions. With
    /// `tolerateDamage`, a damaged stream counts up to its damage and the
    /// damage is listed in `damage` (TraceWalk); otherwise it is thrown.
    public init(
        directory: String, sort: ReportSort = .total, tolerateDamage: Bool = false,
        progress: ((Int, Int) -> Void)? = nil
    ) throws(RecordingError) {
        let info = try TraceReader.readInfo(directory: directory)
        let objects = try TraceReader.readObjects(directory: directory)
        var accumulator = ReportAccumulator()
        var walk = TraceWalk(tolerateDamage: tolerateDamage, progress: progress)
        try walk.run(directory: directory, into: &accumulator)
        self.init(accumulator, info: info, objects: objects, sort: sort)
        damage = walk.damage.map(\.description)
    }

    init(_ accumulator: ReportAccumulator, info: TraceInfo, objects: ObjectTable, sort: ReportSort) {
        let symbolizer = Symbolizer(objects)
        let clock = info.clock
        func ns(_ ticks: UInt64) -> UInt64 { clock.wholeNanoseconds(ticks: ticks) }
        var functions = accumulator.sums.enumerated().map { index, acc in
            let address = accumulator.index.addresses[index]
            return FunctionStats(
                function: symbolizer.describe(address), address: address, calls: acc.calls,
                totalNs: ns(acc.total), selfNs: ns(acc.selfTicks), unfinished: acc.unfinished, entryOnly: acc.entryOnly,
                avgNs: acc.calls > acc.entryOnly ? ns(acc.durations / (acc.calls - acc.entryOnly)) : 0,
                minNs: acc.calls > acc.entryOnly && acc.minimum != .max ? ns(acc.minimum) : 0, maxNs: ns(acc.maximum))
        }
        functions.sort { a, b in Self.ordered(a, b, by: sort) }
        self.functions = functions
        self.threads = accumulator.threadStats.count
        self.events = accumulator.events
        self.lostEvents = accumulator.lostInStreams &+ info.lostWithoutRing
        self.unmatchedExits = accumulator.unmatchedExits
        self.threadStats = accumulator.threadStats.map { thread in
            var stats = ThreadStats(pid: thread.identity.pid, tid: thread.identity.tid)
            stats.events = thread.events
            stats.calls = thread.calls
            stats.lostEvents = thread.lost
            stats.unfinished = thread.unfinished
            stats.totalNs = ns(thread.total)
            stats.firstFunction = thread.first.map { symbolizer.describe($0) } ?? ""
            stats.damage = thread.damage
            return stats
        }
    }

    /// `sort`'s order: descending by the key (name: ascending), ties by
    /// name and address.
    static func ordered(_ a: FunctionStats, _ b: FunctionStats, by sort: ReportSort) -> Bool {
        let (ka, kb): (UInt64, UInt64)
        switch sort {
        case .total: (ka, kb) = (a.totalNs, b.totalNs)
        case .self: (ka, kb) = (a.selfNs, b.selfNs)
        case .calls: (ka, kb) = (a.calls, b.calls)
        case .avg: (ka, kb) = (a.avgNs, b.avgNs)
        case .min: (ka, kb) = (a.minNs, b.minNs)
        case .max: (ka, kb) = (a.maxNs, b.maxNs)
        case .name: (ka, kb) = (0, 0)
        }
        if ka != kb { return ka > kb }
        return (a.function, a.address) < (b.function, b.address)
    }

    // MARK: - output

    /// The stable JSON form (docs/FORMAT.md, "report --json"), version 1.
    public func json(sort: ReportSort, threads withThreads: Bool = false) -> String {
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
            out += "\"calls\": \(f.calls), \"total_ns\": \(f.totalNs), \"self_ns\": \(f.selfNs), \"unfinished\": \(f.unfinished), "
            out += "\"entry_only\": \(f.entryOnly), \"avg_ns\": \(f.avgNs), \"min_ns\": \(f.minNs), \"max_ns\": \(f.maxNs)}"
        }
        out += functions.isEmpty ? "]" : "\n  ]"
        if withThreads {
            out += ",\n  \"thread_stats\": ["
            for (i, t) in threadStats.enumerated() {
                out += i == 0 ? "\n" : ",\n"
                out += "    {\"pid\": \(t.pid), \"tid\": \(t.tid), \"events\": \(t.events), \"calls\": \(t.calls), "
                out += "\"lost_events\": \(t.lostEvents), \"unfinished\": \(t.unfinished), \"total_ns\": \(t.totalNs), "
                out += "\"first_function\": \(JSONText.quoted(t.firstFunction))"
                if let damage = t.damage { out += ", \"damage\": \(JSONText.quoted(damage))" }
                out += "}"
            }
            out += threadStats.isEmpty ? "]" : "\n  ]"
        }
        out += "\n}\n"
        return out
    }

    /// The table for people, uftrace-like.
    /// `averages` adds the mean, shortest and longest call.
    public func text(averages: Bool = false) -> String {
        var out = "  Total time   Self time       Calls" + (averages ? "    Avg time    Min time    Max time" : "") + "  Function\n"
        out += "  ==========  ==========  ==========" + (averages ? "  ==========  ==========  ==========" : "") + "  ====================\n"
        for f in functions {
            out += pad(Self.duration(f.totalNs), 12) + pad(Self.duration(f.selfNs), 12) + pad(String(f.calls), 12)
            if averages { out += pad(Self.duration(f.avgNs), 12) + pad(Self.duration(f.minNs), 12) + pad(Self.duration(f.maxNs), 12) }
            out += "  " + f.function + (f.unfinished > 0 ? "  (\(f.unfinished) unfinished)" : "")
            out += (f.entryOnly > 0 ? "  (\(f.entryOnly) entry only)" : "") + "\n"
        }
        if lostEvents > 0 || unmatchedExits > 0 {
            out += "\n\(lostEvents) events lost, \(unmatchedExits) exits without entry: times near them are not exact\n"
        }
        return out
    }

    /// `report --threads`: one line per thread.
    public func threadsText() -> String {
        var out = "       TID      Events       Calls  Total time  Lost  Unfinished  First function\n"
        out += "  ========  ==========  ==========  ==========  ====  ==========  ====================\n"
        for t in threadStats {
            out += pad(String(t.tid), 10) + pad(String(t.events), 12) + pad(String(t.calls), 12) + pad(Self.duration(t.totalNs), 12)
            out += pad(String(t.lostEvents), 6) + pad(String(t.unfinished), 12) + "  " + t.firstFunction
            out += (t.damage != nil ? "  (damaged: cut short)" : "") + "\n"
        }
        return out
    }

    public static func duration(_ ns: UInt64) -> String {
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

    func pad(_ s: String, _ width: Int) -> String {
        s.count >= width ? s : String(repeating: " ", count: width - s.count) + s
    }
}

/// Per-function sums in TSC ticks, fed through a CallWalker one thread at
/// a time (the rules at the top of this file).
struct ReportAccumulator: CallVisitor {
    struct Sums {
        var calls: UInt64 = 0, total: UInt64 = 0, selfTicks: UInt64 = 0, unfinished: UInt64 = 0, entryOnly: UInt64 = 0
        var durations: UInt64 = 0, minimum: UInt64 = .max, maximum: UInt64 = 0
        /// Calls of the function open on the current thread.
        var active: Int = 0
    }
    struct Thread {
        var identity: StreamIdentity
        var events: UInt64 = 0, calls: UInt64 = 0, lost: UInt64 = 0, unfinished: UInt64 = 0, total: UInt64 = 0
        var first: UInt64?
        var damage: String?
    }
    private(set) var index = AddressIndex()
    private(set) var sums: [Sums] = []
    private(set) var threadStats: [Thread] = []
    private(set) var events: UInt64 = 0
    private(set) var lostInStreams: UInt64 = 0
    private(set) var unmatchedExits: UInt64 = 0
    /// The function index of each open call (the walker's stack, in step).
    private var openIndices: [Int] = []

    mutating func beginThread(_ identity: StreamIdentity) {
        threadStats.append(Thread(identity: identity))
    }

    mutating func endThread(_ identity: StreamIdentity, damage: RecordingError?) {
        threadStats[threadStats.count - 1].damage = damage?.description
    }

    mutating func enter(_ call: OpenCall, depth: Int) {
        let i = index.index(of: call.address)
        if i == sums.count { sums.append(Sums()) }
        openIndices.append(i)
        sums[i].calls += 1
        sums[i].active += 1
        events += 1
        threadStats[threadStats.count - 1].events += 1
        threadStats[threadStats.count - 1].calls += 1
        if depth == 0 && threadStats[threadStats.count - 1].first == nil { threadStats[threadStats.count - 1].first = call.address }
    }

    /// The call's duration goes to its self time minus its callees, to its
    /// total when it is the outermost active call of its function (the
    /// walker already added it to its caller's callee time).
    mutating func exit(_ call: OpenCall, at time: UInt64, duration: UInt64, end: CallEnd, depth: Int) {
        let i = openIndices.removeLast()
        sums[i].active -= 1
        if end == .entryOnly {
            sums[i].entryOnly += 1
            return
        }
        // Sums wrap rather than trap: only a damaged trace (timestamps far
        // apart) can overflow them.
        sums[i].selfTicks &+= duration >= call.children ? duration - call.children : 0
        sums[i].durations &+= duration
        sums[i].minimum = Swift.min(sums[i].minimum, duration)
        sums[i].maximum = Swift.max(sums[i].maximum, duration)
        if sums[i].active == 0 { sums[i].total &+= duration }
        if depth == 0 { threadStats[threadStats.count - 1].total &+= duration }
        switch end {
        case .returned, .unwound:
            events += 1
            threadStats[threadStats.count - 1].events += 1
        case .unfinished:
            sums[i].unfinished += 1
            threadStats[threadStats.count - 1].unfinished += 1
        case .leftWithoutExit, .entryOnly:
            break
        }
    }

    mutating func lost(_ count: UInt64, at time: UInt64, depth: Int) {
        lostInStreams &+= count
        threadStats[threadStats.count - 1].lost &+= count
    }

    mutating func unmatchedExit(_ address: UInt64, at time: UInt64, depth: Int) {
        events += 1
        unmatchedExits += 1
        threadStats[threadStats.count - 1].events += 1
    }
}
