// Recording from inside, from C: a plain C program linked against
// liblivetrace.so (nothing else) records its own function graph with
// lt_trace_start / lt_trace_stop, and the trace it leaves is read back here
// and compared, event by event, with the call tree the program makes
// (Tests/Fixtures/recording/trace_inside.c).
import CLiveTraceShims
import Foundation
import LiveTrace
import TestSupport
import XCTest

final class RecordingFromInsideCTests: XCTestCase {
    struct Variant {
        var compiler: String
        var flags: [String]
        var name: String
    }

    static let gccPatchableEntry = Variant(compiler: "gcc", flags: ["-O2", "-fpatchable-function-entry=5"], name: "gcc-nop1x5")
    static let clangPatchableEntry = Variant(compiler: "clang", flags: ["-O2", "-fpatchable-function-entry=5"], name: "clang-nop5")
    static let clangFentry = Variant(compiler: "clang", flags: ["-O1", "-pg", "-mfentry"], name: "clang-call-fentry")

    // MARK: - the call tree, exactly

    func testCProgramBuiltWithGccPatchableEntryRecordsItsExactCallTree() throws {
        let run = try runFixture(try build(Self.gccPatchableEntry))
        try assertExactCallTree(run.directory)
        assertSummaryMatchesTheTree(run)
        // info.json says how (trace_inside.c's lt_trace_start: the globs as
        // listed, spaces trimmed; depth 0, no limit).
        XCTAssertEqual(try TraceReader.readInfo(directory: run.directory).options, RecordingOptions(
            recorder: "lt_trace_start", functions: ["tr_work", "tr_fib", "tr_leaf", "tr_thread_body", "tr_hidden"],
            excluding: ["tr_hid*"]))
    }

    func testCProgramBuiltWithClangPatchableEntryRecordsItsExactCallTree() throws {
        let run = try runFixture(try build(Self.clangPatchableEntry))
        try assertExactCallTree(run.directory)
        assertSummaryMatchesTheTree(run)
    }

    func testCProgramBuiltWithClangFentryRecordsItsExactCallTree() throws {
        let run = try runFixture(try build(Self.clangFentry))
        try assertExactCallTree(run.directory)
        assertSummaryMatchesTheTree(run)
    }

    // MARK: - bad input

    func testBadInputGetsClearNegativeCodesAndTheProgramLives() throws {
        let run = try runFixture(try build(Self.gccPatchableEntry))
        XCTAssertEqual(run.result.status, 0, run.result.stdout + run.result.stderr)
        XCTAssertFalse(run.result.signaled)
        let code = { (name: String) -> Int32? in run.lines[name].flatMap { Int32($0[0]) } }
        XCTAssertEqual(code("start_again"), -Int32(LT_EALREADY), "double start")
        XCTAssertEqual(code("stop_again"), -Int32(LT_ENOTREG), "stop after stop")
        XCTAssertEqual(run.lines["summary_after_failure"], ["0"], "a failed stop zeroes the summary")
        XCTAssertEqual(code("null_directory"), -Int32(LT_EINVAL))
        XCTAssertEqual(code("empty_directory"), -Int32(LT_EINVAL))
        XCTAssertEqual(code("unwritable"), -Int32(LT_ETRACEDIR))
        XCTAssertEqual(run.lines["unwritable_errno"]?.first, String(ENOENT), "errno says why: \(run.lines["unwritable_errno"] ?? [])")
        XCTAssertEqual(code("busy"), -Int32(LT_ETRACEDIR), "a directory holding something else is refused")
        XCTAssertEqual(run.lines["busy_errno"]?.first, String(ENOTEMPTY))
        XCTAssertTrue(FileManager.default.fileExists(atPath: run.directory + "-busy/keep.txt"), "nothing that is not a trace is removed")
        XCTAssertEqual(code("no_match"), -Int32(LT_ENOENT), "a filter that matches nothing")
        XCTAssertFalse(FileManager.default.fileExists(atPath: run.directory + "-none"), "a failed start removes what it created")
        XCTAssertEqual(code("empty_glob"), -Int32(LT_EINVAL), "an empty item in a glob list")
        XCTAssertFalse(FileManager.default.fileExists(atPath: run.directory + "-lists"))
        XCTAssertEqual(code("too_deep"), -Int32(LT_EINVAL), "max_depth above LT_TRACE_MAX_DEPTH")
        XCTAssertEqual(code("stop_never_started"), -Int32(LT_ENOTREG))
        // Every failing code has its own message.
        XCTAssertTrue(run.result.stdout.contains("unwritable -\(LT_ETRACEDIR) the trace directory could not be created or written"),
                      run.result.stdout)
        // After all of that, a new recording works; the program exits
        // without lt_trace_stop and the recording is completed at exit.
        XCTAssertEqual(code("start_for_exit"), 0)
        let atExit = try TraceReport(directory: run.directory + "-atexit")
        XCTAssertEqual(Dictionary(atExit.functions.map { ($0.function, $0.calls) }, uniquingKeysWith: +), ["tr_leaf": 2])
        XCTAssertTrue(try TraceReader.readInfo(directory: run.directory + "-atexit").complete)
        XCTAssertFalse(FileManager.default.fileExists(atPath: run.directory + "-atexit/rings"))
    }

    func testAnOlderTraceInTheDirectoryBecomesDirOldAndNothingOfItMixesIn() throws {
        let program = try build(Self.clangPatchableEntry)
        let first = try runFixture(program)
        let firstStreams = try streamFiles(first.directory)
        let second = try runFixture(program, directory: first.directory)
        try assertExactCallTree(second.directory)
        XCTAssertEqual(try streamFiles(first.directory + ".old"), firstStreams, "the first trace, whole, in DIR.old")
        XCTAssertTrue(Set(try streamFiles(second.directory)).isDisjoint(with: firstStreams))
    }

    func testUnderLivetraceRecordTheStartSaysARecordingIsRunningAndTheShimRecordsEverything() throws {
        let program = try build(Self.gccPatchableEntry)
        let scratch = RecordingFixtures.scratchDirectory("inside-c-nested")
        let ownDirectory = scratch + "/own"
        let result = try Fixtures.run(
            [Fixtures.livetraceExecutable, "record", "-F", "tr_*", "-N", "tr_hidden", "-d", scratch + "/trace", "--",
             program, ownDirectory, "nested"],
            environment: ["GMON_OUT_PREFIX": scratch + "/gmon"])
        XCTAssertEqual(result.status, 0, result.stdout + result.stderr)
        XCTAssertTrue(result.stdout.contains("nested_start -\(LT_EALREADY) "), result.stdout)
        XCTAssertTrue(result.stdout.contains("nested_stop -\(LT_ENOTREG) "), result.stdout)
        XCTAssertTrue(result.stdout.contains("work 8\n"), result.stdout)
        XCTAssertFalse(FileManager.default.fileExists(atPath: ownDirectory), "the refused start removed what it created")
        try assertExactCallTree(scratch + "/trace", command: [program, ownDirectory, "nested"])
    }

    // MARK: - starts and stops racing with the calls

    func testSoakStartsAndStopsRacingWithCallsLeaveEveryTraceCompleteAndWellNested() throws {
        // LIVETRACE_SOAK=1 (make soak): 200 cycles instead of 4.
        let cycles = ProcessInfo.processInfo.environment["LIVETRACE_SOAK"] == "1" ? 200 : 4
        let directory = RecordingFixtures.scratchDirectory("inside-c-cycles") + "/trace"
        let result = try Fixtures.run([try build(Self.gccPatchableEntry), directory, "cycles", String(cycles)])
        XCTAssertFalse(result.signaled, "killed by signal \(result.status)")
        XCTAssertEqual(result.status, 0, result.stdout + result.stderr)
        XCTAssertEqual(result.stdout, (0..<cycles).map { "cycle \($0) 0 0\n" }.joined())
        for cycle in 0..<cycles {
            let trace = try TraceReader.read(directory: "\(directory)-\(cycle)")
            XCTAssertTrue(trace.info.complete)
            // Losses (a writer that waited its bounded time for the drain on a
            // loaded machine) are allowed, but every one is counted.
            let lostInStreams = trace.streams.reduce(UInt64(0)) { total, stream in
                stream.events.reduce(total) { $1.kind == .lost ? $0 + $1.address : $0 }
            }
            XCTAssertEqual(trace.info.lostEvents, lostInStreams + trace.info.lostWithoutRing)
            // A call already running at start was not hooked: no exit without
            // its entry. A call running at stop keeps its entry only.
            let report = try TraceReport(directory: "\(directory)-\(cycle)")
            XCTAssertEqual(report.unmatchedExits, 0, "cycle \(cycle)")
            XCTAssertGreaterThan(report.functions.first { $0.function == "tr_fib" }?.calls ?? 0, 0, "cycle \(cycle)")
            XCTAssertLessThanOrEqual(report.functions.reduce(0) { $0 + $1.unfinished }, 2 * 6, "at most each worker's open frames")
        }
    }

    // MARK: - the program does not notice

    func testTheDrainThreadNeverTakesASignalMeantForTheProgram() throws {
        // The program blocks SIGUSR1 in its only thread after the recording
        // started, sends it to itself and takes it with sigtimedwait. A drain
        // thread that left it unblocked would be the one thread the kernel
        // may deliver it to: the default action would kill the program.
        let directory = RecordingFixtures.scratchDirectory("inside-c-signals") + "/trace"
        let result = try Fixtures.run([try build(Self.gccPatchableEntry), directory, "signals"])
        XCTAssertFalse(result.signaled, "killed by signal \(result.status)")
        XCTAssertEqual(result.status, 0, result.stdout + result.stderr)
        XCTAssertEqual(result.stdout, "start 0 -\nsigwait \(SIGUSR1)\nstop 0 -\n")
        let report = try TraceReport(directory: directory)
        XCTAssertEqual(report.functions.map(\.function), ["tr_leaf"])
        XCTAssertEqual(report.functions.map(\.calls), [1])
    }

    func testAProgramKilledWhileRecordingItselfIsCompletedByLivetraceRecover() throws {
        // The same recording twice: stopped (nested mode), and ended by
        // SIGKILL (killed mode), then recovered from DIR/rings by the CLI.
        let program = try build(Self.gccPatchableEntry)
        let stoppedDirectory = RecordingFixtures.scratchDirectory("inside-c-stopped") + "/trace"
        let stopped = try Fixtures.run([program, stoppedDirectory, "nested"])
        XCTAssertEqual(stopped.status, 0, stopped.stdout + stopped.stderr)
        let directory = RecordingFixtures.scratchDirectory("inside-c-killed") + "/trace"
        let killed = try Fixtures.run([program, directory, "killed"])
        XCTAssertTrue(killed.signaled && killed.status == SIGKILL, "status \(killed.status): \(killed.stderr)")
        XCTAssertFalse(try TraceReader.readInfo(directory: directory).complete)
        XCTAssertTrue(FileManager.default.fileExists(atPath: directory + "/" + TraceFormat.ringsFile))
        // A kill between a stream file's creation and its header's write
        // leaves it empty: the recovery removes it (its events are still in
        // the rings) instead of calling the trace damaged.
        let headerless = directory + "/" + TraceFormat.streamsDirectory + "/killed-before-its-header." + TraceFormat.streamExtension
        XCTAssertTrue(FileManager.default.createFile(atPath: headerless, contents: Data()))

        let recover = try Fixtures.run([Fixtures.livetraceExecutable, "recover", "-d", directory])
        XCTAssertEqual(recover.status, 0, recover.stderr)
        XCTAssertTrue(recover.stderr.contains("0 events lost, recovered in"), recover.stderr)
        XCTAssertTrue(try TraceReader.readInfo(directory: directory).complete)
        // Recovering keeps how it was recorded.
        XCTAssertEqual(try TraceReader.readInfo(directory: directory).options?.recorder, "lt_trace_start")
        XCTAssertFalse(FileManager.default.fileExists(atPath: directory + "/" + TraceFormat.ringsFile))
        XCTAssertFalse(FileManager.default.fileExists(atPath: headerless))
        let recovered = try TraceReport(directory: directory)
        let reference = try TraceReport(directory: stoppedDirectory)
        // Per function, not in report order: the report sorts by total time,
        // which differs between two runs of the same program.
        func callsByFunction(_ report: TraceReport) -> [String: UInt64] {
            Dictionary(uniqueKeysWithValues: report.functions.map { ($0.function, UInt64($0.calls)) })
        }
        XCTAssertEqual(callsByFunction(recovered), callsByFunction(reference))
        XCTAssertEqual(recovered.events, reference.events)

        let again = try Fixtures.run([Fixtures.livetraceExecutable, "recover", "-d", directory])
        XCTAssertEqual(again.status, 0)
        XCTAssertTrue(again.stderr.contains("complete already"), again.stderr)
        let missing = try Fixtures.run([Fixtures.livetraceExecutable, "recover", "-d", directory + "-missing"])
        XCTAssertEqual(missing.status, 1)
        XCTAssertTrue(missing.stderr.hasPrefix("livetrace recover: "), missing.stderr)
    }

    func testForkedChildsCallsAreInTheParentsTraceAndOnlyTheParentStops() throws {
        let directory = RecordingFixtures.scratchDirectory("inside-c-fork") + "/trace"
        let result = try Fixtures.run([try build(Self.clangPatchableEntry), directory, "fork"])
        XCTAssertEqual(result.status, 0, result.stdout + result.stderr)
        let lines = result.stdout.split(separator: "\n").map(String.init)
        XCTAssertEqual(lines.first, "start 0 -")
        XCTAssertTrue(lines.contains { $0.hasPrefix("child_stop -\(LT_ENOTREG) ") }, result.stdout)
        XCTAssertTrue(lines.contains("child_status 0"), result.stdout)
        XCTAssertEqual(lines.last, "stop 0 -")
        let trace = try TraceReader.read(directory: directory)
        XCTAssertTrue(trace.info.complete)
        XCTAssertEqual(trace.info.lostEvents, 0)
        // Parent: tr_leaf(1) before the fork, tr_leaf(2) after; child: 5 calls.
        let callsByPid = Dictionary(grouping: trace.streams, by: \.identity.pid)
            .mapValues { $0.reduce(0) { $0 + $1.events.filter { $0.kind == .entry }.count } }
        XCTAssertEqual(callsByPid[trace.info.pid], 2, "\(callsByPid)")
        XCTAssertEqual(callsByPid.filter { $0.key != trace.info.pid }.map(\.value), [5], "\(callsByPid)")
    }

    // MARK: - a plain C program

    func testPlainCProgramNeedsNothingButLiblivetrace() throws {
        let program = try build(Self.gccPatchableEntry)
        let lib = try Self.libraryDirectory()
        let ldd = try Fixtures.run(["/usr/bin/ldd", program])
        XCTAssertEqual(ldd.status, 0, ldd.stderr)
        XCTAssertFalse(ldd.stdout.contains("libswift"), "no Swift runtime library is loaded:\n\(ldd.stdout)")
        XCTAssertFalse(ldd.stdout.contains("Foundation"), ldd.stdout)
        XCTAssertFalse(ldd.stdout.contains("not found"), ldd.stdout)
        XCTAssertTrue(ldd.stdout.contains("liblivetrace.so => \(lib)/liblivetrace.so"), ldd.stdout)
        let symbols = try Fixtures.run(["/usr/bin/nm", "-D", "--defined-only", lib + "/liblivetrace.so"]).stdout
        for name in ["lt_trace_start", "lt_trace_stop"] {
            XCTAssertTrue(symbols.contains(" T \(name)\n"), "\(name) must be exported")
        }
        // Foundation cannot live in liblivetrace.so (its ICU symbols stay
        // unresolved): none of its code may be linked in.
        let all = try Fixtures.run(["/usr/bin/nm", lib + "/liblivetrace.so"]).stdout
        XCTAssertFalse(all.contains("FoundationEssentials"), "Foundation was linked into liblivetrace.so")
        // And it runs with an environment that points at no Swift library.
        let run = try runFixture(program, environment: ["LD_LIBRARY_PATH": ""])
        XCTAssertEqual(run.lines["start"]?.first, "0", run.result.stdout + run.result.stderr)
    }

    // MARK: - helpers

    /// A directory holding liblivetrace.so → the built libLiveTraceC.so.
    static func libraryDirectory() throws -> String {
        try Fixtures.liblivetraceDirectory("liblivetrace-recording")
    }

    static var includeDirectory: String {
        Fixtures.sourceDirectory.deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("include").path
    }

    func build(_ variant: Variant) throws -> String {
        let lib = try Self.libraryDirectory()
        // No sibling calls: a tail call returns for its caller, and the
        // call tree would not be the source's. Fixtures.compile puts the
        // source after the flags, and Debian's gcc links --as-needed: the
        // library must be kept although it comes before its user.
        return try Fixtures.compile(
            ["recording/trace_inside.c"], compiler: variant.compiler,
            flags: variant.flags + ["-g", "-pthread", "-fno-optimize-sibling-calls", "-I", Self.includeDirectory,
                                    "-L", lib, "-Wl,--no-as-needed", "-llivetrace", "-Wl,-rpath,\(lib)"],
            output: "trace_inside-\(variant.name)")
    }

    struct FixtureRun {
        var result: ProcessResult
        /// Output lines by their first word: the rest, split on spaces.
        var lines: [String: [String]]
        var directory: String
    }

    /// Runs the fixture into `directory` (default: a fresh one), with
    /// DIR-busy holding a file that is not a trace.
    func runFixture(_ program: String, directory: String? = nil, environment: [String: String]? = nil) throws -> FixtureRun {
        let directory = directory ?? RecordingFixtures.scratchDirectory("inside-c") + "/trace"
        try FileManager.default.createDirectory(atPath: directory + "-busy", withIntermediateDirectories: true)
        FileManager.default.createFile(atPath: directory + "-busy/keep.txt", contents: Data("mine\n".utf8))
        // -pg programs write their profile at exit: into the scratch directory.
        let profile = ["GMON_OUT_PREFIX": directory + "-gmon"]
        let result = try Fixtures.run([program, directory], environment: profile.merging(environment ?? [:]) { $1 })
        var lines: [String: [String]] = [:]
        for line in result.stdout.split(separator: "\n") {
            let words = line.split(separator: " ").map(String.init)
            if let name = words.first { lines[name] = Array(words.dropFirst()) }
        }
        XCTAssertEqual(result.status, 0, result.stdout + result.stderr)
        XCTAssertFalse(result.signaled, result.stderr)
        XCTAssertEqual(lines["start"]?.first, "0", result.stdout + result.stderr)
        XCTAssertEqual(lines["stop"]?.first, "0", result.stdout + result.stderr)
        XCTAssertEqual(lines["work"], ["8"], "the program computes what it computes untraced (fib(6) = 8)")
        return FixtureRun(result: result, lines: lines, directory: directory)
    }

    func streamFiles(_ directory: String) throws -> [String] {
        try FileManager.default.contentsOfDirectory(atPath: directory + "/streams").sorted()
    }

    /// tr_fib(n): entry, then tr_leaf at a base case or tr_fib(n-1) and
    /// tr_fib(n-2), then exit; depths relative to the thread's first call.
    static func fibEvents(_ n: Int, depth: Int, into events: inout [String]) {
        events.append("> tr_fib \(depth)")
        if n < 2 {
            events += ["> tr_leaf \(depth + 1)", "< tr_leaf \(depth + 1)"]
        } else {
            fibEvents(n - 1, depth: depth + 1, into: &events)
            fibEvents(n - 2, depth: depth + 1, into: &events)
        }
        events.append("< tr_fib \(depth)")
    }

    /// The whole trace against the fixture's call tree: two threads, each
    /// stream exactly its thread's entries and exits, in order, nested.
    func assertExactCallTree(
        _ directory: String, command: [String]? = nil, file: StaticString = #filePath, line: UInt = #line
    ) throws {
        let trace = try TraceReader.read(directory: directory)
        XCTAssertTrue(trace.info.complete, file: file, line: line)
        XCTAssertEqual(trace.info.lostEvents, 0, file: file, line: line)
        if let command {
            XCTAssertEqual(trace.info.command, command, file: file, line: line)
        } else {
            XCTAssertEqual(trace.info.command.last, directory, "command: \(trace.info.command)", file: file, line: line)
        }
        XCTAssertFalse(FileManager.default.fileExists(atPath: directory + "/rings"), file: file, line: line)
        let symbols = Symbolizer(trace.objects)

        var mainThread = ["> tr_work 0"]
        Self.fibEvents(6, depth: 1, into: &mainThread)
        mainThread.append("< tr_work 0")
        let secondThread = ["> tr_thread_body 0"]
            + Array(repeating: ["> tr_leaf 1", "< tr_leaf 1"], count: 100).flatMap { $0 } + ["< tr_thread_body 0"]

        XCTAssertEqual(trace.streams.count, 2, "one stream per thread that made a traced call", file: file, line: line)
        var recorded: [String: [String]] = [:]
        var baseDepths: Set<UInt32> = []
        for stream in trace.streams {
            guard let first = stream.events.first else { continue }
            baseDepths.insert(first.depth)
            recorded[symbols.describe(first.address)] = stream.events.map { event in
                let mark = event.kind == .entry ? ">" : event.kind == .exit ? "<" : "lost"
                let unwound = event.isUnwound ? " unwound" : ""
                return "\(mark) \(symbols.describe(event.address)) \(Int(event.depth) - Int(first.depth))\(unwound)"
            }
        }
        XCTAssertEqual(baseDepths.count, 1, "both threads' first calls at the same depth", file: file, line: line)
        XCTAssertEqual(recorded["tr_work"], mainThread, file: file, line: line)
        XCTAssertEqual(recorded["tr_thread_body"], secondThread, file: file, line: line)

        let report = try TraceReport(directory: directory)
        let calls = Dictionary(report.functions.map { ($0.function, $0.calls) }, uniquingKeysWith: +)
        // fib(6): 2*F(7)-1 = 25 calls, F(7) = 13 base cases; tr_hidden is notrace;
        // the tr_leaf call after lt_trace_stop is not recorded.
        XCTAssertEqual(calls, ["tr_work": 1, "tr_fib": 25, "tr_leaf": 13 + 100, "tr_thread_body": 1], file: file, line: line)
        XCTAssertEqual(report.unmatchedExits, 0, file: file, line: line)
        XCTAssertEqual(report.functions.map(\.unfinished), [0, 0, 0, 0], file: file, line: line)
    }

    /// lt_trace_stop's summary: 2 threads, (1 + 25 + 13 + 1 + 100) calls of
    /// 2 events each, nothing lost, 4 functions.
    func assertSummaryMatchesTheTree(_ run: FixtureRun, file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertEqual(run.lines["summary"], ["2", "280", "0", "4"], file: file, line: line)
    }
}
