// info.json and objects.json through the Foundation-free JSON writer and
// reader (JSONText.swift, TraceMetadata.swift): every character and every
// 64-bit value survives the round trip, files written by the earlier
// JSONEncoder-based writer still read, and damaged JSON is a clear error
// naming the file and the place, never a crash.
import Foundation
import LiveTraceRecording
import XCTest

final class TraceMetadataJSONTests: XCTestCase {
    /// Text that needs every kind of escape, and text that needs none.
    static let awkward = "quote \" backslash \\ slash / newline \n tab \t cr \r bell \u{07} nul \u{00} del \u{7f} é 🙂 日本"

    static func sampleTrace() -> Trace {
        let info = TraceInfo(
            command: ["/usr/bin/prog", awkward, ""], pid: UInt64.max,
            clock: ClockCalibration(
                start: ClockPair(tsc: 0, monotonicNs: 1),
                end: ClockPair(tsc: UInt64.max, monotonicNs: UInt64.max - 1)),
            lostWithoutRing: 7, lostEvents: 9, ringCount: 64, ringCapacity: 1 << 17, complete: false, salvaged: true,
            options: RecordingOptions(
                recorder: "livetrace record", tracerCommand: ["livetrace", "record", awkward], functions: ["f*", awkward],
                excluding: ["g"], relocating: [], maxDepth: 3, minTimeNs: UInt64.max, waitMicroseconds: 20_000))
        let objects = ObjectTable(objects: [
            TraceObject(
                path: "/lib/x86_64-linux-gnu/libc.so.6", buildId: "6d6452f6", loadBias: 0x7f00_0000_0000,
                ranges: [[0x7f00_0002_8000, 0x7f00_001a_d000], [UInt64.max - 1, UInt64.max]],
                symbols: [TraceSymbol(name: "malloc", address: 680_608, size: 430),
                          TraceSymbol(name: awkward, address: UInt64.max, size: 0)]),
            TraceObject(path: "/tmp/gone " + awkward, buildId: nil, loadBias: 0, ranges: [], symbols: [],
                        symbolsError: "open(/tmp/gone) failed: " + awkward),
        ])
        return Trace(info: info, objects: objects, streams: [])
    }

    func testEveryCharacterAndEverySixtyFourBitValueSurvivesTheRoundTrip() throws {
        let dir = RecordingFixtures.scratchDirectory("json-roundtrip")
        let trace = Self.sampleTrace()
        try TraceWriter.write(trace, to: dir)
        XCTAssertEqual(try TraceReader.read(directory: dir), trace)
    }

    func testFilesAreCompactWithSortedKeysAndNullBuildId() throws {
        let dir = RecordingFixtures.scratchDirectory("json-layout")
        var trace = Self.sampleTrace()
        trace.info.command = ["./prog"]
        trace.info.options?.tracerCommand = ["livetrace", "record"]
        trace.info.options?.functions = ["f*"]
        trace.objects.objects[0].symbols = [TraceSymbol(name: "main", address: 4256, size: 352)]
        trace.objects.objects[1].path = "/tmp/gone"
        trace.objects.objects[1].symbolsError = "no such file"
        try TraceWriter.write(trace, to: dir)
        let info = try String(contentsOfFile: dir + "/info.json", encoding: .utf8)
        XCTAssertEqual(info, """
            {"clock":{"end":{"monotonic_ns":18446744073709551614,"tsc":18446744073709551615},"start":{"monotonic_ns":1,"tsc":0}},\
            "command":["./prog"],"complete":false,"format":"livetrace-trace","lost_events":9,"lost_without_ring":7,\
            "pid":18446744073709551615,"recording":{"excluding":["g"],"functions":["f*"],"max_depth":3,\
            "min_time_ns":18446744073709551615,"recorder":"livetrace record","relocating":[],\
            "tracer_command":["livetrace","record"],"wait_us":20000},\
            "ring_capacity":131072,"ring_count":64,"salvaged":true,"version":\(TraceFormat.version)}
            """)
        // Without options (an older trace, or a recorder that gives none) the field is absent.
        trace.info.options = nil
        try TraceWriter.write(trace, to: dir)
        XCTAssertFalse(try String(contentsOfFile: dir + "/info.json", encoding: .utf8).contains("recording"))
        let objects = try String(contentsOfFile: dir + "/objects.json", encoding: .utf8)
        XCTAssertEqual(objects, """
            {"objects":[{"build_id":"6d6452f6","load_bias":\(0x7f00_0000_0000 as UInt64),"path":"/lib/x86_64-linux-gnu/libc.so.6",\
            "ranges":[[\(0x7f00_0002_8000 as UInt64),\(0x7f00_001a_d000 as UInt64)],[18446744073709551614,18446744073709551615]],\
            "symbols":[{"address":4256,"name":"main","size":352}]},\
            {"build_id":null,"load_bias":0,"path":"/tmp/gone","ranges":[],"symbols":[],"symbols_error":"no such file"}],\
            "version":\(TraceFormat.version)}
            """)
        // Any JSON reader agrees on the content.
        let parsed = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(objects.utf8)) as? [String: Any])
        XCTAssertEqual((parsed["objects"] as? [[String: Any]])?.count, 2)
    }

    func testAFileOfTheEarlierEncoderStillReads() throws {
        // Foundation's JSONEncoder wrote "\/" for "/", left out a nil
        // build_id, and may have added whitespace: the reader takes all of it.
        let dir = RecordingFixtures.scratchDirectory("json-earlier")
        try TraceWriter.write(Self.sampleTrace(), to: dir)
        try Data("""
            { "clock" : {"end":{"monotonic_ns":20,"tsc":2000},"start":{"monotonic_ns":10,"tsc":1000}},
              "command":[".\\/calls","caf\\u00e9 \\ud83d\\ude42"],"complete":true,"format":"livetrace-trace",
              "lost_events":0,"lost_without_ring":0,"pid":26930,"ring_capacity":131072,"ring_count":64,
              "salvaged":false,"version":\(TraceFormat.version),"added_later":{"ignored":[1,2.5e3,null,true]} }
            """.utf8).write(to: URL(fileURLWithPath: dir + "/info.json"))
        try Data("""
            {"objects":[{"load_bias":0,"path":"\\/tmp\\/calls","ranges":[[4096,8192]],
            "symbols":[{"address":4256,"name":"main","size":352}]}],"version":\(TraceFormat.version)}
            """.utf8).write(to: URL(fileURLWithPath: dir + "/objects.json"))
        let trace = try TraceReader.read(directory: dir)
        XCTAssertEqual(trace.info.command, ["./calls", "café 🙂"])
        XCTAssertNil(trace.info.options, "no recording options in a file written before them")
        XCTAssertEqual(trace.info.clock, ClockCalibration(start: ClockPair(tsc: 1000, monotonicNs: 10), end: ClockPair(tsc: 2000, monotonicNs: 20)))
        XCTAssertEqual(trace.objects.objects, [TraceObject(
            path: "/tmp/calls", buildId: nil, loadBias: 0, ranges: [[4096, 8192]],
            symbols: [TraceSymbol(name: "main", address: 4256, size: 352)])])
    }

    func testDamagedJSONIsAClearErrorNamingTheFileAndThePlace() throws {
        let dir = RecordingFixtures.scratchDirectory("json-damage")
        try TraceWriter.write(Self.sampleTrace(), to: dir)
        let good = try String(contentsOfFile: dir + "/info.json", encoding: .utf8)
        let deep = String(repeating: "[", count: 10_000) + String(repeating: "]", count: 10_000)
        let cases: [(text: String, mentions: [String])] = [
            ("", ["invalid JSON", "unexpected end of text at byte 0"]),
            ("{", ["invalid JSON", "at byte 1"]),
            ("{\"clock\":1,}", ["invalid JSON", "expected a member name at byte 11"]),
            (deep, ["invalid JSON", "nested deeper than 64 levels"]),
            ("\"\\u12\"", ["invalid JSON", "\\u escape"]),
            ("\"\\ud800\"", ["invalid JSON", "unpaired surrogate"]),
            ("\"\\q\"", ["invalid JSON", "invalid escape at byte 2"]),
            ("\"a\u{01}b\"", ["invalid JSON", "unescaped control character"]),
            ("01", ["invalid JSON", "leading zero"]),
            ("1e", ["invalid JSON", "invalid number"]),
            ("tru", ["invalid JSON", "invalid literal"]),
            (good + " x", ["invalid JSON", "unexpected text after the value"]),
            ("[]", ["wrong type at the top level: expected an object, found an array"]),
            (good.replacingOccurrences(of: "\"pid\":18446744073709551615", with: "\"pid\":18446744073709551616"),
             ["wrong type at pid", "found 18446744073709551616"]),
            (good.replacingOccurrences(of: "\"pid\":18446744073709551615", with: "\"pid\":-1"), ["wrong type at pid"]),
            (good.replacingOccurrences(of: "\"ring_count\":64", with: "\"ring_count\":6.4"), ["wrong type at ring_count"]),
            (good.replacingOccurrences(of: "\"tsc\":0", with: "\"tsc\":\"0\""), ["wrong type at clock.start.tsc", "found a string"]),
            (good.replacingOccurrences(of: "\"monotonic_ns\":1,", with: "\"monotonic\":1,"), ["missing field clock.start.monotonic_ns"]),
            (good.replacingOccurrences(of: "\"command\":[", with: "\"command\":[5,"), ["wrong type at command[0]"]),
            (good.replacingOccurrences(of: "\"complete\":false", with: "\"complete\":0"), ["wrong type at complete", "expected a boolean"]),
            (good.replacingOccurrences(of: "\"max_depth\":3", with: "\"max_depth\":\"3\""), ["wrong type at recording.max_depth"]),
            (good.replacingOccurrences(of: "\"excluding\":[\"g\"]", with: "\"excluding\":[1]"), ["wrong type at recording.excluding[0]"]),
            (good.replacingOccurrences(of: "\"recorder\":", with: "\"recorded\":"), ["missing field recording.recorder"]),
        ]
        for (text, mentions) in cases {
            try Data(text.utf8).write(to: URL(fileURLWithPath: dir + "/info.json"))
            XCTAssertThrowsError(try TraceReader.readInfo(directory: dir), String(text.prefix(80))) { error in
                let message = "\(error)"
                XCTAssertTrue(message.contains("info.json"), message)
                for fragment in mentions {
                    XCTAssertTrue(message.contains(fragment), "'\(message)' does not mention '\(fragment)'")
                }
            }
        }
        let objects = try String(contentsOfFile: dir + "/objects.json", encoding: .utf8)
        try Data(objects.replacingOccurrences(of: "\"size\":430", with: "\"size\":null").utf8)
            .write(to: URL(fileURLWithPath: dir + "/objects.json"))
        XCTAssertThrowsError(try TraceReader.readObjects(directory: dir)) { error in
            XCTAssertTrue("\(error)".contains("wrong type at objects[0].symbols[0].size: expected an integer, found null"), "\(error)")
        }
    }
}
