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

    func testDashPIsAnOptionNotAProgram() throws {
        let work = RecordFixtures.scratch("dynamic-option")
        let result = try RecordFixtures.record(["-P", "x"], trace: work + "/t", program: ["/nonexistent/prog"], in: work)
        XCTAssertNotEqual(result.status, 0)
        XCTAssertTrue(result.stderr.contains("/nonexistent/prog: no such program"), result.stderr)
    }
}
