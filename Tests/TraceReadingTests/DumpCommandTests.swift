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

    /// slices.py's view of a dump: the process name and each thread's slices.
    func decode(_ kind: String, _ file: String) throws -> (process: String, threads: [[[String]]]) {
        let result = try Fixtures.run([Self.python, Fixtures.source("reading/slices.py"), kind, file])
        XCTAssertEqual(result.status, 0, "\(kind): \(result.stderr)")
        let json = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(result.stdout.utf8)) as? [String: Any], result.stdout + result.stderr)
        let threads = try XCTUnwrap(json["threads"] as? [String: [[Any]]])
        let ordered = threads.sorted { UInt64($0.key)! < UInt64($1.key)! }.map { _, slices in
            slices.map { ["\($0[0])", "\($0[1])"] }
        }
        return (json["process"] as? String ?? "", ordered)
    }

    func testChromeJSONHasTheSlicesOfEveryThread() throws {
        let traces = try ReadingFixtures.traces()
        let result = try ReadingFixtures.livetrace(["dump", "-d", traces.normal, "--chrome"])
        XCTAssertEqual(result.status, 0, result.stderr)
        let file = ReadingFixtures.scratch("chrome") + "/trace.json"
        try result.stdout.write(toFile: file, atomically: true, encoding: .utf8)
        let (process, threads) = try decode("chrome", file)
        XCTAssertTrue(process.hasSuffix("/reading-tree"), process)
        XCTAssertEqual(threads, Self.expectedSlices)
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
        let (process, threads) = try decode("perfetto", file)
        XCTAssertTrue(process.hasSuffix("/reading-tree"), process)
        XCTAssertEqual(threads, Self.expectedSlices)
        // The synthetic trace: a LOST record is an instant event, and the
        // unfinished and left-without-exit calls still close their slices.
        let synthetic = try SyntheticTraces.directory("perfetto-synthetic")
        let other = ReadingFixtures.scratch("perfetto") + "/synthetic.pftrace"
        XCTAssertEqual(try ReadingFixtures.livetrace(["dump", "-d", synthetic, "--perfetto", other]).status, 0)
        XCTAssertEqual(try decode("perfetto", other).threads, [
            [["main", "0"], ["work", "1"], ["leaf", "2"], ["leaf", "2"]],
            [["work", "0"], ["leaf", "1"], ["leaf", "0"], ["leaf", "1"], ["leaf", "0"]],
        ])
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

    func testFlameGraphRendersAndZoomsInChromium() throws {
        let chromium = "/usr/bin/chromium"
        guard FileManager.default.isExecutableFile(atPath: chromium) else {
            return XCTFail("Debian's chromium is missing: `make deps` installs it")
        }
        let traces = try ReadingFixtures.traces()
        let work = ReadingFixtures.scratch("flame")
        let svg = work + "/flame.svg"
        let result = try ReadingFixtures.livetrace(["dump", "-d", traces.normal, "--flame-graph", svg])
        XCTAssertEqual(result.status, 0, result.stderr)
        let text = try String(contentsOfFile: svg, encoding: .utf8)
        for name in ["main", "fact", "jumper", "deeper", "on_signal", "thread_body", "leaf"] {
            XCTAssertTrue(text.contains("data-name=\"\(name)\""), "no frame for \(name)")
        }
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
        // A click on jumper (through the page's own click handler): it fills
        // the width, main stays as its caller, fact and thread_body go.
        let zoomed = try browser(["--dump-dom", "file://" + svg + "#zoom=jumper"])
        XCTAssertEqual(zoomed.status, 0, zoomed.stderr)
        XCTAssertTrue(zoomed.stdout.contains("data-zoomed=\"jumper\""), zoomed.stdout)
        let jumper = try XCTUnwrap(frame("jumper", in: zoomed.stdout))
        XCTAssertTrue(jumper.contains("width=\"1179.50\""), jumper)
        XCTAssertTrue(try XCTUnwrap(frame("main", in: zoomed.stdout)).contains("class=\"f parent\""))
        XCTAssertTrue(try XCTUnwrap(frame("fact", in: zoomed.stdout)).contains("display: none"))
        XCTAssertTrue(try XCTUnwrap(frame("thread_body", in: zoomed.stdout)).contains("display: none"))
        XCTAssertFalse(try XCTUnwrap(frame("deeper", in: zoomed.stdout)).contains("display: none"))
        // Search: the share of the frames whose name matches.
        let searched = try browser(["--dump-dom", "file://" + svg + "#search=^main$"])
        XCTAssertTrue(searched.stdout.contains("data-matched=\"") && !searched.stdout.contains("data-matched=\"\""), searched.stdout)
        XCTAssertTrue(searched.stdout.contains("Matched: "), searched.stdout)
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
