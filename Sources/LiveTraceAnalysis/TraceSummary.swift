// `livetrace info`: what a trace holds — the command, its process, when and
// for how long it was recorded, the binaries (path, build id), and events
// and losses per thread — from info.json, objects.json and one pass over
// the streams.
import Glibc
import LiveTraceRecording

public struct TraceSummary: Sendable {
    public struct Thread: Sendable, Equatable {
        public var pid: UInt64
        public var tid: UInt64
        public var entries: UInt64 = 0
        public var exits: UInt64 = 0
        public var lost: UInt64 = 0
        /// Its first and last event's time after the recording's start, in ns.
        public var startNs: UInt64 = 0
        public var endNs: UInt64 = 0
        public var damage: String?
    }

    public var directory: String
    public var info: TraceInfo
    public var objects: [TraceObject]
    public var threads: [Thread] = []
    /// info.json's modification time (seconds since the epoch): when the
    /// recording ended (its last drain).
    public var recordedAt: Int?
    public var damage: [String] = []

    public init(directory: String, progress: ((Int, Int) -> Void)? = nil) throws(RecordingError) {
        self.directory = directory
        info = try TraceReader.readInfo(directory: directory)
        objects = try TraceReader.readObjects(directory: directory).objects
        var st = stat()
        if stat(directory + "/" + TraceFormat.infoFile, &st) == 0 { recordedAt = Int(st.st_mtim.tv_sec) }
        var counter = Counter(clock: info.clock)
        var walk = TraceWalk(order: .firstEvent, tolerateDamage: true, progress: progress)
        try walk.run(directory: directory, into: &counter)
        threads = counter.threads
        damage = walk.damage.map(\.description)
    }

    struct Counter: CallVisitor {
        let clock: ClockCalibration
        var threads: [Thread] = []
        var first: UInt64?

        init(clock: ClockCalibration) { self.clock = clock }

        func offset(_ tsc: UInt64) -> UInt64 {
            clock.nanosecondsSinceStart(tsc: tsc)
        }

        mutating func see(_ time: UInt64) {
            if first == nil {
                first = time
                threads[threads.count - 1].startNs = offset(time)
            }
            threads[threads.count - 1].endNs = max(threads[threads.count - 1].endNs, offset(time))
        }

        mutating func beginThread(_ identity: StreamIdentity) {
            threads.append(Thread(pid: identity.pid, tid: identity.tid))
            first = nil
        }

        mutating func endThread(_ identity: StreamIdentity, damage: RecordingError?) {
            threads[threads.count - 1].damage = damage?.description
        }

        mutating func enter(_ call: OpenCall, depth: Int) {
            threads[threads.count - 1].entries += 1
            see(call.entry)
        }

        mutating func exit(_ call: OpenCall, at time: UInt64, duration: UInt64, end: CallEnd, depth: Int) {
            if end == .returned || end == .unwound {
                threads[threads.count - 1].exits += 1
                see(time)
            }
        }

        mutating func lost(_ count: UInt64, at time: UInt64, depth: Int) {
            threads[threads.count - 1].lost &+= count
            see(time)
        }

        mutating func unmatchedExit(_ address: UInt64, at time: UInt64, depth: Int) {
            threads[threads.count - 1].exits += 1
            see(time)
        }
    }

    /// The text `livetrace info` prints.
    public func text() -> String {
        var out = ""
        func field(_ name: String, _ value: String) {
            out += name + ":" + String(repeating: " ", count: max(1, 14 - name.count)) + value + "\n"
        }
        field("trace", directory)
        field("command", info.command.map(Self.shellQuoted).joined(separator: " "))
        field("pid", String(info.pid))
        optionsText(field)
        if let recordedAt { field("recorded", Self.utc(recordedAt) + " (end)") }
        let durationNs = info.clock.end.monotonicNs >= info.clock.start.monotonicNs ? info.clock.end.monotonicNs - info.clock.start.monotonicNs : 0
        field("duration", TraceReport.duration(durationNs))
        let state = info.complete ? (info.salvaged ? "complete, salvaged after the program died" : "complete") : "incomplete (recording running, or not salvaged)"
        field("state", state)
        field("format", "version \(info.version)")
        field("buffers", "\(info.ringCount) x \(info.ringCapacity) events")
        let entries = threads.reduce(0) { $0 + $1.entries }, exits = threads.reduce(0) { $0 + $1.exits }
        field("events", "\(entries + exits) (\(entries) entries, \(exits) exits)")
        let lostInStreams = threads.reduce(0) { $0 &+ $1.lost }
        field("lost", "\(lostInStreams &+ info.lostWithoutRing) events (\(lostInStreams) in the threads' streams, \(info.lostWithoutRing) without a buffer)")
        field("threads", String(threads.count))
        out += "\n       TID      Events    Lost       Start         End\n"
        for t in threads {
            out += pad(String(t.tid), 10) + pad(String(t.entries + t.exits), 12) + pad(String(t.lost), 8)
            out += pad(TraceReport.duration(t.startNs), 12) + pad(TraceReport.duration(t.endNs), 12)
            out += (t.damage != nil ? "  (damaged: cut short)" : "") + "\n"
        }
        out += "\nbinaries (\(objects.count)):\n"
        for object in objects {
            out += "  " + object.path + "  build-id " + (object.buildId ?? "none")
            out += "  \(object.symbols.count) symbols" + (object.symbolsError.map { " (\($0))" } ?? "") + "\n"
        }
        return out
    }

    /// What `info` says when info.json does not hold the recording options.
    public static let optionsNotRecorded = "not recorded (the trace was written before info.json held them)"

    /// How the trace was recorded: the recorder and each choice it was
    /// given, named by the `livetrace record` option that sets it.
    private func optionsText(_ field: (String, String) -> Void) {
        guard let options = info.options else {
            field("options", Self.optionsNotRecorded)
            return
        }
        func globs(_ list: [String], none: String) -> String {
            list.isEmpty ? none : list.map(Self.shellQuoted).joined(separator: " ")
        }
        field("recorder", options.recorder)
        if !options.tracerCommand.isEmpty {
            field("recorded with", options.tracerCommand.map(Self.shellQuoted).joined(separator: " "))
        }
        field("functions", globs(options.functions, none: "every function with a site") + " (-F)")
        field("excluded", globs(options.excluding, none: "none") + " (-N)")
        field("relocated", globs(options.relocating, none: "none") + " (-P)")
        field("max depth", (options.maxDepth.map(String.init) ?? "no limit") + " (-D)")
        field("min time", (options.minTimeNs.map { TraceReport.duration($0) } ?? "none") + " (-t)")
        field("buffer wait", TraceReport.duration(options.waitMicroseconds &* 1000) + " (--wait)")
    }

    /// The JSON `livetrace info --json` prints (docs/cli-reading.md): keys
    /// in a fixed order, times in nanoseconds.
    public func json() -> [UInt8] {
        var json = JSONWriter()
        let entries = threads.reduce(0) { $0 + $1.entries }, exits = threads.reduce(0) { $0 + $1.exits }
        let lostInStreams = threads.reduce(0) { $0 &+ $1.lost }
        let durationNs = info.clock.end.monotonicNs >= info.clock.start.monotonicNs ? info.clock.end.monotonicNs - info.clock.start.monotonicNs : 0
        json.object { members in
            members.member("trace") { $0.string(directory) }
            members.member("command") { $0.array(info.command) { $0.string($1) } }
            members.member("pid") { $0.number(info.pid) }
            members.member("recording") { json in
                if let options = info.options { options.writeJSON(to: &json) } else { json.null() }
            }
            members.member("recorded_at") { json in
                if let recordedAt { json.number(recordedAt) } else { json.null() }
            }
            members.member("duration_ns") { $0.number(durationNs) }
            members.member("complete") { $0.bool(info.complete) }
            members.member("salvaged") { $0.bool(info.salvaged) }
            members.member("format_version") { $0.number(info.version) }
            members.member("ring_count") { $0.number(info.ringCount) }
            members.member("ring_capacity") { $0.number(info.ringCapacity) }
            members.member("events") { $0.number(entries + exits) }
            members.member("entries") { $0.number(entries) }
            members.member("exits") { $0.number(exits) }
            members.member("lost") { $0.number(lostInStreams &+ info.lostWithoutRing) }
            members.member("lost_without_ring") { $0.number(info.lostWithoutRing) }
            members.member("threads") {
                $0.array(threads) { json, thread in
                    json.object { members in
                        members.member("pid") { $0.number(thread.pid) }
                        members.member("tid") { $0.number(thread.tid) }
                        members.member("events") { $0.number(thread.entries + thread.exits) }
                        members.member("lost") { $0.number(thread.lost) }
                        members.member("start_ns") { $0.number(thread.startNs) }
                        members.member("end_ns") { $0.number(thread.endNs) }
                        members.member("damage") { json in
                            if let damage = thread.damage { json.string(damage) } else { json.null() }
                        }
                    }
                }
            }
            members.member("objects") {
                $0.array(objects) { json, object in
                    json.object { members in
                        members.member("path") { $0.string(object.path) }
                        members.member("build_id") { json in
                            if let id = object.buildId { json.string(id) } else { json.null() }
                        }
                        members.member("symbols") { $0.number(object.symbols.count) }
                        members.member("symbols_error") { json in
                            if let error = object.symbolsError { json.string(error) } else { json.null() }
                        }
                    }
                }
            }
        }
        return json.bytes + [0x0a]
    }

    static func shellQuoted(_ word: String) -> String {
        let plain = word.utf8.allSatisfy { c in
            (c >= 0x30 && c <= 0x39) || (c >= 0x41 && c <= 0x5a) || (c >= 0x61 && c <= 0x7a) || "-_./=:,+@%".utf8.contains(c)
        }
        return plain && !word.isEmpty ? word : "'" + word.replacingOccurrences(of: "'", with: "'\\''") + "'"
    }

    static func utc(_ seconds: Int) -> String {
        var t = time_t(seconds)
        var parts = tm()
        gmtime_r(&t, &parts)
        func two(_ v: Int32) -> String { v < 10 ? "0\(v)" : "\(v)" }
        return "\(parts.tm_year + 1900)-\(two(parts.tm_mon + 1))-\(two(parts.tm_mday)) \(two(parts.tm_hour)):\(two(parts.tm_min)):\(two(parts.tm_sec)) UTC"
    }

    private func pad(_ s: String, _ width: Int) -> String {
        s.count >= width ? s : String(repeating: " ", count: width - s.count) + s
    }
}

extension String {
    fileprivate func replacingOccurrences(of target: String, with replacement: String) -> String {
        split(separator: Character(target), omittingEmptySubsequences: false).joined(separator: replacement)
    }
}
