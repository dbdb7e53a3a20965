// Damaged traces: a clear error naming the file and the offset, results up
// to the damage where that is safe, and — for thousands of mutated traces
// through every reader — never a crash and never a hang.
import Foundation
import LiveTraceAnalysis
import LiveTraceRecording
import TestSupport
import XCTest

final class DamagedTraceTests: XCTestCase {
    /// A synthetic trace whose thread 100 stream holds two chunks: its
    /// events, then a copy of that chunk (so a second main call).
    func twoChunkTrace(_ name: String) throws -> (dir: String, stream: String, secondChunk: Int) {
        let dir = try SyntheticTraces.directory(name)
        let stream = dir + "/streams/" + StreamIdentity(pid: 100, tid: 100, ring: 0).fileName
        var bytes = try Data(contentsOf: URL(fileURLWithPath: stream))
        let second = bytes.count
        bytes.append(bytes[64...])
        try bytes.write(to: URL(fileURLWithPath: stream))
        return (dir, stream, second)
    }

    func testATruncatedStreamIsReportedUpToTheDamage() throws {
        let (dir, stream, second) = try twoChunkTrace("truncated")
        let whole = try ReadingFixtures.livetrace(["report", "-d", dir, "--json"])
        XCTAssertTrue(whole.stdout.contains("\"function\": \"main\", \"address\": \"0x401000\", \"calls\": 2"), whole.stdout)
        let records = (second - 64 - 16) / TraceFormat.eventSize
        let handle = try FileHandle(forUpdating: URL(fileURLWithPath: stream))
        try handle.truncate(atOffset: UInt64(second + 40))
        try handle.close()
        for command in [["report", "--json"], ["replay"], ["info"], ["dump", "--folded"]] {
            let result = try ReadingFixtures.livetrace(command + ["-d", dir])
            XCTAssertEqual(result.status, 1, "\(command)")
            XCTAssertTrue(
                result.stderr.contains("damaged trace file \(stream): truncated chunk at offset \(second): \(records) events announced, 3 present (results up to the damage)"),
                "\(command): \(result.stderr)")
        }
        // The first chunk's calls are all there; the other thread too.
        let report = try ReadingFixtures.livetrace(["report", "-d", dir, "--json"])
        XCTAssertTrue(report.stdout.contains("\"function\": \"main\", \"address\": \"0x401000\", \"calls\": 1"), report.stdout)
        XCTAssertTrue(report.stdout.contains("\"function\": \"work\", \"address\": \"0x401100\", \"calls\": 2"), report.stdout)
        let replay = try ReadingFixtures.livetrace(["replay", "-d", dir, "-f", "none", "--tid", "100"])
        XCTAssertTrue(replay.stdout.hasSuffix("| } /* main */\n| /* the rest of this thread is lost: damaged trace file \(stream): truncated chunk at offset \(second): \(records) events announced, 3 present */\n"), replay.stdout)
    }

    func testFlippedBitsWrongVersionsAndMissingFilesAreNamed() throws {
        let (dir, stream, second) = try twoChunkTrace("flipped")
        let records = (second - 64 - 16) / TraceFormat.eventSize
        var bytes = try Data(contentsOf: URL(fileURLWithPath: stream))
        bytes[second + 16 + 3] ^= 0x10
        try bytes.write(to: URL(fileURLWithPath: stream))
        let flipped = try ReadingFixtures.livetrace(["report", "-d", dir])
        XCTAssertEqual(flipped.status, 1)
        XCTAssertTrue(flipped.stderr.contains("\(stream): checksum mismatch in chunk at offset \(second) (events \(records)..<\(2 * records))"), flipped.stderr)

        bytes[8] = 4
        try bytes.write(to: URL(fileURLWithPath: stream))
        let version = try ReadingFixtures.livetrace(["replay", "-d", dir])
        XCTAssertEqual(version.status, 1)
        XCTAssertTrue(version.stderr.contains("\(stream): stream format version 4; this reader knows versions 2 and 3"), version.stderr)

        for file in ["objects.json", "info.json"] {
            try FileManager.default.removeItem(atPath: dir + "/" + file)
            let missing = try ReadingFixtures.livetrace(["info", "-d", dir])
            XCTAssertEqual(missing.status, 1)
            XCTAssertTrue(missing.stderr.contains("not a LiveTrace trace: \(dir)/\(file) is missing"), missing.stderr)
        }
    }

    // MARK: - fuzz

    /// A fixed seed, so a failure names the case that reproduces it.
    typealias Random = SplitMix64

    /// Events no writer would write but a CRC cannot catch: any order of
    /// entries and exits, UNWOUND exits, losses, timestamps that jump back
    /// or far ahead.
    static func randomEvents(_ random: inout Random) -> [TraceEvent] {
        let addresses = Array(SyntheticTraces.addresses.values) + [0x1234, 0xffff_ffff_ffff]
        var time: UInt64 = random.next() % 1000
        return (0..<random.below(200)).map { _ in
            switch random.below(10) {
            case 0: time = random.next() % (1 << 63)
            case 1: time = time / 2
            default: time &+= random.next() % 5000
            }
            let address = addresses[random.below(addresses.count)]
            switch random.below(7) {
            case 0, 1, 2: return TraceEvent(kind: .entry, address: address, timestamp: time, depth: UInt32(random.below(9000)))
            case 3, 4: return TraceEvent(kind: .exit, address: address, timestamp: time)
            case 5: return TraceEvent(kind: .exit, address: address, timestamp: time, flags: TraceEvent.flagUnwound)
            default: return TraceEvent(kind: .lost, address: random.next() % (1 << 48), timestamp: time)
            }
        }
    }

    /// Runs every reader of the library on `dir`: each returns or throws a
    /// RecordingError; none may crash or loop.
    static func readEverything(_ dir: String, scratch: String) {
        _ = try? TraceReport(directory: dir, sort: .total, tolerateDamage: true)
        _ = try? TraceReport(directory: dir, sort: .name)
        var options = ReplayOptions()
        options.minimumNs = 100
        _ = try? Replay.run(directory: dir, options: ReplayOptions(), output: TextOutput())
        _ = try? Replay.run(directory: dir, options: options, output: TextOutput())
        _ = try? ChromeTrace.write(directory: dir, to: TextOutput())
        _ = try? FoldedStacks.write(directory: dir, to: TextOutput())
        _ = try? FlameGraph.write(directory: dir, to: scratch + "/flame.svg")
        _ = try? PerfettoTrace.write(directory: dir, to: scratch + "/trace.pftrace")
        _ = try? TraceSummary(directory: dir).text()
        _ = try? TraceSummary(directory: dir).json()
    }

    func testThousandsOfMutatedTracesThroughEveryReader() throws {
        // With recording options, so info.json's `recording` is mutated too.
        var baseTrace = SyntheticTraces.trace()
        baseTrace.info.options = RecordingOptions(
            recorder: "livetrace record", tracerCommand: ["livetrace", "record", "-F", "main"], functions: ["main"],
            excluding: ["leaf"], maxDepth: 4, minTimeNs: 10)
        let base = try SyntheticTraces.directory("fuzz-base", baseTrace)
        let names = try FileManager.default.subpathsOfDirectory(atPath: base).filter { !$0.hasSuffix("streams") }.sorted()
        let files = try names.map { ($0, try Data(contentsOf: URL(fileURLWithPath: base + "/" + $0))) }
        let scratch = ReadingFixtures.scratch("fuzz")
        let dir = scratch + "/trace"
        var random = Random(state: 20261204)
        let rounds = ProcessInfo.processInfo.environment["LIVETRACE_SOAK"] != nil ? 50_000 : 1_200
        for round in 0..<rounds {
            try? FileManager.default.removeItem(atPath: dir)
            try FileManager.default.createDirectory(atPath: dir + "/streams", withIntermediateDirectories: true)
            if round % 4 == 3 {
                // Well-formed files, random events.
                let trace = SyntheticTraces.trace((0..<(1 + random.below(3))).map { _ in Self.randomEvents(&random) })
                try? FileManager.default.removeItem(atPath: dir)
                try TraceWriter.write(trace, to: dir)
            } else {
                for (name, data) in files {
                    var bytes = [UInt8](data)
                    switch random.below(8) {
                    case 0, 1, 2:
                        for _ in 0...random.below(4) where !bytes.isEmpty {
                            bytes[random.below(bytes.count)] ^= UInt8(1 << random.below(8))
                        }
                    case 3: bytes = Array(bytes.prefix(random.below(bytes.count + 1)))
                    case 4: bytes += (0..<random.below(64)).map { _ in UInt8(truncatingIfNeeded: random.next()) }
                    case 5 where random.below(4) == 0: continue // the file is missing
                    default: break
                    }
                    try Data(bytes).write(to: URL(fileURLWithPath: dir + "/" + name))
                }
            }
            Self.readEverything(dir, scratch: scratch)
        }
    }

    func testMutatedTracesThroughTheCommandsEndWithAStatusAndAMessage() throws {
        let traces = try ReadingFixtures.traces()
        let names = try FileManager.default.subpathsOfDirectory(atPath: traces.normal).filter { $0.hasSuffix(".lts") || $0.hasSuffix(".json") }.sorted()
        let scratch = ReadingFixtures.scratch("fuzz-cli")
        var random = Random(state: 42)
        let commands: [[String]] = [["report"], ["report", "--threads", "-s", "avg"], ["replay"], ["replay", "-t", "1us"], ["info"], ["info", "--json"],
                                    ["dump", "--chrome"], ["dump", "--folded"], ["dump", "--flame-graph", scratch + "/f.svg"],
                                    ["dump", "--perfetto", scratch + "/p.pftrace"]]
        for round in 0..<18 {
            let dir = scratch + "/t\(round)"
            try FileManager.default.copyItem(atPath: traces.normal, toPath: dir)
            let victim = dir + "/" + names[random.below(names.count)]
            var bytes = try [UInt8](Data(contentsOf: URL(fileURLWithPath: victim)))
            if random.below(2) == 0 {
                bytes = Array(bytes.prefix(random.below(bytes.count)))
            } else {
                for _ in 0...random.below(3) { bytes[random.below(bytes.count)] ^= UInt8(1 << random.below(8)) }
            }
            try Data(bytes).write(to: URL(fileURLWithPath: victim))
            let command = commands[round % commands.count]
            let result = try Fixtures.run(["/usr/bin/timeout", "30", Fixtures.livetraceExecutable] + command + ["-d", dir])
            XCTAssertFalse(result.signaled, "\(command) on \(victim): \(result.stderr)")
            XCTAssertTrue(result.status == 0 || result.status == 1, "\(command) on \(victim): status \(result.status) \(result.stderr)")
            if result.status == 1 {
                XCTAssertTrue(result.stderr.hasPrefix("livetrace \(command[0]): "), result.stderr)
            }
        }
    }
}
