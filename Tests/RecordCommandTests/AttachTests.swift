// `livetrace record -p PID`: attaching to running programs that never
// prepared for it (Tests/Fixtures/record/attach_*.{c,swift}), recording,
// detaching, and the refusals. The programs check their own invariants and
// count their own calls; their code is compared with their file through
// /proc/PID/mem, with no LiveTrace code on the reading side.
import Foundation
import LiveTrace
import TestSupport
import XCTest

/// A program running in the background with its stdin and stdout as pipes.
final class RunningProgram {
    let process = Process()
    private let input = Pipe(), output = Pipe()
    private var buffered: [UInt8] = []

    init(_ argv: [String]) throws {
        process.executableURL = URL(fileURLWithPath: argv[0])
        process.arguments = Array(argv.dropFirst())
        process.standardInput = input
        process.standardOutput = output
        process.standardError = FileHandle.standardError
        try process.run()
    }

    var pid: Int32 { process.processIdentifier }

    /// Sends one command line and returns the program's reply line.
    func command(_ line: String) -> String {
        input.fileHandleForWriting.write(Data((line + "\n").utf8))
        return readLine(output.fileHandleForReading.fileDescriptor, buffer: &buffered) ?? "<eof>"
    }

    func readReply() -> String { readLine(output.fileHandleForReading.fileDescriptor, buffer: &buffered) ?? "<eof>" }

    func finish() -> (reply: String, status: Int32) {
        let reply = command("q")
        try? input.fileHandleForWriting.close()
        process.waitUntilExit()
        return (reply, process.terminationStatus)
    }

    deinit { if process.isRunning { process.terminate() } }
}

/// One line from `fd` (blocking); nil at the end.
func readLine(_ fd: Int32, buffer: inout [UInt8]) -> String? {
    while true {
        if let newline = buffer.firstIndex(of: 10) {
            let line = String(decoding: buffer[..<newline], as: UTF8.self)
            buffer.removeSubrange(...newline)
            return line
        }
        var chunk = [UInt8](repeating: 0, count: 4096)
        let count = chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
        if count < 0 && errno == EINTR { continue }
        if count <= 0 { return buffer.isEmpty ? nil : String(decoding: buffer, as: UTF8.self) }
        buffer += chunk[0..<count]
    }
}

/// `livetrace record -p` running in the background; its stderr is read line by line.
final class AttachRun {
    let process = Process()
    private let errors = Pipe()
    private var buffered: [UInt8] = []
    private(set) var lines: [String] = []

    init(_ options: [String], pid: Int32, trace: String) throws {
        process.executableURL = URL(fileURLWithPath: Fixtures.livetraceExecutable)
        process.arguments = ["record", "-p", String(pid), "-d", trace] + options
        process.environment = ProcessInfo.processInfo.environment.merging(Fixtures.cacheEnvironment) { $1 }
        process.standardError = errors
        process.standardOutput = FileHandle.nullDevice
        try process.run()
    }

    /// Waits for the line saying the recording runs (false when it ended first).
    func waitUntilRecording() -> Bool {
        while let line = readLine(errors.fileHandleForReading.fileDescriptor, buffer: &buffered) {
            lines.append(line)
            if line.contains("livetrace record: recording pid") { return true }
        }
        return false
    }

    /// Sends SIGINT (unless it ends by itself) and returns its status and every stderr line.
    func finish(interrupt: Bool = true) -> (status: Int32, stderr: String) {
        if interrupt { kill(process.processIdentifier, SIGINT) }
        while let line = readLine(errors.fileHandleForReading.fileDescriptor, buffer: &buffered) { lines.append(line) }
        process.waitUntilExit()
        return (process.terminationStatus, lines.joined(separator: "\n"))
    }
}

enum AttachOracle {
    /// Every executable mapping of the program's own file, read through
    /// /proc/PID/mem, equals the file's bytes at the mapping's offset.
    static func textMatchesFile(pid: Int32, file: String) throws -> [String] {
        let maps = try String(contentsOfFile: "/proc/\(pid)/maps", encoding: .utf8)
        let real = URL(fileURLWithPath: file).resolvingSymlinksInPath().path
        let bytes = try Data(contentsOf: URL(fileURLWithPath: real))
        let memory = try FileHandle(forReadingFrom: URL(fileURLWithPath: "/proc/\(pid)/mem"))
        defer { try? memory.close() }
        var problems: [String] = []
        var compared = 0
        for line in maps.split(separator: "\n") {
            let fields = line.split(separator: " ", omittingEmptySubsequences: true)
            guard fields.count == 6, fields[5] == real, fields[1].contains("x") else { continue }
            let range = fields[0].split(separator: "-").compactMap { UInt64($0, radix: 16) }
            let offset = Int(fields[2], radix: 16)!
            let length = min(Int(range[1] - range[0]), bytes.count - offset)
            try memory.seek(toOffset: range[0])
            let live = try memory.read(upToCount: length) ?? Data()
            let original = bytes.subdata(in: offset..<offset + length)
            compared += length
            if live != original {
                let first = zip(live, original).enumerated().first { $0.element.0 != $0.element.1 }?.offset ?? 0
                problems.append("\(file)+0x\(String(offset + first, radix: 16)) differs from the file")
            }
        }
        if compared == 0 { problems.append("no executable mapping of \(real) in pid \(pid)") }
        return problems
    }

    static func status(_ pid: Int32, _ field: String) -> Int {
        let text = (try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8)) ?? ""
        let line = text.split(separator: "\n").first { $0.hasPrefix(field + ":") } ?? ""
        return Int(line.split(separator: " ", omittingEmptySubsequences: true).dropFirst().first ?? "") ?? -1
    }

    static func mapsMention(_ pid: Int32, _ text: String) -> Bool {
        ((try? String(contentsOfFile: "/proc/\(pid)/maps", encoding: .utf8)) ?? "").contains(text)
    }
}

final class AttachTests: XCTestCase {
    static let soak = ProcessInfo.processInfo.environment["LIVETRACE_SOAK"] == "1"
    static let workers = 4
    static let burst = 500

    static func buildTarget(static linkStatically: Bool = false) throws -> String {
        try Fixtures.compile(["record/attach_target.c"], compiler: "clang",
                             flags: ["-O2", "-fpatchable-function-entry=5", "-g", "-pthread", "-fno-optimize-sibling-calls"] + (linkStatically ? ["-static"] : []),
                             output: linkStatically ? "attach_target_static" : "attach_target")
    }

    /// The proof: attached to, recorded and detached many times in a
    /// row (100 with LIVETRACE_SOAK=1), the program never notices and never
    /// dies; each trace's burst counts equal the program's own exactly (the
    /// bursts run wholly inside the attached window) and its background
    /// calls are no more than the program made; nothing is lost; the code is
    /// the file's again after every detach; resident memory and address
    /// space stay bounded (the worker threads keep the rings they wrote in
    /// the first session: later sessions hand them the same rings).
    func testSoakRepeatedAttachAndDetachLeavesAMultithreadedProgramUnharmedAndItsCodeAsTheFile() throws {
        let program = try Self.buildTarget()
        let target = try RunningProgram([program, String(Self.workers)])
        XCTAssertTrue(target.readReply().hasPrefix("ready"))
        let work = RecordFixtures.scratch("attach-cycles")
        let cycles = Self.soak ? 100 : 5
        var residentAfterFirst = 0, sizeAfterFirst = 0
        for cycle in 0..<cycles {
            let before = target.command("c").split(separator: " ").compactMap { UInt64($0) }
            let trace = work + "/t\(cycle)"
            let run = try AttachRun([], pid: target.pid, trace: trace)
            XCTAssertTrue(run.waitUntilRecording(), "cycle \(cycle): \(run.finish(interrupt: false).stderr)")
            XCTAssertEqual(target.command("b \(Self.burst)"), "burst done", "cycle \(cycle)")
            let (status, stderr) = run.finish()
            XCTAssertEqual(status, 0, "cycle \(cycle): \(stderr)")
            let after = target.command("c").split(separator: " ").compactMap { UInt64($0) }
            XCTAssertEqual(after.count, 3, "cycle \(cycle): the program answers")
            let summary = try XCTUnwrap(RecordFixtures.summaryLine(stderr), stderr)
            XCTAssertTrue(summary.contains("attached to pid \(target.pid) for "), summary)
            XCTAssertTrue(summary.contains(" 0 events lost"), summary)
            let calls = try RecordFixtures.calls(trace)
            let expected = UInt64(Self.workers * Self.burst)
            XCTAssertEqual(calls["burst_a"], expected, "cycle \(cycle): \(calls)")
            XCTAssertEqual(calls["burst_b"], expected, "cycle \(cycle): \(calls)")
            XCTAssertEqual(after[0] - before[0], expected)
            XCTAssertLessThanOrEqual(calls["background", default: 0], after[2] - before[2], "cycle \(cycle)")
            XCTAssertGreaterThan(calls["background", default: 0], 0, "cycle \(cycle)")
            XCTAssertEqual(try AttachOracle.textMatchesFile(pid: target.pid, file: program), [], "cycle \(cycle)")
            if cycle == 0 {
                residentAfterFirst = AttachOracle.status(target.pid, "VmRSS")
                sizeAfterFirst = AttachOracle.status(target.pid, "VmSize")
            }
            try? FileManager.default.removeItem(atPath: trace)
        }
        let resident = AttachOracle.status(target.pid, "VmRSS")
        XCTAssertLessThan(resident - residentAfterFirst, 64 * 1024, "VmRSS grew from \(residentAfterFirst) to \(resident) kB over \(cycles) attaches")
        // Address space too: each session's ring area (64 MiB and more) is
        // mapped where the previous one was, not beside it.
        let size = AttachOracle.status(target.pid, "VmSize")
        XCTAssertLessThan(size - sizeAfterFirst, 32 * 1024, "VmSize grew from \(sizeAfterFirst) to \(size) kB over \(cycles) attaches")
        let (reply, status) = target.finish()
        XCTAssertEqual(reply, "ok")
        XCTAssertEqual(status, 0)
        try? FileManager.default.removeItem(atPath: work)
    }

    /// gcc's sites are not in normal form in the file: five 1-byte nops
    /// (-fpatchable-function-entry=5) and `call __fentry__` (-pg -mfentry,
    /// linked without gcrt1 so nothing profiles). The attach normalizes them;
    /// the detach writes the compiler's bytes back, so after every detach the
    /// code read through /proc/PID/mem is the file's, and the next attach
    /// normalizes them again and counts every call of its bursts.
    func testGccSitesGetTheirCompilersBytesBackAtEveryDetach() throws {
        let flags = ["-O2", "-g", "-pthread", "-fno-optimize-sibling-calls"]
        let object = try Fixtures.compile(["record/attach_target.c"], compiler: "gcc",
                                          flags: flags + ["-pg", "-mfentry", "-c"], output: "attach_target_fentry.o")
        let programs = [
            try Fixtures.compile(["record/attach_target.c"], compiler: "gcc",
                                 flags: flags + ["-fpatchable-function-entry=5"], output: "attach_target_gcc_nops"),
            try Fixtures.compile([object], compiler: "gcc", flags: ["-pthread"], output: "attach_target_fentry"),
        ]
        let work = RecordFixtures.scratch("attach-gcc")
        defer { try? FileManager.default.removeItem(atPath: work) }
        for program in programs {
            let name = URL(fileURLWithPath: program).lastPathComponent
            let target = try RunningProgram([program, "2"])
            XCTAssertTrue(target.readReply().hasPrefix("ready"), name)
            for cycle in 0..<3 {
                let trace = work + "/\(name)-\(cycle)"
                let run = try AttachRun(["-F", "burst_*"], pid: target.pid, trace: trace)
                XCTAssertTrue(run.waitUntilRecording(), "\(name) \(cycle): \(run.finish(interrupt: false).stderr)")
                XCTAssertEqual(target.command("b 100"), "burst done", "\(name) \(cycle)")
                let (status, stderr) = run.finish()
                XCTAssertEqual(status, 0, "\(name) \(cycle): \(stderr)")
                XCTAssertFalse(stderr.contains("warning"), "\(name) \(cycle): \(stderr)")
                let calls = try RecordFixtures.calls(trace)
                XCTAssertEqual(calls["burst_a"], 200, "\(name) \(cycle): \(calls)")
                XCTAssertEqual(calls["burst_b"], 200, "\(name) \(cycle): \(calls)")
                XCTAssertEqual(try AttachOracle.textMatchesFile(pid: target.pid, file: program), [], "\(name) \(cycle)")
            }
            let (reply, status) = target.finish()
            XCTAssertEqual(reply, "ok", name)
            XCTAssertEqual(status, 0, name)
        }
    }

    /// The main thread sits in read() on a pipe while the injection borrows
    /// it and while the session detaches: the call is restarted, not failed
    /// (the program exits 3 on EINTR), and the line sent after it arrives.
    func testThreadBlockedInReadGetsItsDataAcrossAttachAndDetach() throws {
        let program = try Self.buildTarget()
        let target = try RunningProgram([program, "1"])
        XCTAssertTrue(target.readReply().hasPrefix("ready"))
        let work = RecordFixtures.scratch("attach-read")
        let run = try AttachRun(["--duration", "300ms", "-F", "background"], pid: target.pid, trace: work + "/t")
        let (status, stderr) = run.finish(interrupt: false)
        XCTAssertEqual(status, 0, stderr)
        XCTAssertTrue(stderr.contains("attached to pid \(target.pid) for 0.3"), stderr)
        XCTAssertTrue(target.command("c").hasPrefix("counts "))
        let (reply, exit) = target.finish()
        XCTAssertEqual(reply, "ok")
        XCTAssertEqual(exit, 0)
        try? FileManager.default.removeItem(atPath: work)
    }

    /// dlopen takes the allocator's and the loader's locks: a thread borrowed
    /// while it holds one would wait for itself forever. Every thread of
    /// this program allocates flat out and none waits in a system call, so
    /// at most instants some thread holds an arena lock; the attach borrows
    /// a thread only where it holds none (AttachInjection's safe point), and
    /// every attach records and detaches.
    func testAProgramAllocatingOnEveryThreadIsAttachedWithoutADeadlock() throws {
        let program = try Fixtures.compile(["record/attach_allocator.c"], compiler: "clang",
                                           flags: ["-O2", "-fpatchable-function-entry=5", "-pthread"], output: "attach_allocator")
        let target = try RunningProgram([program, "2"])
        XCTAssertTrue(target.readReply().hasPrefix("ready"))
        let work = RecordFixtures.scratch("attach-allocator")
        defer { try? FileManager.default.removeItem(atPath: work) }
        for cycle in 0..<(Self.soak ? 100 : 8) {
            // Three threads flat out fill their rings faster than a debug
            // drain empties them; a writer waits for the drain up to
            // `--wait`, and on a loaded machine the 20 ms default can pass
            // (the event is then counted lost). This test is about the safe
            // point, so the writers may wait longer.
            let run = try AttachRun(["--duration", "100ms", "--wait", "2000", "-F", "work"], pid: target.pid, trace: work + "/t\(cycle)")
            let (status, stderr) = run.finish(interrupt: false)
            guard status == 0 else {
                // A thread left waiting for itself never lets the program end.
                kill(target.pid, SIGKILL)
                return XCTFail("attach \(cycle): status \(status): \(stderr)")
            }
            XCTAssertEqual(try AttachOracle.textMatchesFile(pid: target.pid, file: program), [], "attach \(cycle)")
            // Read from the summary: reporting a million events per attach
            // in a debug build would take longer than the attaches.
            let summary = RecordFixtures.summaryLine(stderr) ?? ""
            XCTAssertTrue(summary.contains(" 0 events lost"), "attach \(cycle): \(summary)")
            XCTAssertFalse(summary.contains(" 0 events,"), "attach \(cycle): \(summary)")
            XCTAssertFalse(stderr.contains("warning"), "attach \(cycle): \(stderr)")
            try? FileManager.default.removeItem(atPath: work + "/t\(cycle)")
        }
        kill(target.pid, SIGTERM)
        XCTAssertTrue(target.readReply().hasPrefix("ok "))
        target.process.waitUntilExit()
        XCTAssertEqual(target.process.terminationStatus, 0)
    }

    /// A Swift program built with plain swiftc: its functions have no sites,
    /// so the attach relocates their prologues; the trace's count of work
    /// equals the program's own, and its code is the file's after the detach.
    func testSwiftProgramIsRecordedByRelocationAndRestored() throws {
        let program = try Fixtures.compile(["record/attach_swift.swift"], compiler: "swiftc", flags: ["-O", "-module-name", "prog"], output: "attach_swift")
        let target = try RunningProgram([program])
        XCTAssertTrue(target.readReply().hasPrefix("ready"))
        let work = RecordFixtures.scratch("attach-swift")
        XCTAssertTrue(target.command("w 10").hasPrefix("worked 10 10"))
        for cycle in 0..<3 {
            let run = try AttachRun(["-P", "prog.work(*"], pid: target.pid, trace: work + "/t\(cycle)")
            XCTAssertTrue(run.waitUntilRecording(), run.finish(interrupt: false).stderr)
            let reply = target.command("w 1000")
            XCTAssertTrue(reply.hasPrefix("worked 1000 "), reply)
            let (status, stderr) = run.finish()
            XCTAssertEqual(status, 0, stderr)
            let calls = try RecordFixtures.calls(work + "/t\(cycle)")
            let work = calls.filter { $0.key.hasPrefix("prog.work(") || $0.key.hasPrefix("$s4prog4work") }.values.reduce(0, +)
            XCTAssertEqual(work, 1000, "\(calls)")
            XCTAssertEqual(try AttachOracle.textMatchesFile(pid: target.pid, file: program), [])
        }
        XCTAssertTrue(target.command("w 5").hasPrefix("worked 5 3015"))
        let (reply, status) = target.finish()
        XCTAssertEqual(reply, "ok")
        XCTAssertEqual(status, 0)
        try? FileManager.default.removeItem(atPath: work)
    }

    // MARK: - refusals: a message naming the pid and why, status 2, the process untouched

    private func refusal(_ pid: Int32, options: [String] = []) throws -> RunResult {
        let work = RecordFixtures.scratch("attach-refused")
        defer { try? FileManager.default.removeItem(atPath: work) }
        let result = try RecordFixtures.run([Fixtures.livetraceExecutable, "record", "-p", String(pid), "-d", work + "/t"] + options, in: work)
        XCTAssertFalse(FileManager.default.fileExists(atPath: work + "/t"), "no trace directory is left behind")
        return result
    }

    func testAPidThatDoesNotExistIsRefused() throws {
        let pidMax = Int32((try String(contentsOfFile: "/proc/sys/kernel/pid_max", encoding: .utf8)).trimmingCharacters(in: .whitespacesAndNewlines))!
        let result = try refusal(pidMax + 1)
        XCTAssertEqual(result.status, 2)
        XCTAssertTrue(result.stderr.contains("cannot attach to pid \(pidMax + 1): no such process"), result.stderr)
    }

    func testAProcessAnotherTracerHoldsIsRefused() throws {
        let program = try Fixtures.compile(["record/attach_traced.c"], compiler: "gcc", flags: ["-O1"], output: "attach_traced")
        let parent = try RunningProgram([program])
        let child = try XCTUnwrap(Int32(parent.readReply().split(separator: " ").last ?? ""))
        defer {
            kill(child, SIGKILL)
            parent.process.waitUntilExit()
        }
        let result = try refusal(child)
        XCTAssertEqual(result.status, 2)
        XCTAssertTrue(result.stderr.contains("cannot attach to pid \(child): not permitted: it is already traced by pid \(parent.pid)"), result.stderr)
        XCTAssertFalse(AttachOracle.mapsMention(child, "LiveTraceC"))
    }

    func testAStaticallyLinkedProgramIsRefused() throws {
        let program: String
        do { program = try Self.buildTarget(static: true) } catch { throw XCTSkip("no static C library to link with: \(error)") }
        let target = try RunningProgram([program, "1"])
        XCTAssertTrue(target.readReply().hasPrefix("ready"))
        let result = try refusal(target.pid)
        XCTAssertEqual(result.status, 2)
        XCTAssertTrue(result.stderr.contains("cannot attach to pid \(target.pid): \(program) is statically linked"), result.stderr)
        XCTAssertEqual(target.finish().status, 0)
    }

    func testAProcessHoldingASessionIsRefused() throws {
        let program = try Self.buildTarget()
        let target = try RunningProgram([program, "2"])
        XCTAssertTrue(target.readReply().hasPrefix("ready"))
        let work = RecordFixtures.scratch("attach-twice")
        let first = try AttachRun(["-F", "background"], pid: target.pid, trace: work + "/t")
        XCTAssertTrue(first.waitUntilRecording())
        let second = try refusal(target.pid)
        XCTAssertEqual(second.status, 2)
        XCTAssertTrue(second.stderr.contains("cannot attach to pid \(target.pid): it already holds an attached LiveTrace session"), second.stderr)
        XCTAssertEqual(first.finish().status, 0)
        XCTAssertEqual(target.finish().status, 0)

        // A program started under `livetrace record -- PROGRAM`.
        let recorded = Process()
        recorded.executableURL = URL(fileURLWithPath: Fixtures.livetraceExecutable)
        recorded.arguments = ["record", "-d", work + "/r", "--", program, "1"]
        let input = Pipe(), output = Pipe()
        recorded.standardInput = input
        recorded.standardOutput = output
        recorded.standardError = FileHandle.nullDevice
        try recorded.run()
        var buffer: [UInt8] = []
        let ready = readLine(output.fileHandleForReading.fileDescriptor, buffer: &buffer) ?? ""
        let pid = try XCTUnwrap(Int32(ready.split(separator: " ").last ?? ""), ready)
        let third = try refusal(pid)
        XCTAssertEqual(third.status, 2)
        XCTAssertTrue(third.stderr.contains("cannot attach to pid \(pid): it already holds a LiveTrace session (it runs under livetrace record -- PROGRAM)"), third.stderr)
        input.fileHandleForWriting.write(Data("q\n".utf8))
        try? input.fileHandleForWriting.close()
        recorded.waitUntilExit()
        XCTAssertEqual(recorded.terminationStatus, 0)
        try? FileManager.default.removeItem(atPath: work)
    }

    func testAProcessThatExitsWhileAttachedEndsTheRecordingCleanly() throws {
        let program = try Self.buildTarget()
        let target = try RunningProgram([program, "2"])
        XCTAssertTrue(target.readReply().hasPrefix("ready"))
        let work = RecordFixtures.scratch("attach-exit")
        let run = try AttachRun(["-F", "burst_*"], pid: target.pid, trace: work + "/t")
        XCTAssertTrue(run.waitUntilRecording())
        XCTAssertEqual(target.command("b 100"), "burst done")
        XCTAssertEqual(target.finish().status, 0)
        let (status, stderr) = run.finish(interrupt: false)
        XCTAssertEqual(status, 0, stderr)
        XCTAssertTrue(stderr.contains("pid \(target.pid) exited while attached"), stderr)
        XCTAssertEqual(try RecordFixtures.calls(work + "/t")["burst_a"], 200)
        try? FileManager.default.removeItem(atPath: work)
    }
}
