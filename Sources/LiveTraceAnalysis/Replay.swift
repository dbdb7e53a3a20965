// `livetrace replay`: each thread's calls as a tree, laid out as uftrace's
// replay is:
//
//   # DURATION     TID     FUNCTION
//               [  4242] | main() {
//      0.310 us [  4242] |   leaf();
//               [  4242] |   fib() {
//      1.207 us [  4242] |   } /* fib */
//      3.520 us [  4242] | } /* main */
//
// Threads one after another, in the order they started (TraceWalk
// .firstEvent). A call with no call shown inside it is one line (`leaf();`);
// otherwise an opening line and a closing line with its duration.
//
// Rules of what is shown:
//   - `-F GLOB`: only calls of matching functions and the calls inside them
//     (the outermost matching call is at depth 0 of the layout);
//   - `-N GLOB`: a matching call and every call inside it are hidden;
//   - `-D DEPTH`: calls deeper than DEPTH shown levels are hidden;
//   - `-t TIME`: calls shorter than TIME are hidden (every call inside a
//     short call is shorter still); calls still open at the end are shown;
//   - `--tid`: only those threads.
// A call is printed only once it is known to be shown: its opening line
// waits until a call inside it is printed or it ends, which is what makes
// leaf lines and `-t` possible in one pass with memory bounded by depth.
//
// How a call ended is said in a comment: `unwound` (longjmp, exception),
// `left without exit` (an outer exit closed it), `unfinished` (open at the
// end of the thread: a crash, or a thread still running; no duration),
// `entry only` (a Swift async function or continuation: its return is not
// hooked; no duration, shown whatever `-t`).
// LOST records and exits without an entry are comment lines where they
// happened.
import LiveTraceRecording

public struct ReplayOptions: Sendable {
    public var functions: GlobSet = GlobSet([])
    public var notrace: GlobSet = GlobSet([])
    public var tids: Set<UInt64> = []
    public var maxDepth: Int = .max
    public var minimumNs: UInt64 = 0
    public var showDuration = true
    public var showTid = true
    public var color = false

    public init() {}
}

public enum Replay {
    /// Replays the trace in `directory` into `output`; returns the damage met
    /// (the replay goes up to it).
    public static func run(
        directory: String, options: ReplayOptions, output: TextOutput, progress: ((Int, Int) -> Void)? = nil
    ) throws(RecordingError) -> [RecordingError] {
        let info = try TraceReader.readInfo(directory: directory)
        let objects = try TraceReader.readObjects(directory: directory)
        var printer = ReplayPrinter(options: options, clock: info.clock, names: FunctionNames(objects), output: output)
        printer.header()
        var walk = TraceWalk(order: .firstEvent, tolerateDamage: true, progress: progress)
        try walk.run(directory: directory, into: &printer)
        printer.out.flush(to: output, threshold: 0)
        output.flush()
        return walk.damage
    }
}

struct ReplayPrinter: CallVisitor {
    struct Frame {
        var id: Int
        /// Inside a -F match (or no -F given).
        var inFilter: Bool
        /// Hidden with everything inside it (-N, -D, or an ancestor's).
        var suppressed: Bool
        var shown: Bool
        /// Shown calls open below this one.
        var level: Int
        var opened = false
    }

    let options: ReplayOptions
    let clock: ClockCalibration
    /// The clock's slope, computed once (a division per call otherwise).
    let nanosecondsPerTick: Double
    var names: FunctionNames
    let output: TextOutput
    var out = LineBuffer()
    private var frames: [Frame] = []
    private var threadShown = true
    private var tid: UInt64 = 0
    /// Per function id: 0 unknown, then bit 1 matches -F, bit 2 matches -N.
    private var matches: [UInt8] = []
    /// Per function id, its NameLine texts one after another in
    /// `nameLines`: text k of id i spans starts[4i+k] ..< starts[4i+k+1].
    private var nameLines = LineBuffer()
    private var nameLineStarts: [Int] = []
    /// "[  tid] | " of the current thread.
    private var tidAndBar: [UInt8] = []

    init(options: ReplayOptions, clock: ClockCalibration, names: FunctionNames, output: TextOutput) {
        self.options = options
        self.clock = clock
        self.nanosecondsPerTick = clock.nanosecondsPerTick
        self.names = names
        self.output = output
    }

    mutating func header() {
        out.write("#")
        if options.showDuration { out.write(" DURATION   ") }
        if options.showTid { out.write("  TID    ") }
        out.write("  FUNCTION\n")
    }

    mutating func beginThread(_ identity: StreamIdentity) {
        tid = identity.tid
        let digits = String(tid)
        let tidColumn = "[" + String(repeating: " ", count: max(0, 6 - digits.count)) + digits + "] "
        tidAndBar = Array(((options.showTid ? tidColumn : "") + "| ").utf8)
        threadShown = options.tids.isEmpty || options.tids.contains(identity.tid)
        frames.removeAll(keepingCapacity: true)
    }

    mutating func endThread(_ identity: StreamIdentity, damage: RecordingError?) {
        if threadShown, let damage {
            comment(level: 0, "the rest of this thread is lost: \(damage)")
        }
    }

    private mutating func flags(_ id: Int) -> UInt8 {
        while matches.count <= id { matches.append(0) }
        if matches[id] == 0 {
            let name = names.string(id)
            matches[id] = 1 | (options.functions.matches(name) ? 2 : 0) | (options.notrace.matches(name) ? 4 : 0)
        }
        return matches[id]
    }

    mutating func enter(_ call: OpenCall, depth: Int) {
        guard threadShown else { return }
        let id = names.id(call.address)
        let f = flags(id)
        let parent = frames.last
        let inFilter = options.functions.isEmpty || parent?.inFilter == true || f & 2 != 0
        let level = parent.map { $0.shown ? $0.level + 1 : $0.level } ?? 0
        let suppressed = parent?.suppressed == true || f & 4 != 0 || (inFilter && level >= options.maxDepth)
        frames.append(Frame(id: id, inFilter: inFilter, suppressed: suppressed, shown: inFilter && !suppressed, level: level))
    }

    mutating func exit(_ call: OpenCall, at time: UInt64, duration: UInt64, end: CallEnd, depth: Int) {
        guard threadShown, let frame = frames.popLast() else { return }
        guard frame.shown else { return }
        let ns = ClockCalibration.whole(Double(duration) * nanosecondsPerTick)
        // An entry-only call (a Swift async function) has no duration; an
        // unfinished one none that means anything.
        let timed = end != .unfinished && end != .entryOnly
        if timed && ns < options.minimumNs { return }
        if frame.opened {
            line(duration: timed ? ns : nil, level: frame.level)
            if end == .returned {
                writeLine(.close, frame.id)
            } else {
                out.write(Self.closeOpen)
                out.write(names.name(frame.id))
                out.write(", " + end.note!)
                out.write(Self.closeEnd)
            }
        } else {
            openAncestors()
            line(duration: timed ? ns : nil, level: frame.level)
            if end == .returned {
                writeLine(.leaf, frame.id)
            } else {
                out.write(names.name(frame.id))
                out.write(end == .unfinished ? "() {" : "();")
                out.write(" /* " + end.note! + " */\n")
            }
        }
        out.flush(to: output)
    }

    /// The three lines a call's name appears in.
    enum NameLine: Int {
        /// `name();` — a call with no shown call inside.
        case leaf = 0
        /// `name() {`
        case open = 1
        /// `} /* name */`
        case close = 2
    }

    /// Writes one of `id`'s name lines, made once per function and kept in
    /// `nameLines` (two appends and an array copy per line otherwise).
    @inline(__always)
    private mutating func writeLine(_ kind: NameLine, _ id: Int) {
        if id >= nameLineStarts.count / 4 { makeNameLines(upTo: id) }
        let slot = 4 * id + kind.rawValue
        let start = nameLineStarts[slot]
        out.write(from: nameLines, offset: start, length: nameLineStarts[slot + 1] - start)
    }

    private mutating func makeNameLines(upTo id: Int) {
        while nameLineStarts.count / 4 <= id {
            let name = names.name(nameLineStarts.count / 4)
            nameLineStarts.append(nameLines.count)
            nameLines.write(name)
            nameLines.write(Self.leafEnd)
            nameLineStarts.append(nameLines.count)
            nameLines.write(name)
            nameLines.write(Self.openEnd)
            nameLineStarts.append(nameLines.count)
            nameLines.write(Self.closeOpen)
            nameLines.write(name)
            nameLines.write(Self.closeEnd)
            nameLineStarts.append(nameLines.count)
        }
    }

    mutating func lost(_ count: UInt64, at time: UInt64, depth: Int) {
        guard threadShown else { return }
        comment(level: frames.last.map { $0.shown ? $0.level + 1 : $0.level } ?? 0, "\(count) events lost")
    }

    mutating func unmatchedExit(_ address: UInt64, at time: UInt64, depth: Int) {
        guard threadShown else { return }
        let id = names.id(address)
        comment(level: frames.last.map { $0.shown ? $0.level + 1 : $0.level } ?? 0, "exit of \(names.string(id)) without its entry")
    }

    static let closeOpen = Array("} /* ".utf8), closeEnd = Array(" */\n".utf8), leafEnd = Array("();\n".utf8)
    static let openEnd = Array("() {\n".utf8)

    private mutating func comment(level: Int, _ text: String) {
        openAncestors()
        line(duration: nil, level: level)
        out.write("/* " + text + " */\n")
    }

    /// Prints the opening lines of the shown calls that wait for one.
    private mutating func openAncestors() {
        for i in frames.indices where frames[i].shown && !frames[i].opened {
            frames[i].opened = true
            line(duration: nil, level: frames[i].level)
            writeLine(.open, frames[i].id)
        }
    }

    /// The duration and tid columns and the indentation.
    private mutating func line(duration: UInt64?, level: Int) {
        if options.showDuration {
            if let duration {
                out.duration(duration, width: 10, color: options.color ? Self.colorCode(duration) : nil)
                out.byte(0x20)
            } else {
                out.spaces(11)
            }
        }
        out.write(tidAndBar)
        out.spaces(2 * level)
    }

    /// uftrace's habit: long calls stand out.
    static func colorCode(_ ns: UInt64) -> String? {
        if ns >= 1_000_000_000 { return "\u{1b}[35m" }
        if ns >= 1_000_000 { return "\u{1b}[31m" }
        if ns >= 100_000 { return "\u{1b}[33m" }
        return nil
    }
}
