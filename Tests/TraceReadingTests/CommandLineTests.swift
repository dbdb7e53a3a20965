// The CLI as a tool: info's text, --version, help, unknown options and
// missing trace directories reported as such by every reading command, and
// report's new columns, threads and diffs on a synthetic trace.
import Foundation
import LiveTraceAnalysis
import LiveTraceRecording
import TestSupport
import XCTest

final class CommandLineTests: XCTestCase {
    static let readingCommands: [[String]] = [["report"], ["replay"], ["info"], ["dump", "--chrome"], ["dump", "--folded"]]

    func testInfoSaysWhatTheTraceHolds() throws {
        let dir = try SyntheticTraces.directory("info")
        let result = try ReadingFixtures.livetrace(["info", "-d", dir])
        XCTAssertEqual(result.status, 0, result.stderr)
        let text = result.stdout.split(separator: "\n", omittingEmptySubsequences: false)
            .map { $0.hasPrefix("recorded:") ? "recorded: (time)" : String($0) }.joined(separator: "\n")
        XCTAssertEqual(text, """
            trace:         \(dir)
            command:       prog arg
            pid:           100
            options:       \(TraceSummary.optionsNotRecorded)
            recorded: (time)
            duration:      1.000  s
            state:         complete
            format:        version 3
            buffers:       0 x 0 events
            events:        17 (9 entries, 8 exits)
            lost:          3 events (3 in the threads' streams, 0 without a buffer)
            threads:       2

                   TID      Events    Lost       Start         End
                   100           8       3        0 ns    2.100 ms
                   101           9       0      500 ns    5.000 us

            binaries (1):
              /synthetic/prog  build-id feedface  3 symbols

            """)
    }

    func testInfoOfATraceWithoutRecordingOptionsSaysTheyWereNotRecorded() throws {
        // SyntheticTraces writes info.json without `recording`, as every
        // trace before the field did.
        let dir = try SyntheticTraces.directory("info-old")
        let info = try String(contentsOfFile: dir + "/info.json", encoding: .utf8)
        XCTAssertFalse(info.contains("recording"), info)
        let result = try ReadingFixtures.livetrace(["info", "--json", "-d", dir])
        XCTAssertEqual(result.status, 0, result.stderr)
        let json = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(result.stdout.utf8)) as? [String: Any])
        XCTAssertTrue(json["recording"] is NSNull, result.stdout)
        XCTAssertEqual(json["command"] as? [String], ["prog", "arg"])
        XCTAssertEqual(json["events"] as? Int, 17)
        XCTAssertEqual(json["lost"] as? Int, 3)
        let threads = try XCTUnwrap(json["threads"] as? [[String: Any]])
        XCTAssertEqual(threads.map { $0["tid"] as? Int }, [100, 101])
        XCTAssertEqual(threads.map { $0["end_ns"] as? Int }, [2_100_000, 5_000])
    }

    func testInfoNamesTheFiltersDepthAndTimeATraceWasRecordedWith() throws {
        let program = try ReadingFixtures.treeProgram()
        let dir = ReadingFixtures.scratch("options") + "/trace"
        let recordArguments = ["record", "-d", dir, "-F", "main", "-F", "fa*", "-F", "jumper", "-F", "deeper", "-N", "deeper",
                               "-D", "3", "-t", "2ns", "--wait", "7", "--", program, "two words"]
        let record = try ReadingFixtures.livetrace(recordArguments)
        XCTAssertEqual(record.status, 0, record.stderr)
        let result = try ReadingFixtures.livetrace(["info", "-d", dir])
        XCTAssertEqual(result.status, 0, result.stderr)
        let tracer = ([Fixtures.livetraceExecutable] + recordArguments).map { $0 == "fa*" ? "'fa*'" : $0 == "two words" ? "'two words'" : $0 }
        for line in [
            "command:       \(program) 'two words'",
            "recorder:      livetrace record",
            "recorded with: " + tracer.joined(separator: " "),
            "functions:     main 'fa*' jumper deeper (-F)",
            "excluded:      deeper (-N)",
            "relocated:     none (-P)",
            "max depth:     3 (-D)",
            "min time:      2 ns (-t)",
            "buffer wait:   7.000 ms (--wait)",
        ] {
            XCTAssertTrue(result.stdout.contains(line + "\n"), "no line '\(line)' in:\n\(result.stdout)")
        }
        // What was recorded obeys them: main, fact and jumper, never deeper.
        let report = try ReadingFixtures.livetrace(["report", "--json", "-d", dir])
        XCTAssertFalse(report.stdout.contains("deeper"), report.stdout)
        XCTAssertTrue(report.stdout.contains("\"fact\""), report.stdout)

        let json = try ReadingFixtures.livetrace(["info", "--json", "-d", dir])
        XCTAssertEqual(json.status, 0, json.stderr)
        let object = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(json.stdout.utf8)) as? [String: Any])
        let options = try XCTUnwrap(object["recording"] as? [String: Any], json.stdout)
        XCTAssertEqual(options["recorder"] as? String, "livetrace record")
        XCTAssertEqual(options["tracer_command"] as? [String], [Fixtures.livetraceExecutable] + recordArguments)
        XCTAssertEqual(options["functions"] as? [String], ["main", "fa*", "jumper", "deeper"])
        XCTAssertEqual(options["excluding"] as? [String], ["deeper"])
        XCTAssertEqual(options["relocating"] as? [String], [])
        XCTAssertEqual(options["max_depth"] as? Int, 3)
        XCTAssertEqual(options["min_time_ns"] as? Int, 2)
        XCTAssertEqual(options["wait_us"] as? Int, 7_000)
        XCTAssertEqual(object["command"] as? [String], [program, "two words"])

        // Without options: no depth limit, no time filter, the default wait.
        let plain = try ReadingFixtures.livetrace(["info", "-d", try ReadingFixtures.traces().normal])
        for line in ["functions:     every function with a site (-F)", "max depth:     no limit (-D)", "min time:      none (-t)"] {
            XCTAssertTrue(plain.stdout.contains(line + "\n"), "no line '\(line)' in:\n\(plain.stdout)")
        }
    }

    func testReportOfRecordedTracesPerFunctionAndThread() throws {
        let traces = try ReadingFixtures.traces()
        let normal = try ReadingFixtures.livetrace(["report", "-d", traces.normal, "-s", "name"])
        XCTAssertEqual(normal.status, 0, normal.stderr)
        XCTAssertEqual(ReadingFixtures.maskTimes(normal.stdout), """
            Total time Self time Calls Function
            ========== ========== ========== ====================
            TIME TIME 1 deeper
            TIME TIME 4 fact
            TIME TIME 1 jumper
            TIME TIME 3 leaf
            TIME TIME 1 main
            TIME TIME 1 note
            TIME TIME 1 on_signal
            TIME TIME 2 thread_body

            """)
        // The crash: main and doomed are entry-only (unfinished); one line
        // per thread, tids in the order the threads started.
        let crash = try ReadingFixtures.livetrace(["report", "-d", traces.crash, "-s", "name", "--threads"])
        XCTAssertEqual(crash.status, 0, crash.stderr)
        var tids = ReadingFixtures.maskTimes(crash.stdout).split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        // Only the thread rows start with a digit once times are masked.
        for i in tids.indices where tids[i].first?.isNumber == true {
            tids[i] = "TID" + tids[i].drop { $0.isNumber }
        }
        XCTAssertEqual(tids.joined(separator: "\n"), """
            Total time Self time Calls Function
            ========== ========== ========== ====================
            TIME TIME 1 deeper
            TIME TIME 1 doomed (1 unfinished)
            TIME TIME 4 fact
            TIME TIME 1 jumper
            TIME TIME 4 leaf
            TIME TIME 1 main (1 unfinished)
            TIME TIME 1 note
            TIME TIME 1 on_signal
            TIME TIME 2 thread_body

            TID Events Calls Total time Lost Unfinished First function
            ======== ========== ========== ========== ==== ========== ====================
            TID 22 12 TIME 0 2 main
            TID 4 2 TIME 0 0 thread_body
            TID 4 2 TIME 0 0 thread_body

            """)
    }

    func testInfoOfARecordedCrashInFull() throws {
        let traces = try ReadingFixtures.traces()
        let result = try ReadingFixtures.livetrace(["info", "-d", traces.crash])
        XCTAssertEqual(result.status, 0, result.stderr)
        let program = try ReadingFixtures.treeProgram()
        var lines = ReadingFixtures.maskTimes(result.stdout).split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        for i in lines.indices {
            lines[i] = lines[i].replacingOccurrences(of: traces.crash, with: "DIR").replacingOccurrences(of: program, with: "PROGRAM")
                .replacingOccurrences(of: Fixtures.livetraceExecutable, with: "LIVETRACE")
            if lines[i].hasPrefix("pid: ") { lines[i] = "pid: PID" }
            if lines[i].hasPrefix("recorded: ") { lines[i] = "recorded: WHEN" }
            if lines[i].first?.isNumber == true { lines[i] = "TID" + lines[i].drop { $0.isNumber } }
        }
        let binaries = try XCTUnwrap(lines.firstIndex { $0.hasPrefix("binaries (") })
        XCTAssertEqual(lines[..<binaries].joined(separator: "\n"), """
            trace: DIR
            command: PROGRAM crash
            pid: PID
            recorder: livetrace record
            recorded with: LIVETRACE record -d DIR -- PROGRAM crash
            functions: every function with a site (-F)
            excluded: none (-N)
            relocated: none (-P)
            max depth: no limit (-D)
            min time: none (-t)
            buffer wait: TIME (--wait)
            recorded: WHEN
            duration: TIME
            state: complete, salvaged after the program died
            format: version \(TraceFormat.version)
            buffers: \(RingArea.defaultRingCount) x \(RingArea.defaultRingCapacity) events
            events: 30 (16 entries, 14 exits)
            lost: 0 events (0 in the threads' streams, 0 without a buffer)
            threads: 3

            TID Events Lost Start End
            TID 22 0 TIME TIME
            TID 4 0 TIME TIME
            TID 4 0 TIME TIME

            """)
        XCTAssertTrue(lines[binaries...].contains { $0.hasPrefix("PROGRAM build-id ") }, result.stdout)
    }

    func testInfoOfARecordedCrashNamesTheProgramAndItsThreads() throws {
        let traces = try ReadingFixtures.traces()
        let result = try ReadingFixtures.livetrace(["info", "-d", traces.crash])
        XCTAssertEqual(result.status, 0, result.stderr)
        XCTAssertTrue(result.stdout.contains("state:         complete, salvaged after the program died"), result.stdout)
        XCTAssertTrue(result.stdout.contains("reading-tree crash\n"), result.stdout)
        XCTAssertTrue(result.stdout.contains("threads:       3\n"), result.stdout)
        XCTAssertTrue(result.stdout.contains("/reading-tree  build-id "), result.stdout)
    }

    func testVersionAndHelp() throws {
        let version = try ReadingFixtures.livetrace(["--version"])
        XCTAssertEqual(version.status, 0)
        XCTAssertNotNil(version.stdout.range(of: #"^[0-9]+\.[0-9]+\.[0-9]+\n$"#, options: .regularExpression), version.stdout)
        let help = try ReadingFixtures.livetrace(["help"])
        XCTAssertEqual(help.status, 0)
        for command in ["list", "record", "report", "replay", "dump", "info", "recover"] {
            XCTAssertTrue(help.stdout.contains("\n  \(command) "), "help lacks \(command):\n\(help.stdout)")
        }
        let replayHelp = try ReadingFixtures.livetrace(["help", "replay"])
        XCTAssertTrue(replayHelp.stdout.contains("USAGE: livetrace replay"), replayHelp.stdout)
    }

    /// `livetrace record ARGS` is parsed with `record` as the root command
    /// (LiveTraceCommand.main): its help still names `livetrace record`, and
    /// a completion-script request given after `record` still gets the whole
    /// tool's script, as from the full parse.
    func testRecordParsedAsRootKeepsItsHelpAndTheCompletionRequest() throws {
        let help = try ReadingFixtures.livetrace(["record", "--help"])
        XCTAssertEqual(help.status, 0, help.stderr)
        XCTAssertTrue(help.stdout.contains("USAGE: livetrace record "), help.stdout)
        let whole = try ReadingFixtures.livetrace(["--generate-completion-script", "bash"])
        XCTAssertEqual(whole.status, 0, whole.stderr)
        for arguments in [["record", "--generate-completion-script", "bash"], ["record", "--generate-completion-script=bash"]] {
            let viaRecord = try ReadingFixtures.livetrace(arguments)
            XCTAssertEqual(viaRecord.status, 0, "\(arguments): \(viaRecord.stderr)")
            XCTAssertEqual(viaRecord.stdout, whole.stdout, "\(arguments)")
        }
        let unknown = try ReadingFixtures.livetrace(["record", "-p", "x"])
        XCTAssertNotEqual(unknown.status, 0)
        XCTAssertTrue(unknown.stderr.contains("Usage: livetrace record"), unknown.stderr)
    }

    func testCompletionScriptsAndTheManPageAreCurrent() throws {
        let root = URL(fileURLWithPath: Fixtures.sourceDirectory.path).deletingLastPathComponent().deletingLastPathComponent()
        for (shell, file) in [("bash", "livetrace.bash"), ("zsh", "_livetrace"), ("fish", "livetrace.fish")] {
            let generated = try ReadingFixtures.livetrace(["--generate-completion-script", shell])
            XCTAssertEqual(generated.status, 0, generated.stderr)
            let committed = try String(contentsOf: root.appendingPathComponent("completions/" + file), encoding: .utf8)
            XCTAssertEqual(generated.stdout, committed, "completions/\(file) is stale: run `make docs`")
            XCTAssertTrue(committed.contains("replay") && committed.contains("flame-graph"), file)
        }
        let manual = try String(contentsOf: root.appendingPathComponent("docs/man/livetrace.1"), encoding: .utf8)
        for command in ["list", "record", "report", "replay", "dump", "info", "recover"] {
            XCTAssertTrue(manual.contains(".It Em \(command)"), "docs/man/livetrace.1 lacks \(command): run `make docs`")
        }
        XCTAssertTrue(manual.contains("-flame-graph"), "docs/man/livetrace.1 is stale: run `make docs`")
    }

    func testEveryReadingCommandNamesAnUnknownOptionAndAMissingDirectory() throws {
        let missing = ReadingFixtures.scratch("missing") + "/no-such-trace"
        for command in Self.readingCommands {
            let unknown = try ReadingFixtures.livetrace(command + ["--no-such-option"])
            XCTAssertNotEqual(unknown.status, 0, "\(command)")
            XCTAssertTrue(unknown.stderr.contains("Unknown option '--no-such-option'"), "\(command): \(unknown.stderr)")
            let absent = try ReadingFixtures.livetrace(command + ["-d", missing])
            XCTAssertEqual(absent.status, 1, "\(command)")
            XCTAssertTrue(absent.stderr.contains("no trace directory \(missing)"), "\(command): \(absent.stderr)")
            XCTAssertEqual(absent.stdout, "", "\(command)")
        }
    }

    func testReportAveragesThreadsAndSortKeys() throws {
        let dir = try SyntheticTraces.directory("report")
        let result = try ReadingFixtures.livetrace(["report", "-d", dir, "-s", "max", "--threads"])
        XCTAssertEqual(result.status, 0, result.stderr)
        XCTAssertEqual(result.stdout, """
              Total time   Self time       Calls    Avg time    Min time    Max time  Function
              ==========  ==========  ==========  ==========  ==========  ==========  ====================
                2.100 ms    1.950 ms           1    2.100 ms    2.100 ms    2.100 ms  main
              150.100 us  148.500 us           2   75.050 us      200 ns  149.900 us  work
                1.900 us    1.900 us           6      325 ns        0 ns    1.000 us  leaf  (1 unfinished)

            3 events lost, 1 exits without entry: times near them are not exact

                   TID      Events       Calls  Total time  Lost  Unfinished  First function
              ========  ==========  ==========  ==========  ====  ==========  ====================
                   100           8           4    2.100 ms     3           0  main
                   101           9           5      500 ns     0           1  work

            """)
        for (key, order) in [("name", ["leaf", "main", "work"]), ("min", ["main", "work", "leaf"]), ("calls", ["leaf", "work", "main"])] {
            let sorted = try ReadingFixtures.livetrace(["report", "-d", dir, "-s", key, "--json"])
            let json = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(sorted.stdout.utf8)) as? [String: Any])
            let functions = try XCTUnwrap(json["functions"] as? [[String: Any]])
            XCTAssertEqual(functions.map { $0["function"] as? String }, order, key)
            XCTAssertEqual(functions.first { $0["function"] as? String == "work" }?["avg_ns"] as? Int, 75_050)
        }
    }

    func testReportDiffShowsBothTracesAndTheChange() throws {
        let base = try SyntheticTraces.directory("diff-base")
        // The other run: main only, twice as long; work and leaf absent.
        let other = try SyntheticTraces.directory("diff-other", SyntheticTraces.trace([SyntheticTraces.events([(0, "+main"), (4_200_000, "-main")])]))
        let result = try ReadingFixtures.livetrace(["report", "-d", base, "--diff", other, "--json"])
        XCTAssertEqual(result.status, 0, result.stderr)
        let json = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(result.stdout.utf8)) as? [String: Any])
        let rows = try XCTUnwrap(json["diff"] as? [[String: Any]])
        XCTAssertEqual(rows.map { $0["function"] as? String }, ["main", "work", "leaf"])
        XCTAssertEqual(rows[0]["total_ns_delta"] as? Int, 2_100_000)
        XCTAssertEqual(rows[1]["total_ns_delta"] as? Int, -150_100)
        XCTAssertEqual(rows[1]["calls_delta"] as? Int, -2)
        let text = try ReadingFixtures.livetrace(["report", "-d", base, "--diff", other])
        XCTAssertTrue(text.stdout.contains("    2.100 ms    4.200 ms   +2.100 ms"), text.stdout)
    }
}

final class ProgressBarTests: XCTestCase {
    /// One thread calling leaf 100,000 times; the bar's one-second delay is
    /// set to 0 (LIVETRACE_PROGRESS_AFTER).
    func testAProgressBarOnATerminalOnly() throws {
        var events: [TraceEvent] = []
        let leaf = SyntheticTraces.addresses["leaf"]!
        for i in 0..<100_000 as Range<UInt64> {
            events.append(TraceEvent(kind: .entry, address: leaf, timestamp: 10 * i))
            events.append(TraceEvent(kind: .exit, address: leaf, timestamp: 10 * i + 5))
        }
        let dir = try SyntheticTraces.directory("progress", SyntheticTraces.trace([events]))
        // script(1) gives the command a terminal; its output is the terminal's.
        let command = "LIVETRACE_PROGRESS_AFTER=0 \(Fixtures.livetraceExecutable) replay -d \(dir) > /dev/null"
        let onTerminal = try Fixtures.run(["/usr/bin/script", "-qec", command, "/dev/null"])
        XCTAssertEqual(onTerminal.status, 0, onTerminal.stdout)
        XCTAssertTrue(onTerminal.stdout.contains("\r[#"), onTerminal.stdout)
        XCTAssertTrue(onTerminal.stdout.contains("%"), onTerminal.stdout)
        let piped = try Fixtures.run([Fixtures.livetraceExecutable, "report", "-d", dir], environment: ["LIVETRACE_PROGRESS_AFTER": "0"])
        XCTAssertEqual(piped.status, 0)
        XCTAssertEqual(piped.stderr, "", "no progress bar without a terminal")
    }

    /// Every reading command draws the bar on a terminal (and clears it at
    /// the end); with the default one-second delay, a command that ends
    /// sooner draws none.
    func testEveryReadingCommandDrawsTheBarOnlyAfterItsDelay() throws {
        var events: [TraceEvent] = []
        let leaf = SyntheticTraces.addresses["leaf"]!
        for i in 0..<100_000 as Range<UInt64> {
            events.append(TraceEvent(kind: .entry, address: leaf, timestamp: 10 * i))
            events.append(TraceEvent(kind: .exit, address: leaf, timestamp: 10 * i + 5))
        }
        let dir = try SyntheticTraces.directory("progress-all", SyntheticTraces.trace([events]))
        let out = ReadingFixtures.scratch("progress-files")
        let commands = [["report"], ["replay"], ["info"], ["dump", "--folded"], ["dump", "--chrome"],
                        ["dump", "--perfetto", out + "/t.pftrace"], ["dump", "--flame-graph", out + "/t.svg"]]
        let clear = "\r" + String(repeating: " ", count: 48) + "\r"
        for command in commands {
            let line = ([Fixtures.livetraceExecutable] + command + ["-d", dir]).joined(separator: " ")
            let drawn = try Fixtures.run(["/usr/bin/script", "-qec", "LIVETRACE_PROGRESS_AFTER=0 \(line) > /dev/null", "/dev/null"])
            XCTAssertEqual(drawn.status, 0, "\(command): \(drawn.stdout)")
            XCTAssertTrue(drawn.stdout.contains("\r[#") && drawn.stdout.contains("%"), "\(command): \(drawn.stdout)")
            XCTAssertTrue(drawn.stdout.hasSuffix(clear), "\(command) leaves its bar: \(drawn.stdout.debugDescription)")
        }
        // A trace of 17 events reads in far less than the default second.
        let small = try SyntheticTraces.directory("progress-small")
        for command in commands {
            let line = ([Fixtures.livetraceExecutable] + command + ["-d", small]).joined(separator: " ")
            let quick = try Fixtures.run(["/usr/bin/script", "-qec", "\(line) > /dev/null", "/dev/null"])
            XCTAssertEqual(quick.status, 0, "\(command): \(quick.stdout)")
            XCTAssertFalse(quick.stdout.contains("\r["), "\(command) drew a bar before its delay: \(quick.stdout)")
        }
    }
}
