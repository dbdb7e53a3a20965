// `livetrace record` on real compiled programs: exact call counts for every
// site kind, the program's output and exit status unchanged, filters and the
// depth limit, threads, crashes, forwarded signals, a Swift program with its
// own runtime.
import Foundation
import Glibc
import LiveTrace
import TestSupport
import XCTest

final class RecordCommandTests: XCTestCase {
    /// calls.c's call tree (see the fixture's header comment).
    static let expectedCalls: [String: UInt64] = ["main": 1, "shout": 1, "fib": 1973, "worker": 3, "leaf": 6987]

    func testEverySiteKindRecordsExactCountsAndLeavesTheProgramUnchanged() throws {
        for (index, set) in RecordFixtures.siteFlagSets.enumerated() {
            let label = "\(set.compiler) \(set.flags.joined(separator: " ")) (\(set.kind))"
            let program = try RecordFixtures.build("calls.c", compiler: set.compiler, flags: set.flags, output: "record-calls-\(index)")
            let work = RecordFixtures.scratch("calls-\(index)")
            let untraced = try RecordFixtures.run([program], in: work, stdin: "hello record\n")
            XCTAssertEqual(untraced.stdout, "HELLO RECORD fib(15)=610\n", label)
            XCTAssertEqual(untraced.status, 7, label)

            let traced = try RecordFixtures.record([], trace: "trace", program: [program], in: work, stdin: "hello record\n")
            XCTAssertEqual(traced.stdout, untraced.stdout, label)
            XCTAssertEqual(traced.status, untraced.status, "\(label): \(traced.stderr)")
            XCTAssertFalse(traced.signaled, label)
            let calls = try RecordFixtures.calls(work + "/trace")
            XCTAssertEqual(calls, Self.expectedCalls, "\(label): \(traced.stderr)")
            let summary = try XCTUnwrap(RecordFixtures.summaryLine(traced.stderr), traced.stderr)
            XCTAssertTrue(summary.hasPrefix("livetrace record: 4 threads, \(2 * Self.expectedCalls.values.reduce(0, +)) events, 5 functions, 0 events lost, "), "\(label): \(summary)")
            let report = try TraceReport(directory: work + "/trace")
            XCTAssertEqual(report.functions.map(\.unfinished), Array(repeating: 0, count: report.functions.count), label)
            XCTAssertEqual(report.unmatchedExits, 0, label)
            try checkObjectSymbols(work + "/trace", program: program, label: label)
        }
    }

    /// objects.json names the functions events can hold: the program's; the
    /// shim (never traced) and the loader (no site list, no __fentry__) are
    /// listed with their ranges and no symbols, and no error.
    private func checkObjectSymbols(_ trace: String, program: String, label: String) throws {
        let objects = try TraceReader.readObjects(directory: trace).objects
        let byName = { (suffix: String) in objects.filter { URL(fileURLWithPath: $0.path).lastPathComponent.hasPrefix(suffix) } }
        let main = try XCTUnwrap(objects.first { $0.path == URL(fileURLWithPath: program).resolvingSymlinksInPath().path }, label)
        XCTAssertTrue(main.symbols.contains { $0.name == "leaf" }, label)
        for object in byName("libLiveTraceC.so") + byName("liblivetrace.so") + byName("ld-linux") {
            XCTAssertFalse(object.ranges.isEmpty, "\(label): \(object.path)")
            XCTAssertTrue(object.symbols.isEmpty, "\(label): \(object.path) has \(object.symbols.count) symbols")
            XCTAssertNil(object.symbolsError, "\(label): \(object.path)")
        }
        XCTAssertFalse(byName("ld-linux").isEmpty, label)
    }

    /// A library found without sites is remembered (SitelessCache), the
    /// program never is; the same library rebuilt with sites at the same
    /// path is a new file to the cache: its functions are traced.
    func testLibrariesWithoutSitesAreRememberedAndARebuiltOneIsTracedAgain() throws {
        let program = try RecordFixtures.build("calls.c", output: "record-calls-cache")
        let work = RecordFixtures.scratch("cache")
        let cache = work + "/cache"
        let source = work + "/plain.c"
        try """
            __attribute__((noinline)) int plain_twice(int x) { return 2 * x; }
            __attribute__((destructor)) static void plain_done(void) { plain_twice(3); }
            """.write(toFile: source, atomically: true, encoding: .utf8)
        let library = work + "/libplain.so"
        func buildLibrary(_ flags: [String]) throws {
            let cc = try RecordFixtures.run(["/usr/bin/gcc", "-O2", "-shared", "-fPIC"] + flags + [source, "-o", library], in: work)
            XCTAssertEqual(cc.status, 0, cc.stderr)
        }
        func entries() throws -> [String] {
            try FileManager.default.contentsOfDirectory(atPath: cache).map {
                let text = try String(contentsOfFile: cache + "/" + $0, encoding: .utf8)
                return String(text.split(separator: "\n").dropFirst().first ?? "")
            }
        }
        let environment = ["LIVETRACE_CACHE_DIR": cache, "LD_PRELOAD": library]

        try buildLibrary([])
        for run in 0..<2 { // the first run fills the cache, the second reads it
            let traced = try RecordFixtures.record([], trace: "t\(run)", program: [program], in: work, stdin: "x\n", environment: environment)
            XCTAssertEqual(traced.status, 7, traced.stderr)
            XCTAssertEqual(try RecordFixtures.calls(work + "/t\(run)"), Self.expectedCalls, traced.stderr)
            let plain = try XCTUnwrap(try TraceReader.readObjects(directory: work + "/t\(run)").objects.first { $0.path.hasSuffix("/libplain.so") })
            XCTAssertTrue(plain.symbols.isEmpty)
        }
        let remembered = try entries()
        XCTAssertTrue(remembered.contains { $0.hasSuffix("/libplain.so") }, "\(remembered)")
        XCTAssertFalse(remembered.contains { $0.hasSuffix("/record-calls-cache") }, "\(remembered)")

        try buildLibrary(["-fpatchable-function-entry=5"])
        let traced = try RecordFixtures.record([], trace: "t2", program: [program], in: work, stdin: "x\n", environment: environment)
        XCTAssertEqual(traced.status, 7, traced.stderr)
        let calls = try RecordFixtures.calls(work + "/t2")
        XCTAssertEqual(calls["plain_twice"], 1, "\(calls)")
        XCTAssertEqual(calls["leaf"], Self.expectedCalls["leaf"])
    }

    func testReportThroughTheCLIReadsTheRecordedTrace() throws {
        let program = try RecordFixtures.build("calls.c", output: "record-calls-cli")
        let work = RecordFixtures.scratch("cli")
        let traced = try RecordFixtures.record([], trace: "livetrace.data", program: [program], in: work, stdin: "x\n")
        XCTAssertEqual(traced.status, 7, traced.stderr)
        let report = try RecordFixtures.run([Fixtures.livetraceExecutable, "report", "--json", "-s", "calls"], in: work)
        XCTAssertEqual(report.status, 0, report.stderr)
        let json = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(report.stdout.utf8)) as? [String: Any])
        let functions = try XCTUnwrap(json["functions"] as? [[String: Any]])
        XCTAssertEqual(functions.first?["function"] as? String, "leaf")
        XCTAssertEqual(functions.first?["calls"] as? Int, 6987)
    }

    func testFiltersAndNotraceChooseTheFunctions() throws {
        let program = try RecordFixtures.build("calls.c", compiler: "clang", output: "record-calls-filter")
        let work = RecordFixtures.scratch("filter")
        let traced = try RecordFixtures.record(["-F", "fib", "-F", "l*f", "-N", "leaf"], trace: "t", program: [program], in: work, stdin: "a\n")
        XCTAssertEqual(traced.status, 7, traced.stderr)
        XCTAssertEqual(traced.stdout, "A fib(15)=610\n")
        XCTAssertEqual(try RecordFixtures.calls(work + "/t"), ["fib": 1973])
    }

    func testDepthLimitRecordsOnlyTheOutermostCalls() throws {
        let program = try RecordFixtures.build("calls.c", output: "record-calls-depth")
        let work = RecordFixtures.scratch("depth")
        let traced = try RecordFixtures.record(["-D", "1"], trace: "t", program: [program], in: work, stdin: "a\n")
        XCTAssertEqual(traced.status, 7, traced.stderr)
        // Depth 0 of each thread: main on the main thread, worker on the others.
        XCTAssertEqual(try RecordFixtures.calls(work + "/t"), ["main": 1, "worker": 3])
        let two = try RecordFixtures.record(["-D", "2"], trace: "t2", program: [program], in: work, stdin: "a\n")
        XCTAssertEqual(two.status, 7, two.stderr)
        XCTAssertEqual(try RecordFixtures.calls(work + "/t2"), ["main": 1, "worker": 3, "shout": 1, "fib": 1, "leaf": 6000])
    }

    func testMinimumTimeLeavesOutShorterCalls() throws {
        let program = try RecordFixtures.build("timed.c", output: "record-timed")
        let work = RecordFixtures.scratch("timed")
        let traced = try RecordFixtures.record(["-t", "5ms"], trace: "t", program: [program], in: work)
        XCTAssertEqual(traced.status, 0, traced.stderr)
        XCTAssertEqual(traced.stdout, "done\n")
        XCTAssertEqual(try RecordFixtures.calls(work + "/t"), ["main": 1, "slow": 2])
        XCTAssertTrue(traced.stderr.contains("1002 calls shorter than 5ms left out"), traced.stderr)
        let summary = try XCTUnwrap(RecordFixtures.summaryLine(traced.stderr))
        XCTAssertTrue(summary.contains(": 1 thread, 6 events"), summary)
        let medium = try RecordFixtures.record(["-t", "500us"], trace: "t2", program: [program], in: work)
        XCTAssertEqual(medium.status, 0, medium.stderr)
        XCTAssertEqual(try RecordFixtures.calls(work + "/t2"), ["main": 1, "slow": 2, "medium": 1])
        let report = try TraceReport(directory: work + "/t2")
        XCTAssertEqual(report.unmatchedExits, 0)
    }

    func testAnOlderTraceIsKeptAsOld() throws {
        let program = try RecordFixtures.build("calls.c", output: "record-calls-old")
        let work = RecordFixtures.scratch("old")
        XCTAssertEqual(try RecordFixtures.record(["-F", "shout"], trace: "t", program: [program], in: work).status, 7)
        XCTAssertEqual(try RecordFixtures.record(["-F", "worker"], trace: "t", program: [program], in: work).status, 7)
        XCTAssertEqual(try RecordFixtures.calls(work + "/t"), ["worker": 3])
        XCTAssertEqual(try RecordFixtures.calls(work + "/t.old"), ["shout": 1])
    }

    /// The shim reports again at exit only when the loader loaded or
    /// unloaded an object since start: a library dlopened later is then in
    /// objects.json; the first capture could not have seen it.
    func testALibraryLoadedAfterStartIsNamedInObjectsJson() throws {
        let program = try RecordFixtures.build("dlopen_later.c", output: "record-dlopen-later")
        let library = try RecordFixtures.build(
            "dlopen_later_lib.c", flags: ["-O2", "-fpatchable-function-entry=5", "-shared", "-fPIC"],
            output: "librecord-dlopen-later.so")
        let work = RecordFixtures.scratch("dlopen")
        XCTAssertEqual(try RecordFixtures.run([program, library], in: work).status, 42)
        let traced = try RecordFixtures.record(["-F", "before_load"], trace: "t", program: [program, library], in: work)
        XCTAssertEqual(traced.status, 42, traced.stderr)
        XCTAssertEqual(try RecordFixtures.calls(work + "/t"), ["before_load": 1])
        let objects = try String(contentsOfFile: work + "/t/objects.json", encoding: .utf8)
        XCTAssertTrue(objects.contains("librecord-dlopen-later.so"), objects)
    }

    /// The program gets the environment it would get without livetrace, in
    /// the same order (duplicates included), with only the shim's variables
    /// added: a user's own LIVETRACE_FILTER does not reach it.
    /// Both runs start from `env -i` with one explicit, unsorted list: a
    /// `[String: String]` given to Process has no order of its own (each
    /// dictionary instance iterates differently), so the order must be the
    /// test's, or the comparison is a coin toss.
    func testTheProgramSeesItsEnvironmentInItsOrderWithOnlyTheShimsVariablesAdded() throws {
        let program = try RecordFixtures.build("print_env.c", output: "record-print-env")
        let work = RecordFixtures.scratch("environment")
        let inherited = ProcessInfo.processInfo.environment
        let ordered: [(String, String)] =
            [("ZZ_FIRST", "1"), ("AA_SECOND", "2"), ("LIVETRACE_FILTER", "nothing_matches_this"), ("MM_THIRD", "3")]
            + Fixtures.cacheEnvironment.sorted { $0.key > $1.key }.map { ($0.key, $0.value) }
            + ["PATH", "HOME"].compactMap { name in inherited[name].map { (name, $0) } }
        let envPrefix = ["/usr/bin/env", "-i"] + ordered.map { "\($0.0)=\($0.1)" }
        let untraced = try RecordFixtures.run(envPrefix + [program], in: work)
        let traced = try RecordFixtures.run(
            envPrefix + [Fixtures.livetraceExecutable, "record", "-d", work + "/t", "--", program], in: work)
        XCTAssertEqual(traced.status, 0, traced.stderr)
        func programsOwn(_ output: String) -> [String] {
            output.split(separator: "\n").map(String.init).filter { !$0.hasPrefix("LD_PRELOAD=") && !$0.hasPrefix("LIVETRACE_") }
        }
        XCTAssertEqual(programsOwn(traced.stdout), programsOwn(untraced.stdout))
        XCTAssertEqual(
            Array(programsOwn(untraced.stdout).prefix(3)), ["ZZ_FIRST=1", "AA_SECOND=2", "MM_THIRD=3"], untraced.stdout)
        let shims = traced.stdout.split(separator: "\n").filter { $0.hasPrefix("LIVETRACE_") }
        XCTAssertFalse(shims.contains("LIVETRACE_FILTER=nothing_matches_this"), traced.stdout)
        XCTAssertTrue(shims.contains { $0.hasPrefix("LIVETRACE_RINGS=") }, traced.stdout)
        XCTAssertEqual(try RecordFixtures.calls(work + "/t"), ["main": 1])
    }

    /// The shim links its libstdc++ statically and interposes
    /// __cxa_begin_catch: a C program's RTLD_LOCAL C++ library, whose
    /// libstdc++.so.6 is outside the global scope, still catches its own
    /// exceptions.
    func testACxxLibraryLoadedLocallyByACProgramStillCatchesItsExceptions() throws {
        let program = try RecordFixtures.build("dlopen_cxx.c", output: "record-dlopen-cxx")
        let library = try Fixtures.compile(
            ["graph/graph_exceptions.cpp"], compiler: "g++", flags: ["-O0", "-fpatchable-function-entry=5", "-shared", "-fPIC"],
            output: "librecord-dlopen-cxx.so")
        let work = RecordFixtures.scratch("dlopen-cxx")
        let untraced = try RecordFixtures.run([program, library], in: work)
        XCTAssertEqual(untraced.stdout, "gx_outer(5) = 103\n", untraced.stderr)
        let traced = try RecordFixtures.record([], trace: "t", program: [program, library], in: work)
        XCTAssertEqual(traced.status, 0, traced.stderr)
        XCTAssertEqual(traced.stdout, untraced.stdout, traced.stderr)
    }

    func testSwiftProgramWithItsOwnRuntimeIsRecordedThroughTheShim() throws {
        let object = try Fixtures.compile(
            ["record/swift_sum.c"], compiler: "clang", flags: ["-O2", "-fpatchable-function-entry=5", "-c"], output: "record-swift-sum.o")
        let program = try Fixtures.compile(
            ["record/swift_main.swift", object], compiler: "swiftc",
            flags: ["-import-objc-header", Fixtures.source("record/swift_sum.h")], output: "record-swift-main")
        let work = RecordFixtures.scratch("swift")
        let untraced = try RecordFixtures.run([program], in: work)
        XCTAssertEqual(untraced.stdout, "sums: 328350,2646700,8955050\n")
        let traced = try RecordFixtures.record([], trace: "t", program: [program], in: work)
        XCTAssertEqual(traced.stdout, untraced.stdout)
        XCTAssertEqual(traced.status, 0, traced.stderr)
        XCTAssertEqual(try RecordFixtures.calls(work + "/t"), ["record_fixture_sum_squares": 3, "record_fixture_square": 600])
    }
}

/// A crash mid-run leaves a readable trace with every event up to the crash.
final class RecordCrashTests: XCTestCase {
    func testSegfaultAndAbortLeaveEveryEventBeforeTheCrash() throws {
        for (mode, signal) in [("segv", SIGSEGV), ("abort", SIGABRT)] {
            for (compiler, flags) in [("gcc", ["-O2", "-fpatchable-function-entry=5"]), ("clang", ["-O1", "-pg", "-mfentry"])] {
                let label = "\(mode), \(compiler) \(flags.joined(separator: " "))"
                let program = try RecordFixtures.build("crash.c", compiler: compiler, flags: flags, output: "record-crash-\(compiler)")
                let work = RecordFixtures.scratch("crash-\(mode)")
                let traced = try RecordFixtures.record([], trace: "t", program: [program, mode], in: work)
                XCTAssertEqual(traced.status, 128 + signal, "\(label): \(traced.stderr)")
                XCTAssertFalse(traced.signaled, "livetrace itself must exit, not die: \(label)")
                XCTAssertEqual(traced.stdout, "before the crash\n", label)
                let summary = try XCTUnwrap(RecordFixtures.summaryLine(traced.stderr), traced.stderr)
                XCTAssertTrue(summary.contains("killed by SIG\(mode == "segv" ? "SEGV" : "ABRT")"), summary)
                let trace = try TraceReader.read(directory: work + "/t")
                XCTAssertTrue(trace.info.complete, label)
                XCTAssertTrue(trace.info.salvaged, label)
                let report = TraceReport(trace: trace)
                let byName = Dictionary(report.functions.map { ($0.function, $0) }, uniquingKeysWith: { a, _ in a })
                XCTAssertEqual(byName["step"]?.calls, 1000, label)
                XCTAssertEqual(byName["step"]?.unfinished, 0, label)
                let crashFunction = mode == "segv" ? "crash_segv" : "crash_abort"
                XCTAssertEqual(byName["main"]?.unfinished, 1, label)
                XCTAssertEqual(byName[crashFunction]?.unfinished, 1, label)
                XCTAssertEqual(report.lostEvents, 0, label)
            }
        }
    }
}

/// Signals sent to `livetrace record` reach the program.
final class RecordSignalTests: XCTestCase {
    func testSignalsSentToLivetraceAreForwarded() throws {
        let program = try RecordFixtures.build("signals.c", output: "record-signals")
        let work = RecordFixtures.scratch("signals")
        let process = Process()
        process.executableURL = URL(fileURLWithPath: Fixtures.livetraceExecutable)
        process.arguments = ["record", "-d", "t", "--", program]
        process.currentDirectoryURL = URL(fileURLWithPath: work)
        let out = Pipe(), err = Pipe()
        process.standardOutput = out
        process.standardError = err
        try process.run()
        let reader = out.fileHandleForReading
        func readUntil(_ text: String) -> String {
            var seen = Data()
            while !String(decoding: seen, as: UTF8.self).contains(text) {
                let chunk = reader.availableData
                if chunk.isEmpty { break }
                seen.append(chunk)
            }
            return String(decoding: seen, as: UTF8.self)
        }
        XCTAssertEqual(readUntil("ready\n"), "ready\n")
        kill(process.processIdentifier, SIGUSR1)
        XCTAssertEqual(readUntil("usr1\n"), "usr1\n")
        kill(process.processIdentifier, SIGTERM)
        process.waitUntilExit()
        let stderr = String(decoding: err.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        XCTAssertEqual(process.terminationReason, .exit, "livetrace exits; only the program was killed")
        XCTAssertEqual(process.terminationStatus, 128 + SIGTERM, stderr)
        XCTAssertTrue(stderr.contains("killed by SIGTERM"), stderr)
        let calls = try RecordFixtures.calls(work + "/t")
        XCTAssertEqual(calls["note_signal"], 1, "the handler's traced call is recorded: \(calls)")
    }
}

/// The shim follows fork (the child records into its own stream) and exec
/// (the new image loads the shim again from the inherited environment).
final class RecordForkExecTests: XCTestCase {
    func testForkedChildRecordsIntoItsOwnStream() throws {
        let program = try RecordFixtures.build("forkexec.c", output: "record-fork")
        let work = RecordFixtures.scratch("fork")
        let traced = try RecordFixtures.record([], trace: "t", program: [program], in: work)
        XCTAssertEqual(traced.status, 0, traced.stderr)
        XCTAssertEqual(traced.stdout, "child exited 0\n")
        let trace = try TraceReader.read(directory: work + "/t")
        XCTAssertEqual(Set(trace.streams.map(\.identity.pid)).count, 2, "one stream per process")
        XCTAssertEqual(try RecordFixtures.calls(work + "/t"), ["main": 1, "parent_work": 3, "child_work": 4])
    }

    func testExecdImageIsRecordedAndEarlierNamesAreKept() throws {
        let program = try RecordFixtures.build("forkexec.c", compiler: "clang", output: "record-exec")
        let work = RecordFixtures.scratch("exec")
        let traced = try RecordFixtures.record([], trace: "t", program: [program, "then-exec"], in: work)
        XCTAssertEqual(traced.status, 0, traced.stderr)
        XCTAssertEqual(traced.stdout, "child exited 0\nafter exec\n")
        // main: once before the exec (never returns: exec replaces it), once after.
        XCTAssertEqual(try RecordFixtures.calls(work + "/t"), ["main": 2, "parent_work": 3, "child_work": 4, "after_exec": 5])
    }
}
