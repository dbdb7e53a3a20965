// A real Swift program nobody here wrote, recorded without rebuilding it: the
// toolchain's swift-format (a PIE executable without entry sites, ~63,600
// functions) formats a Swift file under `livetrace record` with no flags (every
// function of its executable relocated), its output is byte for byte the
// plain run's, and the call counts of a sample of its functions equal the
// kernel's uprobes' counts on a plain run (an oracle that shares no code with
// LiveTrace: symbol values from binutils' nm, file offsets from readelf's
// program headers, hits from tracefs' uprobe_profile). About a minute
// (the recorded run is ~30 s in a debug build): it runs in `make soak`
// (LIVETRACE_SOAK=1), skipped otherwise and when tracefs cannot be mounted.
import Foundation
import Glibc
import LiveTrace
import TestSupport
import XCTest

final class RecordSwiftFormatTests: XCTestCase {
    static let tracefs = "/sys/kernel/tracing"
    static let group = "ltswiftformat"

    func testSoakSwiftFormatIsRecordedWholeWithOutputUnchangedAndCountsEqualToUprobes() throws {
        try XCTSkipUnless(ProcessInfo.processInfo.environment["LIVETRACE_SOAK"] == "1", "set LIVETRACE_SOAK=1 to run it")
        let path = ProcessInfo.processInfo.environment["PATH"] ?? ""
        let found = path.split(separator: ":").map { $0 + "/swift-format" }.first { FileManager.default.isExecutableFile(atPath: $0) }
        let swiftFormat = try XCTUnwrap(found.map { URL(fileURLWithPath: $0).resolvingSymlinksInPath().path }, "no swift-format on PATH")
        if !FileManager.default.fileExists(atPath: Self.tracefs + "/uprobe_events") {
            _ = try? Fixtures.run(["/bin/mount", "-t", "tracefs", "nodev", Self.tracefs])
        }
        try XCTSkipUnless(FileManager.default.fileExists(atPath: Self.tracefs + "/uprobe_events"), "no tracefs at \(Self.tracefs)")

        let work = RecordFixtures.scratch("swift-format")
        defer { try? FileManager.default.removeItem(atPath: work) }
        let input = work + "/in.swift"
        try FileManager.default.copyItem(atPath: Fixtures.sourceDirectory.appendingPathComponent("relocation/swiftprog.swift").path, toPath: input)
        let argv = [swiftFormat, "format", input]
        let plain = try RecordFixtures.run(argv, in: work)
        XCTAssertEqual(plain.status, 0, plain.stderr)
        let recorded = try RecordFixtures.record([], trace: work + "/t", program: argv, in: work)
        XCTAssertEqual(recorded.status, 0, recorded.stderr)
        XCTAssertEqual(recorded.stdout, plain.stdout, "swift-format's output under livetrace record")
        XCTAssertFalse(plain.stdout.isEmpty)
        XCTAssertTrue(recorded.stderr.contains(" 0 events lost"), recorded.stderr)

        // A sample over the range of counts: 13 functions evenly spaced in
        // the report sorted by calls, raw names only (nm prints those).
        let report = try TraceReport(directory: work + "/t")
        let byCalls = report.functions.filter { $0.function.hasPrefix("$s") }.sorted { ($0.calls, $0.function) > ($1.calls, $1.function) }
        XCTAssertGreaterThan(byCalls.count, 1_000, "functions called")
        let sample = stride(from: 0, to: byCalls.count, by: max(1, byCalls.count / 12)).map { byCalls[$0] }
        let offsets = try Self.fileOffsets(of: Set(sample.map(\.function)), in: swiftFormat)

        let probes = sample.enumerated().compactMap { i, f in offsets[f.function].map { ("f\(i)", f.function, $0, f.calls) } }
        XCTAssertEqual(probes.count, sample.count, "nm found every sampled function")
        try Self.writeEvents(probes.map { "p:\(Self.group)/\($0.0) \(swiftFormat):0x\(String($0.2, radix: 16))" })
        defer { try? Self.writeEvents(probes.map { "-:\(Self.group)/\($0.0)" }) }
        try Self.write("1", to: Self.tracefs + "/events/\(Self.group)/enable")
        let probed = try RecordFixtures.run(argv, in: work)
        try Self.write("0", to: Self.tracefs + "/events/\(Self.group)/enable")
        XCTAssertEqual(probed.stdout, plain.stdout)
        let profile = try String(contentsOfFile: Self.tracefs + "/uprobe_profile", encoding: .utf8)
        var hits: [String: UInt64] = [:]
        // Lines "BINARY EVENT HITS", the event without its group.
        for line in profile.split(separator: "\n") {
            let fields = line.split(separator: " ", omittingEmptySubsequences: true)
            if fields.count == 3, fields[0] == swiftFormat { hits[String(fields[1])] = UInt64(fields[2]) }
        }
        for probe in probes {
            XCTAssertEqual(probe.3, hits[probe.0], "\(probe.1): livetrace counted \(probe.3), uprobes \(hits[probe.0].map(String.init) ?? "nothing")")
        }
        print("swift-format: \(report.functions.count) functions called, sample of \(probes.count): \(probes.map { "\($0.3)" }.joined(separator: " "))")
    }

    /// File offsets of `names` in `binary`: nm's symbol values mapped through
    /// readelf's PT_LOAD headers.
    static func fileOffsets(of names: Set<String>, in binary: String) throws -> [String: UInt] {
        let nm = try Fixtures.run(["/usr/bin/nm", "--defined-only", binary])
        var values: [String: UInt] = [:]
        for line in nm.stdout.split(separator: "\n") {
            let fields = line.split(separator: " ")
            if fields.count == 3, names.contains(String(fields[2])), let value = UInt(fields[0], radix: 16) { values[String(fields[2])] = value }
        }
        let readelf = try Fixtures.run(["/usr/bin/readelf", "-lW", binary])
        var loads: [(offset: UInt, vaddr: UInt, size: UInt)] = []
        for line in readelf.stdout.split(separator: "\n") where line.contains("LOAD") {
            let f = line.split(separator: " ")
            if f.count >= 6, let o = UInt(f[1].dropFirst(2), radix: 16), let v = UInt(f[2].dropFirst(2), radix: 16), let s = UInt(f[4].dropFirst(2), radix: 16) {
                loads.append((o, v, s))
            }
        }
        return values.compactMapValues { value in
            loads.first { value >= $0.vaddr && value < $0.vaddr + $0.size }.map { value - $0.vaddr + $0.offset }
        }
    }

    /// Appends lines to uprobe_events through a raw descriptor (the file
    /// refuses a seek, so buffered append modes fail).
    static func writeEvents(_ lines: [String]) throws {
        for line in lines { try write(line + "\n", to: tracefs + "/uprobe_events", append: true) }
    }

    static func write(_ text: String, to path: String, append: Bool = false) throws {
        let fd = open(path, O_WRONLY | (append ? O_APPEND : O_TRUNC))
        guard fd >= 0 else { throw POSIXError(POSIXErrorCode(rawValue: errno) ?? .EIO) }
        defer { close(fd) }
        let written = text.withCString { Glibc.write(fd, $0, strlen($0)) }
        guard written == text.utf8.count else { throw POSIXError(POSIXErrorCode(rawValue: errno) ?? .EIO) }
    }
}
