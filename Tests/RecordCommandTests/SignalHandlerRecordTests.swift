// `livetrace record` of a program whose signal handlers call traced
// functions while the tracer runs on the same threads: every call made, the
// handlers' included, is in the trace (counted by the program itself), each
// stream well nested, nothing lost, nothing skipped.
import Foundation
import LiveTrace
import TestSupport
import XCTest

final class SignalHandlerRecordTests: XCTestCase {
    func testCallsFromHandlersThatInterruptTheTracerAreAllRecordedWellNested() throws {
        let program = try RecordFixtures.build("signal_calls.c", compiler: "clang", output: "record-signal-calls")
        let work = RecordFixtures.scratch("signal-calls")
        defer { try? FileManager.default.removeItem(atPath: work) }
        // A full ring waits for the drain up to 20 s (not the default's few
        // ms): on a loaded two-core machine the drain may fall behind, and
        // this test is about handlers, not about a drain starved of CPU.
        let traced = try RecordFixtures.record(["--wait", "20000"], trace: "trace", program: [program], in: work)
        XCTAssertEqual(traced.status, 0, traced.stderr)
        // The program's own counts: "f=N g=M alarms=K".
        var made: [String: UInt64] = [:]
        for field in traced.stdout.split(whereSeparator: { $0 == " " || $0 == "\n" }) {
            let parts = field.split(separator: "=")
            if parts.count == 2, let value = UInt64(parts[1]) { made[String(parts[0])] = value }
        }
        let madeF = try XCTUnwrap(made["f"], traced.stdout), madeG = try XCTUnwrap(made["g"], traced.stdout)
        let alarms = try XCTUnwrap(made["alarms"], traced.stdout)
        XCTAssertEqual(madeF, 600_000)
        XCTAssertGreaterThan(alarms, 0, "the timers fired")

        let calls = try RecordFixtures.calls(work + "/trace")
        XCTAssertEqual(calls["sig_f"], madeF, "every call of sig_f recorded")
        XCTAssertEqual(calls["sig_g"], madeG, "every call of sig_g from the handlers recorded")
        XCTAssertEqual(calls["on_alarm"], alarms, "every handler run recorded")
        let summary = try XCTUnwrap(RecordFixtures.summaryLine(traced.stderr), traced.stderr)
        XCTAssertTrue(summary.contains(" 0 events lost"), summary)

        // Each stream (a thread's normal flow, with the handlers that
        // interrupted its own code nested inline; or the context of handlers
        // that interrupted the tracer) is well nested: every exit closes the
        // innermost open entry at its depth, none unwound, none left open.
        let trace = try TraceReader.read(directory: work + "/trace")
        for stream in trace.streams {
            var open: [UInt64] = []
            var failure: String?
            for (index, event) in stream.events.enumerated() {
                switch event.kind {
                case .entry:
                    if Int(event.depth) != open.count { failure = "entry at depth \(event.depth), \(open.count) open" }
                    open.append(event.address)
                case .exit:
                    if event.address != open.last || Int(event.depth) != open.count - 1 || event.isUnwound {
                        failure = "exit of \(event.address) at depth \(event.depth) (unwound: \(event.isUnwound)) does not close the innermost of \(open.count)"
                    }
                    if !open.isEmpty { open.removeLast() }
                case .lost:
                    failure = "a LOST event"
                }
                if let failure {
                    XCTFail("\(stream.identity.fileName), event \(index): \(failure)")
                    break
                }
            }
            if failure == nil { XCTAssertEqual(open, [], "every entry of \(stream.identity.fileName) has its exit") }
        }
        print("signal calls: f=\(madeF) g=\(madeG) alarms=\(alarms), \(trace.streams.count) streams; \(summary)")
    }
}
