// `livetrace replay` on traces recorded from tree.c (threads, recursion, a
// signal handler, longjmp, a crash): golden output without the duration
// column (durations differ run to run), thread ids normalized.
import Foundation
import LiveTraceAnalysis
import LiveTraceRecording
import TestSupport
import XCTest

final class ReplayCommandTests: XCTestCase {
    func replay(_ trace: String, _ options: [String]) throws -> String {
        let result = try ReadingFixtures.livetrace(["replay", "-d", trace] + options)
        XCTAssertEqual(result.status, 0, result.stderr)
        return ReadingFixtures.normalizeTids(result.stdout)
    }

    func testReplayShowsEachThreadsCallTreeWithLeavesOnOneLine() throws {
        let traces = try ReadingFixtures.traces()
        XCTAssertEqual(try replay(traces.normal, ["-f", "tid"]), """
            #  TID      FUNCTION
            [T1] | main() {
            [T1] |   fact() {
            [T1] |     fact() {
            [T1] |       fact() {
            [T1] |         fact();
            [T1] |       } /* fact */
            [T1] |     } /* fact */
            [T1] |   } /* fact */
            [T1] |   on_signal() {
            [T1] |     note();
            [T1] |   } /* on_signal */
            [T1] |   jumper() {
            [T1] |     deeper() {
            [T1] |       leaf();
            [T1] |     } /* deeper, unwound */
            [T1] |   } /* jumper, unwound */
            [T1] | } /* main */
            [T2] | thread_body() {
            [T2] |   leaf();
            [T2] | } /* thread_body */
            [T3] | thread_body() {
            [T3] |   leaf();
            [T3] | } /* thread_body */

            """)
    }

    func testACrashLeavesItsCallsUnfinished() throws {
        let traces = try ReadingFixtures.traces()
        let lines = try replay(traces.crash, ["-f", "none", "--tid", tidOfMain(traces.crash)])
        XCTAssertEqual(lines, """
            #  FUNCTION
            | main() {
            |   fact() {
            |     fact() {
            |       fact() {
            |         fact();
            |       } /* fact */
            |     } /* fact */
            |   } /* fact */
            |   on_signal() {
            |     note();
            |   } /* on_signal */
            |   jumper() {
            |     deeper() {
            |       leaf();
            |     } /* deeper, unwound */
            |   } /* jumper, unwound */
            |   doomed() {
            |     leaf();
            |   } /* doomed, unfinished */
            | } /* main, unfinished */

            """)
    }

    func testEntryOnlyCallsAreShownAsSuch() throws {
        // With leaf hidden, the calls a crash and a longjmp left have only
        // their entry: each is one line saying how it ended, with no
        // duration for the unfinished ones.
        let traces = try ReadingFixtures.traces()
        let tid = try tidOfMain(traces.crash)
        XCTAssertEqual(try replay(traces.crash, ["-f", "none", "--tid", tid, "-N", "leaf"]), """
            #  FUNCTION
            | main() {
            |   fact() {
            |     fact() {
            |       fact() {
            |         fact();
            |       } /* fact */
            |     } /* fact */
            |   } /* fact */
            |   on_signal() {
            |     note();
            |   } /* on_signal */
            |   jumper() {
            |     deeper(); /* unwound */
            |   } /* jumper, unwound */
            |   doomed() { /* unfinished */
            | } /* main, unfinished */

            """)
        let withDurations = try ReadingFixtures.livetrace(["replay", "-d", traces.crash, "--tid", tid, "-N", "leaf", "-f", "duration"])
        let doomed = try XCTUnwrap(withDurations.stdout.split(separator: "\n").first { $0.contains("doomed()") })
        XCTAssertTrue(doomed.hasPrefix(String(repeating: " ", count: 11) + "|   doomed() { /* unfinished */"), String(doomed))
        let deeper = try XCTUnwrap(withDurations.stdout.split(separator: "\n").first { $0.contains("deeper()") })
        XCTAssertNotNil(deeper.range(of: #"^ +[0-9.]+ (ns|us|ms) \|     deeper\(\); /\* unwound \*/$"#, options: .regularExpression), String(deeper))
    }

    func testFiltersChooseWhatIsShown() throws {
        let traces = try ReadingFixtures.traces()
        // -F: the matching calls and what they call, from depth 0.
        XCTAssertEqual(try replay(traces.normal, ["-f", "none", "-F", "jumper", "-F", "thread_*"]), """
            #  FUNCTION
            | jumper() {
            |   deeper() {
            |     leaf();
            |   } /* deeper, unwound */
            | } /* jumper, unwound */
            | thread_body() {
            |   leaf();
            | } /* thread_body */
            | thread_body() {
            |   leaf();
            | } /* thread_body */

            """)
        // -N: the matching calls and what they call are hidden; -D: levels.
        XCTAssertEqual(try replay(traces.normal, ["-f", "none", "-N", "fact", "-N", "deeper", "-D", "2", "--tid", tidOfMain(traces.normal)]), """
            #  FUNCTION
            | main() {
            |   on_signal();
            |   jumper(); /* unwound */
            | } /* main */

            """)
        // -t: calls shorter than a minute are hidden; unfinished calls stay.
        XCTAssertEqual(try replay(traces.normal, ["-f", "none", "-t", "60s"]), "#  FUNCTION\n")
        XCTAssertEqual(try replay(traces.crash, ["-f", "none", "-t", "60s"]), """
            #  FUNCTION
            | main() {
            |   doomed() { /* unfinished */
            | } /* main, unfinished */

            """)
    }

    func testDurationsLossesAndEndingsOfASyntheticTrace() throws {
        let dir = try SyntheticTraces.directory("replay-synthetic")
        let result = try ReadingFixtures.livetrace(["replay", "-d", dir])
        XCTAssertEqual(result.status, 0, result.stderr)
        XCTAssertEqual(result.stdout, """
            # DURATION     TID      FUNCTION
                       [   100] | main() {
                       [   100] |   work() {
              1.000 us [   100] |     leaf();
                500 ns [   100] |     leaf();
            149.900 us [   100] |   } /* work */
                       [   100] |   /* 3 events lost */
              2.100 ms [   100] | } /* main */
                       [   101] | work() {
                100 ns [   101] |   leaf(); /* left without exit */
                200 ns [   101] | } /* work */
                       [   101] | /* exit of leaf without its entry */
                       [   101] | leaf() {
                 50 ns [   101] |   leaf(); /* unwound */
                300 ns [   101] | } /* leaf */
                       [   101] | leaf() { /* unfinished */

            """)
        XCTAssertFalse(result.stdout.contains("\u{1b}["), "no colour on a pipe")
        // Colour on request: 2.1 ms in red, 149.9 us in yellow.
        let colour = try ReadingFixtures.livetrace(["replay", "-d", dir, "--color", "always", "--tid", "100"])
        XCTAssertTrue(colour.stdout.contains("\u{1b}[31m2.100 ms\u{1b}[0m [   100] | } /* main */"), colour.stdout)
        XCTAssertTrue(colour.stdout.contains("\u{1b}[33m149.900 us\u{1b}[0m"), colour.stdout)
        XCTAssertFalse(colour.stdout.contains("[   101]"))
        // -t keeps a long call whose callees are short; losses and
        // unmatched exits are never hidden.
        let long = try ReadingFixtures.livetrace(["replay", "-d", dir, "-t", "100us", "-f", "none"])
        XCTAssertEqual(long.stdout, """
            #  FUNCTION
            | main() {
            |   work();
            |   /* 3 events lost */
            | } /* main */
            | /* exit of leaf without its entry */
            | leaf() { /* unfinished */

            """)
    }

    func testBadOptionsAreRefusedWithTheReason() throws {
        let traces = try ReadingFixtures.traces()
        for (options, message) in [
            (["-t", "soon"], "-t soon: not a time"), (["-D", "0"], "-D must be at least 1"),
            (["--tid", "x"], "--tid x: not a thread id"), (["-f", "cpu"], "unknown field 'cpu'"),
            (["--frobnicate"], "Unknown option '--frobnicate'"),
        ] {
            let result = try ReadingFixtures.livetrace(["replay", "-d", traces.normal] + options)
            XCTAssertNotEqual(result.status, 0, "\(options)")
            XCTAssertTrue(result.stderr.contains(message), "\(options): \(result.stderr)")
        }
    }

    /// The main thread's tid: the trace's pid.
    func tidOfMain(_ trace: String) throws -> String {
        let info = try ReadingFixtures.livetrace(["info", "-d", trace])
        let line = try XCTUnwrap(info.stdout.split(separator: "\n").first { $0.hasPrefix("pid:") })
        return String(line.split(separator: " ").last!)
    }

    /// The replay's line buffer: a name far longer than its first capacity
    /// comes out whole, and every duration reads as the report writes it.
    func testTheLineBufferGrowsAndWritesDurationsAsTheReport() throws {
        var buffer = LineBuffer()
        let long = String(repeating: "n", count: 3 << 20)
        buffer.write("[")
        buffer.write(long)
        buffer.byte(UInt8(ascii: "]"))
        XCTAssertEqual(buffer.count, long.utf8.count + 2)
        XCTAssertEqual(String(decoding: buffer.bytes, as: UTF8.self), "[" + long + "]")
        let output = TextOutput()
        buffer.flush(to: output, threshold: 0)
        XCTAssertEqual(output.bytes.count, long.utf8.count + 2)
        XCTAssertEqual(buffer.count, 0)
        for ns: UInt64 in [0, 7, 999, 1_000, 1_499, 1_500, 999_999, 999_999_499, 999_999_500, 1_000_000_000, 12_345_678_901, .max] {
            var line = LineBuffer()
            line.duration(ns, width: 12)
            let expected = TraceReport.duration(ns)
            XCTAssertEqual(String(decoding: line.bytes, as: UTF8.self),
                           String(repeating: " ", count: max(0, 12 - expected.count)) + expected, "\(ns)")
        }
    }

    /// Durations in whole nanoseconds round half away from zero, as
    /// Double.rounded() does, at halves, near them, and at the limits.
    func testWholeNanosecondsRoundAsRoundedDoes() {
        var values: [Double] = [0.5, 1.5, 2.5, 0.49999999999999994, 4_503_599_627_370_495.5, 9_007_199_254_740_993,
                                1e18, 1.8446744073709550e19, 123.4999, 123.5000001, 9_223_372_036_854_775_807.0,
                                9.223372036854774e18, 9.223372036854778e18]
        var random = SystemRandomNumberGenerator()
        for _ in 0..<100_000 {
            let scale = Double(1 << UInt64.random(in: 0...60, using: &random))
            values.append(Double.random(in: 0..<1, using: &random) * scale)
            values.append(Double(UInt64.random(in: 0..<(1 << 40), using: &random)) + 0.5)
        }
        for value in values {
            XCTAssertEqual(ClockCalibration.whole(value), UInt64(value.rounded()), "\(value)")
        }
        XCTAssertEqual(ClockCalibration.whole(-1), 0)
        XCTAssertEqual(ClockCalibration.whole(.nan), 0)
        XCTAssertEqual(ClockCalibration.whole(.infinity), .max)
    }
}
