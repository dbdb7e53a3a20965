// `livetrace record`'s arguments as plain values, and the scan that reads
// their plain forms without the argument parser.
//
// RecordCommand (RecordCommand.swift) declares the arguments for
// swift-argument-parser, which makes the help, the error messages, the
// completion scripts and the manual page from them. Its parse, though, is
// reflection: it instantiates every property wrapper's generic type and
// asks the runtime for their protocol conformances, each first ask a scan of
// the binary's 3,800 conformance records. That is 1.3 ms of `livetrace
// record`'s start, which counts against the program it runs (6.4 ms in all
// for `record -- fib 3`; docs/ARCHITECTURE.md, start-up, seventh round).
//
// So LiveTraceCommand.main first tries `RecordArguments.scan`: it accepts
// only arguments whose meaning is plain and returns nil for anything else
// (an unknown option, -h, a missing or malformed value, an option given
// twice that takes one value, a value that looks like an option), and the
// arguments then go to the parser as before, with its messages. Arguments
// that scan but do not validate go there too, so every error message is the
// parser's. RecordArgumentsTests holds the scan to the parser's own result
// for every form it accepts.
import LiveTrace
import LiveTracePreload

/// What `livetrace record` was asked to do.
struct RecordArguments: Equatable {
    var filter: [String] = []
    var dynamicPatterns: [String] = []
    var notrace: [String] = []
    var depth: Int?
    var minTime: String?
    var directory = "livetrace.data"
    var bufferEvents = RecordCommand.defaultBufferEvents
    var waitMilliseconds = Int(RingArea.defaultWaitTimeoutMicroseconds / 1000)
    var pid: Int32?
    var duration: String?
    /// The program and its arguments (without the `--` before them).
    var programArguments: [String] = []

    /// Why these arguments cannot run, as RecordCommand.validate says it;
    /// nil when they can.
    var problem: String? {
        if let pid {
            guard programArguments.isEmpty else { return "-p \(pid) attaches to a running process: give no program" }
        } else {
            guard !programArguments.isEmpty else { return "no program given: livetrace record [options] -- PROGRAM [ARGS...], or -p PID" }
            if duration != nil { return "--duration applies to -p PID only (a started program records until it exits)" }
        }
        if let duration, RecordCommand.parseDuration(duration) == nil {
            return "--duration \(duration): not a time (a number with ns, us, ms or s; a bare number is nanoseconds)"
        }
        if let depth, depth < 1 || depth > FunctionGraph.stackCapacity {
            return "-D \(depth): the depth must be in 1...\(FunctionGraph.stackCapacity)"
        }
        guard (2...RingArea.maximumRingCapacity).contains(bufferEvents) else {
            return "-b \(bufferEvents): a buffer holds 2...\(RingArea.maximumRingCapacity) events"
        }
        guard (0...60_000).contains(waitMilliseconds) else {
            return "--wait \(waitMilliseconds): the wait is 0...60000 milliseconds"
        }
        if let minTime, RecordCommand.parseDuration(minTime) == nil {
            return "-t \(minTime): not a time (a number with ns, us, ms or s; a bare number is nanoseconds)"
        }
        for glob in filter + notrace + dynamicPatterns where glob.allSatisfy(\.isWhitespace) || glob.contains(PreloadEnvironment.listSeparator) {
            return "'\(glob)': a function glob must be non-empty and must not contain '\(PreloadEnvironment.listSeparator)'"
        }
        return nil
    }

    /// The options the scan knows, by every spelling RecordCommand gives
    /// them; each takes one value, the next argument or after `=` (long
    /// spellings only).
    private enum Option {
        case filter, dynamicPatterns, notrace, depth, minTime, directory, bufferEvents, waitMilliseconds, pid, duration

        static let bySpelling: [String: Option] = [
            "-F": .filter, "-P": .dynamicPatterns, "-N": .notrace, "-D": .depth, "-t": .minTime,
            "-d": .directory, "--directory": .directory, "-b": .bufferEvents, "--wait": .waitMilliseconds,
            "-p": .pid, "--duration": .duration,
        ]

        var repeats: Bool { self == .filter || self == .dynamicPatterns || self == .notrace }
    }

    /// The arguments after `record`, read when every one of them is plain:
    ///   1. options, each `-X VALUE`, `--long VALUE` or `--long=VALUE` with a
    ///      spelling of `Option.bySpelling`; -F, -P and -N repeat, the others
    ///      appear at most once; a VALUE is not empty, does not start with
    ///      `-`, and parses (a decimal number for -D, -b, --wait, -p);
    ///   2. then `--` and the program with its arguments, untouched; or the
    ///      program's name itself (a word not starting with `-`), as the
    ///      parser captures it;
    ///   3. nothing after the program is read.
    /// nil for anything else: the parser decides.
    static func scan(_ arguments: [String]) -> RecordArguments? {
        var result = RecordArguments()
        var seen: Set<Option> = []
        var index = 0
        while index < arguments.count {
            let argument = arguments[index]
            if argument == "--" {
                result.programArguments = Array(arguments[(index + 1)...])
                return result
            }
            guard argument.hasPrefix("-") else {
                result.programArguments = Array(arguments[index...])
                return result
            }
            var spelling = argument
            var value: String
            if argument.hasPrefix("--"), let equals = argument.firstIndex(of: "=") {
                spelling = String(argument[..<equals])
                value = String(argument[argument.index(after: equals)...])
                index += 1
            } else {
                guard index + 1 < arguments.count else { return nil }
                value = arguments[index + 1]
                index += 2
            }
            guard let option = Option.bySpelling[spelling], !value.isEmpty, !value.hasPrefix("-"),
                  option.repeats || seen.insert(option).inserted else { return nil }
            switch option {
            case .filter: result.filter.append(value)
            case .dynamicPatterns: result.dynamicPatterns.append(value)
            case .notrace: result.notrace.append(value)
            case .minTime: result.minTime = value
            case .directory: result.directory = value
            case .duration: result.duration = value
            case .depth:
                guard let number = Int(value) else { return nil }
                result.depth = number
            case .bufferEvents:
                guard let number = Int(value) else { return nil }
                result.bufferEvents = number
            case .waitMilliseconds:
                guard let number = Int(value) else { return nil }
                result.waitMilliseconds = number
            case .pid:
                guard let number = Int32(value) else { return nil }
                result.pid = number
            }
        }
        return result
    }
}
