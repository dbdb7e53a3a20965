// Bad input to `livetrace record`: each gets a clear message and a status;
// the program is either not started or runs exactly as it would untraced;
// a partial trace stays readable.
import Foundation
import Glibc
import LiveTrace
import TestSupport
import XCTest

final class RecordBadInputTests: XCTestCase {
    private func record(_ options: [String], program: [String], in work: String) throws -> RunResult {
        try RecordFixtures.run([Fixtures.livetraceExecutable, "record"] + options + ["--"] + program, in: work)
    }

    private func assertRefused(
        _ result: RunResult, status: Int32 = 2, saying text: String, file: StaticString = #filePath, line: UInt = #line
    ) {
        XCTAssertEqual(result.status, status, result.stderr, file: file, line: line)
        XCTAssertFalse(result.signaled, file: file, line: line)
        XCTAssertTrue(result.stderr.contains(text), "expected '\(text)' in: \(result.stderr)", file: file, line: line)
        XCTAssertEqual(result.stdout, "", "the program must not have run", file: file, line: line)
    }

    func testMissingProgram() throws {
        let work = RecordFixtures.scratch("missing")
        assertRefused(try record([], program: ["./does-not-exist"], in: work), saying: "./does-not-exist: no such program")
        assertRefused(try record([], program: ["no-such-command-anywhere"], in: work), saying: "no-such-command-anywhere: no such program")
        XCTAssertFalse(FileManager.default.fileExists(atPath: work + "/livetrace.data"), "nothing is created for a bad program")
    }

    func testDirectoryIsNotAProgram() throws {
        let work = RecordFixtures.scratch("directory")
        assertRefused(try record([], program: [work], in: work), saying: "is a directory")
    }

    func testProgramNotExecutable() throws {
        let work = RecordFixtures.scratch("noexec")
        let program = try RecordFixtures.build("calls.c", output: "record-noexec")
        let copy = work + "/calls"
        try FileManager.default.copyItem(atPath: program, toPath: copy)
        chmod(copy, 0o644)
        assertRefused(try record([], program: [copy], in: work), saying: "not executable")
    }

    func testScriptIsNotELF() throws {
        let work = RecordFixtures.scratch("script")
        let script = work + "/script.sh"
        try "#!/bin/sh\necho hi\n".write(toFile: script, atomically: true, encoding: .utf8)
        chmod(script, 0o755)
        assertRefused(try record([], program: [script], in: work), saying: "not an ELF program")
    }

    func testStaticallyLinkedProgramIsNamed() throws {
        let work = RecordFixtures.scratch("static")
        let program = try RecordFixtures.build("hot.c", flags: ["-O2", "-fpatchable-function-entry=5", "-static"], output: "record-static")
        assertRefused(try record([], program: [program, "10"], in: work), saying: "statically linked")
    }

    func testProgramWithoutSitesIsRecordedByRelocatingItsOwnFunctionsAndSaysSo() throws {
        let work = RecordFixtures.scratch("nosites")
        let program = try RecordFixtures.build("hot.c", flags: ["-O2"], output: "record-nosites")
        let plain = try Fixtures.run([program, "10"])
        let result = try record([], program: [program, "10"], in: work)
        XCTAssertEqual(result.status, plain.status, result.stderr)
        XCTAssertEqual(result.stdout, plain.stdout)
        XCTAssertTrue(result.stderr.contains("no function has an entry site: tracing the program's own functions by relocating"), result.stderr)
        XCTAssertFalse(try RecordFixtures.calls(work + "/livetrace.data").isEmpty)
    }

    func testFilterMatchingNothingWarnsWithCloseMatchesAndTheProgramRuns() throws {
        let work = RecordFixtures.scratch("nomatch")
        let program = try RecordFixtures.build("calls.c", output: "record-nomatch")
        let result = try RecordFixtures.run(
            [Fixtures.livetraceExecutable, "record", "-F", "fibb", "--", program], in: work, stdin: "ok\n")
        XCTAssertEqual(result.status, 7, result.stderr)
        XCTAssertEqual(result.stdout, "OK fib(15)=610\n")
        XCTAssertTrue(result.stderr.contains("-F fibb matches no function"), result.stderr)
        XCTAssertTrue(result.stderr.contains("close matches: fib"), result.stderr)
        XCTAssertTrue(result.stderr.contains("runs untraced"), "the shim's refusal is reported: \(result.stderr)")
    }

    func testOutputDirectoryThatCannotBeWritten() throws {
        let work = RecordFixtures.scratch("baddir")
        let program = try RecordFixtures.build("calls.c", output: "record-baddir")
        try "not a directory".write(toFile: work + "/file", atomically: true, encoding: .utf8)
        assertRefused(try record(["-d", work + "/file/trace"], program: [program], in: work), status: 1, saying: "cannot create the trace in")
        assertRefused(try record(["-d", work + "/file"], program: [program], in: work), status: 1, saying: "is not a directory")
        try FileManager.default.createDirectory(atPath: work + "/other", withIntermediateDirectories: true)
        try "mine".write(toFile: work + "/other/notes.txt", atomically: true, encoding: .utf8)
        assertRefused(try record(["-d", work + "/other"], program: [program], in: work), status: 1, saying: "does not hold a LiveTrace trace")
        XCTAssertEqual(try String(contentsOfFile: work + "/other/notes.txt", encoding: .utf8), "mine")
    }

    func testATraceThatCannotBeCreatedLeavesNothingBehind() throws {
        // A file-size limit of 1 MiB (SIGXFSZ ignored, so the write fails
        // with EFBIG instead of killing the command): the ring area cannot
        // be sized after the trace directory was made. The failed start
        // removes every file it wrote and the directory it created; a
        // directory that existed (empty) stays, emptied.
        let work = RecordFixtures.scratch("fsize")
        let program = try RecordFixtures.build("calls.c", output: "record-fsize")
        let limited = ["/bin/sh", "-c", "trap '' XFSZ; ulimit -f 1024; exec \"$0\" \"$@\"", Fixtures.livetraceExecutable, "record"]
        let created = try RecordFixtures.run(limited + ["-d", work + "/new", "--", program], in: work)
        assertRefused(created, status: 1, saying: "cannot create the trace in")
        XCTAssertFalse(FileManager.default.fileExists(atPath: work + "/new"), "the directory the failed start created is gone")
        try FileManager.default.createDirectory(atPath: work + "/empty", withIntermediateDirectories: true)
        let existing = try RecordFixtures.run(limited + ["-d", work + "/empty", "--", program], in: work)
        assertRefused(existing, status: 1, saying: "cannot create the trace in")
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: work + "/empty"), [], "nothing of the failed start is left")
    }

    func testHelpNamesEveryOption() throws {
        let help = try RecordFixtures.run([Fixtures.livetraceExecutable, "record", "--help"], in: "/")
        XCTAssertEqual(help.status, 0, help.stderr)
        for option in ["-F <glob>", "-N <glob>", "-D <depth>", "-t <time>", "--directory <dir>", "-b <events>", "--wait <ms>", "-- program args"] {
            XCTAssertTrue(help.stdout.contains(option), "\(option) missing from:\n\(help.stdout)")
        }
    }

    func testOptionErrors() throws {
        let work = RecordFixtures.scratch("options")
        let program = try RecordFixtures.build("calls.c", output: "record-options")
        for (options, text) in [(["-D", "0"], "-D 0"), (["-t", "ten"], "-t ten: not a time"), (["-F", ""], "must be non-empty")] {
            let result = try record(options, program: [program], in: work)
            XCTAssertNotEqual(result.status, 0, "\(options)")
            XCTAssertTrue(result.stderr.contains(text), "\(options): \(result.stderr)")
            XCTAssertEqual(result.stdout, "")
        }
        let none = try RecordFixtures.run([Fixtures.livetraceExecutable, "record"], in: work)
        XCTAssertNotEqual(none.status, 0)
        XCTAssertTrue(none.stderr.contains("no program given"), none.stderr)
    }

    /// A full disk: on a small tmpfs (skipped where mounting is not
    /// allowed), with 32768-event buffers (a 48 MiB ring area). Too small
    /// for the ring area: refused before the program
    /// runs, nothing left behind. Room for the rings but not the events: the
    /// program runs unharmed, the trace holds what was written, readable.
    func testFullDiskNeverHarmsTheProgramAndLeavesAReadableTrace() throws {
        let mountPoint = RecordFixtures.scratch("tmpfs")
        let program = try RecordFixtures.build("hot.c", output: "record-hot")
        func mount(megabytes: Int) throws {
            let result = try RecordFixtures.run(["/bin/mount", "-t", "tmpfs", "-o", "size=\(megabytes)m", "tmpfs", mountPoint], in: mountPoint)
            if result.status != 0 { throw XCTSkip("cannot mount a tmpfs here: \(result.stderr)") }
        }
        func unmount() { _ = try? RecordFixtures.run(["/bin/umount", mountPoint], in: "/") }

        try mount(megabytes: 1)
        defer { unmount() }
        let tooSmall = try record(["-b", "32768", "-d", mountPoint + "/t"], program: [program, "1000"], in: "/")
        assertRefused(tooSmall, status: 1, saying: "No space left on device")
        XCTAssertFalse(FileManager.default.fileExists(atPath: mountPoint + "/t"), "the failed start cleans up")
        unmount()

        try mount(megabytes: 60)
        let untraced = try RecordFixtures.run([program, "3000000"], in: "/")
        let full = try record(["-b", "32768", "-d", mountPoint + "/t"], program: [program, "3000000"], in: "/")
        XCTAssertEqual(full.stdout, untraced.stdout)
        XCTAssertEqual(full.status, untraced.status, full.stderr)
        XCTAssertTrue(full.stderr.contains("No space left on device"), full.stderr)
        XCTAssertTrue(full.stderr.contains("incomplete"), full.stderr)
        let report = try TraceReport(directory: mountPoint + "/t")
        let hot = try XCTUnwrap(report.functions.first { $0.function == "hot" })
        XCTAssertGreaterThan(hot.calls, 1000, "the events written before the disk filled are there")
        XCTAssertLessThan(hot.calls, 3_000_000)
    }
}
