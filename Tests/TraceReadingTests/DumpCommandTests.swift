// `livetrace dump`: Chrome JSON and the Perfetto protobuf decoded by tools
// that share no code with LiveTrace (python's json; python3-protobuf with a
// descriptor written from Perfetto's published field numbers, in
// Tests/Fixtures/reading/slices.py), folded stacks exact on a synthetic
// trace, and the SVG flame graph rendered, hovered and zoomed in headless
// Chromium.
import Foundation
import TestSupport
import XCTest

final class DumpCommandTests: XCTestCase {
    static let python = "/usr/bin/python3"

    /// tree.c's slices per thread, in begin order, as [name, depth].
    static let expectedSlices: [[[String]]] = [
        [["main", "0"], ["fact", "1"], ["fact", "2"], ["fact", "3"], ["fact", "4"], ["on_signal", "1"], ["note", "2"],
         ["jumper", "1"], ["deeper", "2"], ["leaf", "3"]],
        [["thread_body", "0"], ["leaf", "1"]],
        [["thread_body", "0"], ["leaf", "1"]],
    ]

    /// slices.py's view of a dump: the process name, each thread's slices,
    /// and how many slices ended each unusual way.
    func decode(_ kind: String, _ file: String) throws -> (process: String, threads: [[[String]]], ends: [String: Int]) {
        let result = try Fixtures.run([Self.python, Fixtures.source("reading/slices.py"), kind, file])
        XCTAssertEqual(result.status, 0, "\(kind): \(result.stderr)")
        let json = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(result.stdout.utf8)) as? [String: Any], result.stdout + result.stderr)
        let threads = try XCTUnwrap(json["threads"] as? [String: [[Any]]])
        let ordered = threads.sorted { UInt64($0.key)! < UInt64($1.key)! }.map { _, slices in
            slices.map { ["\($0[0])", "\($0[1])"] }
        }
        return (json["process"] as? String ?? "", ordered, json["ends"] as? [String: Int] ?? [:])
    }

    func testChromeJSONHasTheSlicesOfEveryThread() throws {
        let traces = try ReadingFixtures.traces()
        let result = try ReadingFixtures.livetrace(["dump", "-d", traces.normal, "--chrome"])
        XCTAssertEqual(result.status, 0, result.stderr)
        let file = ReadingFixtures.scratch("chrome") + "/trace.json"
        try result.stdout.write(toFile: file, atomically: true, encoding: .utf8)
        let (process, threads, ends) = try decode("chrome", file)
        XCTAssertTrue(process.hasSuffix("/reading-tree"), process)
        XCTAssertEqual(threads, Self.expectedSlices)
        XCTAssertEqual(ends, ["unwound": 2])
        // A crash: the open calls end at the last event, marked unfinished.
        let crash = try ReadingFixtures.livetrace(["dump", "-d", traces.crash, "--chrome"])
        XCTAssertEqual(crash.stdout.components(separatedBy: "\"args\":{\"end\":\"unfinished\"}").count - 1, 2, crash.stdout)
        XCTAssertEqual(crash.stdout.components(separatedBy: "\"args\":{\"end\":\"unwound\"}").count - 1, 2)
    }

    func testPerfettoProtobufDecodesToTheSameSlices() throws {
        let traces = try ReadingFixtures.traces()
        let file = ReadingFixtures.scratch("perfetto") + "/trace.pftrace"
        let result = try ReadingFixtures.livetrace(["dump", "-d", traces.normal, "--perfetto", file])
        XCTAssertEqual(result.status, 0, result.stderr)
        let (process, threads, ends) = try decode("perfetto", file)
        XCTAssertTrue(process.hasSuffix("/reading-tree"), process)
        XCTAssertEqual(threads, Self.expectedSlices)
        // longjmp leaves jumper and deeper unwound; a crash leaves its open
        // calls unfinished.
        XCTAssertEqual(ends, ["unwound": 2])
        let crash = ReadingFixtures.scratch("perfetto") + "/crash.pftrace"
        XCTAssertEqual(try ReadingFixtures.livetrace(["dump", "-d", traces.crash, "--perfetto", crash]).status, 0)
        XCTAssertEqual(try decode("perfetto", crash).ends, ["unfinished": 2, "unwound": 2])
        // The synthetic trace: a LOST record is an instant event, and the
        // unfinished and left-without-exit calls still close their slices.
        let synthetic = try SyntheticTraces.directory("perfetto-synthetic")
        let other = ReadingFixtures.scratch("perfetto") + "/synthetic.pftrace"
        XCTAssertEqual(try ReadingFixtures.livetrace(["dump", "-d", synthetic, "--perfetto", other]).status, 0)
        let decoded = try decode("perfetto", other)
        XCTAssertEqual(decoded.threads, [
            [["main", "0"], ["work", "1"], ["leaf", "2"], ["leaf", "2"]],
            [["work", "0"], ["leaf", "1"], ["leaf", "0"], ["leaf", "1"], ["leaf", "0"]],
        ])
        XCTAssertEqual(decoded.ends, ["left without exit": 1, "unwound": 1, "unfinished": 1])
        // Swift async functions recorded entry only: slices of duration 0
        // that hold no callee, annotated as such.
        let entryOnly = try SyntheticTraces.directory("perfetto-entry-only", SyntheticTraces.trace([SyntheticTraces.events([
            (0, "+main"), (100, "*work"), (200, "+leaf"), (300, "-leaf"), (400, "*work"), (1_000, "-main"),
        ])]))
        let third = ReadingFixtures.scratch("perfetto") + "/entry-only.pftrace"
        XCTAssertEqual(try ReadingFixtures.livetrace(["dump", "-d", entryOnly, "--perfetto", third]).status, 0)
        let onlyEntries = try decode("perfetto", third)
        XCTAssertEqual(onlyEntries.threads, [[["main", "0"], ["work", "1"], ["leaf", "1"], ["work", "1"]]])
        XCTAssertEqual(onlyEntries.ends, ["entry only": 2])
    }

    func testFoldedStacksCarryEachPathsSelfTime() throws {
        let dir = try SyntheticTraces.directory("folded")
        let result = try ReadingFixtures.livetrace(["dump", "-d", dir, "--folded"])
        XCTAssertEqual(result.status, 0, result.stderr)
        XCTAssertEqual(result.stdout, """
            leaf 250
            leaf;leaf 50
            main 1950100
            main;work 148400
            main;work;leaf 1500
            work 100
            work;leaf 100

            """)
        let bad = try ReadingFixtures.livetrace(["dump", "-d", dir, "--folded", "--chrome"])
        XCTAssertNotEqual(bad.status, 0)
        XCTAssertTrue(bad.stderr.contains("choose one of"), bad.stderr)
    }

    func testFoldedStacksOfRecordedTraces() throws {
        // Every call path of tree.c once, threads merged; self times vary
        // run to run, so only their presence is compared.
        let traces = try ReadingFixtures.traces()
        let normal = """
            main N
            main;fact N
            main;fact;fact N
            main;fact;fact;fact N
            main;fact;fact;fact;fact N
            main;jumper N
            main;jumper;deeper N
            main;jumper;deeper;leaf N
            main;on_signal N
            main;on_signal;note N
            thread_body N
            thread_body;leaf N

            """
        // The crash adds doomed (unfinished: its time runs to the last event).
        let crash = normal.replacingOccurrences(of: "main;fact N\n", with: "main;doomed N\nmain;doomed;leaf N\nmain;fact N\n")
        for (trace, golden) in [(traces.normal, normal), (traces.crash, crash)] {
            let result = try ReadingFixtures.livetrace(["dump", "-d", trace, "--folded"])
            XCTAssertEqual(result.status, 0, result.stderr)
            let paths = result.stdout.replacingOccurrences(of: #" [0-9]+\n"#, with: " N\n", options: .regularExpression)
            XCTAssertEqual(paths, golden)
        }
    }

    func testFlameGraphRendersAndZoomsInChromium() throws {
        let chromium = "/usr/bin/chromium"
        guard FileManager.default.isExecutableFile(atPath: chromium) else {
            return XCTFail("Debian's chromium is missing: `make deps` installs it")
        }
        // The synthetic trace: its widths are exact (a recorded trace's
        // shortest calls may fall under the 0.05 px that frames need).
        let trace = try SyntheticTraces.directory("flame-synthetic")
        let work = ReadingFixtures.scratch("flame")
        let svg = work + "/flame.svg"
        let result = try ReadingFixtures.livetrace(["dump", "-d", trace, "--flame-graph", svg])
        XCTAssertEqual(result.status, 0, result.stderr)
        let text = try String(contentsOfFile: svg, encoding: .utf8)
        XCTAssertTrue(text.contains("<title>main (2.100 ms, 99.98%, 1 call)</title>"), text)
        XCTAssertTrue(text.contains("<title>work (149.900 us, 7.14%, 1 call)</title>"), text)
        // leaf;leaf (50 ns of 2.1 ms) is narrower than 0.05 px: left out.
        XCTAssertEqual(text.components(separatedBy: "data-name=\"leaf\"").count - 1, 3)
        func browser(_ arguments: [String]) throws -> ProcessResult {
            try Fixtures.run(["/usr/bin/timeout", "90", chromium, "--headless", "--no-sandbox", "--disable-gpu",
                              "--user-data-dir=" + work + "/profile"] + arguments)
        }
        // Rendered: a screenshot with more than the background in it.
        let png = work + "/shot.png"
        let shot = try browser(["--screenshot=" + png, "--window-size=1200,300", "file://" + svg])
        XCTAssertEqual(shot.status, 0, shot.stderr)
        let colours = try Fixtures.run([Self.python, "-c", Self.distinctColours, png])
        XCTAssertEqual(colours.status, 0, colours.stderr)
        XCTAssertGreaterThan(Int(colours.stdout.trimmingCharacters(in: .whitespacesAndNewlines)) ?? 0, 8, "blank screenshot")
        // A click on main;work (through the page's own click handler): it
        // fills the width, main stays as its caller, the other threads'
        // frames go, its leaf widens.
        let zoomed = try browser(["--dump-dom", "file://" + svg + "#zoom=work"])
        XCTAssertEqual(zoomed.status, 0, zoomed.stderr)
        XCTAssertTrue(zoomed.stdout.contains("data-zoomed=\"work\""), zoomed.stdout)
        func frame(_ info: String) throws -> String {
            try XCTUnwrap(frames(in: zoomed.stdout).first { $0.contains("data-info=\"\(info)") }, "no frame \(info)")
        }
        XCTAssertEqual(frames(in: zoomed.stdout).count, 7, zoomed.stdout)
        XCTAssertTrue(try frame("work (149.900 us").contains("width=\"1179.50\""))
        XCTAssertTrue(try frame("main (2.100 ms").contains("class=\"f parent\""))
        XCTAssertTrue(try frame("leaf (300 ns").contains("display: none"))
        XCTAssertTrue(try frame("work (200 ns").contains("display: none"))
        XCTAssertFalse(try frame("leaf (1.500 us").contains("display: none"))
        // main;work;leaf: 1.5 us of 149.9 us, 11.3 px once zoomed.
        XCTAssertTrue(try frame("leaf (1.500 us").contains("width=\"11.31\""))
        // Search: the share of all time in frames named leaf (1.9 us).
        let searched = try browser(["--dump-dom", "file://" + svg + "#search=^leaf$"])
        XCTAssertTrue(searched.stdout.contains("data-matched=\"0.09%\""), searched.stdout)
        XCTAssertTrue(searched.stdout.contains("Matched: 0.09%"), searched.stdout)
        // A recorded trace renders too.
        let traces = try ReadingFixtures.traces()
        let recorded = try ReadingFixtures.livetrace(["dump", "-d", traces.normal, "--flame-graph", work + "/recorded.svg"])
        XCTAssertEqual(recorded.status, 0, recorded.stderr)
        XCTAssertTrue(try String(contentsOfFile: work + "/recorded.svg", encoding: .utf8).contains("data-name=\"main\""))
    }

    /// The frames (g elements) of a DOM dump, in document order.
    func frames(in dom: String) -> [String] {
        dom.components(separatedBy: "<g class=\"f").dropFirst().map { "<g class=\"f" + $0.components(separatedBy: "</g>")[0] }
    }

    /// The first frame (g element) named `name` in a DOM dump.
    func frame(_ name: String, in dom: String) -> String? {
        guard let start = dom.range(of: "data-name=\"\(name)\"") else { return nil }
        let open = dom[..<start.lowerBound].range(of: "<g ", options: .backwards)!.lowerBound
        let close = dom[start.upperBound...].range(of: "</g>")!.upperBound
        return String(dom[open..<close])
    }

    /// Counts the distinct pixel rows' byte values of a PNG (zlib only):
    /// a blank image has one or two.
    static let distinctColours = """
        import struct, sys, zlib
        data = open(sys.argv[1], 'rb').read()
        assert data[:8] == b'\\x89PNG\\r\\n\\x1a\\n'
        pos, idat = 8, b''
        while pos < len(data):
            length, kind = struct.unpack('>I4s', data[pos:pos + 8])
            if kind == b'IDAT': idat += data[pos + 8:pos + 8 + length]
            pos += 12 + length
        print(len(set(zlib.decompress(idat))))
        """
}
