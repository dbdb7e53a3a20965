// `livetrace record -P GLOB`: a Swift program built with plain swiftc (no
// entry sites) recorded by prologue relocation: its output is unchanged and
// the trace's call counts equal the counts it prints itself.
import Foundation
import LiveTrace
import TestSupport
import XCTest

final class RecordDynamicTests: XCTestCase {
    func testSwiftProgramWithoutSitesIsRecordedByRelocationWithExactCounts() throws {
        for level in ["-Onone", "-O"] {
            let work = RecordFixtures.scratch("dynamic\(level)")
            let program = try Fixtures.compile(["relocation/swiftprog.swift"], compiler: "swiftc",
                                               flags: [level, "-module-name", "prog"], output: "swiftprog\(level)")
            let plain = try Fixtures.run([program])
            let result = try RecordFixtures.record(["-P", "prog.work(*", "-P", "prog.step(*"], trace: work + "/t", program: [program], in: work)
            XCTAssertEqual(result.status, 0, result.stderr)
            XCTAssertEqual(result.stdout, plain.stdout, "\(level): the program's output")
            let words = plain.stdout.split(separator: " ")
            let ownWork = try XCTUnwrap(UInt64(words[3])), ownStep = try XCTUnwrap(UInt64(words[5].dropLast(words[5].hasSuffix("\n") ? 1 : 0)))
            let calls = try RecordFixtures.calls(work + "/t")
            // The report names them raw ($s4prog4workyS2iF) or demangled.
            func count(_ name: String) -> UInt64 {
                calls.filter { $0.key.hasPrefix("prog.\(name)(") || $0.key.hasPrefix("$s4prog4\(name)") }.values.reduce(0, +)
            }
            XCTAssertEqual(count("work"), ownWork, "\(level) \(calls)")
            XCTAssertEqual(count("step"), ownStep, "\(level) \(calls)")
        }
    }

    func testSwiftProgramWithoutSitesAndWithoutFlagsIsRecordedWhole() throws {
        let work = RecordFixtures.scratch("dynamic-whole")
        let program = try Fixtures.compile(["relocation/swiftprog.swift"], compiler: "swiftc",
                                           flags: ["-O", "-module-name", "prog"], output: "swiftprog-whole")
        let plain = try Fixtures.run([program])
        let result = try RecordFixtures.record([], trace: work + "/t", program: [program], in: work)
        XCTAssertEqual(result.status, 0, result.stderr)
        XCTAssertEqual(result.stdout, plain.stdout)
        let words = plain.stdout.split(separator: " ")
        let calls = try RecordFixtures.calls(work + "/t")
        func count(_ name: String) -> UInt64 {
            calls.filter { $0.key.hasPrefix("prog.\(name)(") || $0.key.hasPrefix("$s4prog4\(name)") }.values.reduce(0, +)
        }
        XCTAssertEqual(count("work"), UInt64(words[3]), "\(calls)")
        XCTAssertEqual(String(count("step")) + "\n", String(words[5]), "\(calls)")
        XCTAssertEqual(calls["main"], 1, "\(calls)")
    }

    /// Swift async/await with tasks and an actor, recorded whole: output
    /// unchanged; the async function's entries (entry only, never an exit)
    /// equal the calls it counts; the synchronous functions it calls and the
    /// actor's method keep their exits with counts exact; every async
    /// function and partial function is entry only; replay says so.
    func testSwiftAsyncProgramIsRecordedWithItsAsyncFunctionsEntryOnly() throws {
        for level in ["-Onone", "-O"] {
            let work = RecordFixtures.scratch("dynamic-async\(level)")
            let program = try Fixtures.compile(["relocation/asyncprog.swift"], compiler: "swiftc",
                                               flags: [level, "-parse-as-library", "-module-name", "prog"], output: "asyncprog\(level)")
            let plain = try Fixtures.run([program])
            let result = try RecordFixtures.record([], trace: work + "/t", program: [program], in: work)
            XCTAssertEqual(result.status, 0, result.stderr)
            XCTAssertEqual(result.stdout, plain.stdout, "\(level): the program's output")
            let words = plain.stdout.split(whereSeparator: { $0 == " " || $0 == "\n" })
            let own = (fetch: try XCTUnwrap(UInt64(words[1])), leaf: try XCTUnwrap(UInt64(words[3])), add: try XCTUnwrap(UInt64(words[5])))
            let report = try TraceReport(directory: work + "/t")
            // The report names them raw ($s4prog5fetchyS2iYaF) or demangled;
            // fetch's partial functions (…TQ1_, …TY0_) are not fetch's calls.
            func stats(_ raw: String, _ demangled: String) -> (calls: UInt64, entryOnly: UInt64, unfinished: UInt64) {
                report.functions.filter { $0.function == raw || ($0.function.hasPrefix(demangled) && !$0.function.contains("partial function")) }
                    .reduce((0, 0, 0)) { ($0.0 + $1.calls, $0.1 + $1.entryOnly, $0.2 + $1.unfinished) }
            }
            let table = report.text()
            let fetch = stats("$s4prog5fetchyS2iYaF", "prog.fetch(")
            let leaf = stats("$s4prog4leafyS2iF", "prog.leaf(")
            let add = stats("$s4prog5TallyC3addyySiF", "prog.Tally.add(")
            XCTAssertEqual(fetch.calls, own.fetch, "\(level)\n\(table)")
            XCTAssertEqual(fetch.entryOnly, own.fetch, "\(level): fetch is async, entry only\n\(table)")
            XCTAssertEqual(leaf.calls, own.leaf, "\(level)\n\(table)")
            XCTAssertEqual(leaf.entryOnly, 0, "\(level)\n\(table)")
            XCTAssertEqual(leaf.unfinished, 0, "\(level)\n\(table)")
            XCTAssertEqual(add.calls, own.add, "\(level)\n\(table)")
            XCTAssertEqual(add.entryOnly, 0, "\(level)\n\(table)")
            // Async functions, partial functions, async closures and thunks:
            // entry only, every call.
            let asyncOnes = report.functions.filter {
                $0.function.hasPrefix("$s") && ["Ya", "TQ", "TY"].contains(where: $0.function.contains)
                    || $0.function.contains(" async") || $0.function.contains("partial function")
            }
            XCTAssertGreaterThan(asyncOnes.count, 10, table)
            for f in asyncOnes { XCTAssertEqual(f.entryOnly, f.calls, "\(level): \(f.function)") }
            XCTAssertEqual(report.functions.filter { $0.entryOnly == 0 }.reduce(0) { $0 + $1.unfinished }, 0, "\(level)\n\(table)")
            let replay = try RecordFixtures.run([Fixtures.livetraceExecutable, "replay", "-d", work + "/t"], in: work)
            XCTAssertEqual(replay.status, 0, replay.stderr)
            let list = try RecordFixtures.run([Fixtures.livetraceExecutable, "list", program], in: work)
            let fetchLine = list.stdout.split(separator: "\n").first { $0.contains(" prog.fetch(Swift.Int) async") }
            XCTAssertTrue(fetchLine?.contains("; recorded entry only)") == true, "\(String(describing: fetchLine))")
            XCTAssertFalse(list.stdout.split(separator: "\n").first { $0.contains(" prog.leaf(") }?.contains("entry only") ?? true)
            XCTAssertTrue(replay.stdout.contains("$s4prog5fetchyS2iYaF(); /* entry only */")
                              || replay.stdout.contains("prog.fetch(Swift.Int) async -> Swift.Int(); /* entry only */"), String(replay.stdout.prefix(3000)))
        }
    }

    func testDashPIsAnOptionNotAProgram() throws {
        let work = RecordFixtures.scratch("dynamic-option")
        let result = try RecordFixtures.record(["-P", "x"], trace: work + "/t", program: ["/nonexistent/prog"], in: work)
        XCTAssertNotEqual(result.status, 0)
        XCTAssertTrue(result.stderr.contains("/nonexistent/prog: no such program"), result.stderr)
    }
}
