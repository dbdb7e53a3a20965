// Recording from inside: GraphRecording (LiveTrace) records the function
// graph of the test process itself into a trace directory.
import Foundation
import Glibc
import LiveTrace
import TestSupport
import XCTest

final class GraphRecordingTests: XCTestCase {
    func testRecordingFromInsideCountsEveryCallOfEveryThread() throws {
        let library = try Fixtures.compile(
            ["record/inside.c"], compiler: "clang",
            flags: ["-O2", "-fpatchable-function-entry=5", "-fno-optimize-sibling-calls", "-shared", "-fPIC", "-pthread"],
            output: "librecord-inside.so")
        let handle = try XCTUnwrap(dlopen(library, RTLD_NOW | RTLD_GLOBAL), String(cString: dlerror()))
        typealias Run = @convention(c) (Int32) -> Int
        let run = unsafeBitCast(try XCTUnwrap(dlsym(handle, "inside_run")), to: Run.self)
        let directory = RecordFixtures.scratch("inside") + "/trace"

        // A filter that matches nothing: refused, and nothing stays started.
        XCTAssertThrowsError(try GraphRecording.start(directory: directory + "-none", functions: ["no_such_function_*"])) { error in
            guard case .tracing(.noMatchingFunction) = error as? GraphRecordingError else { return XCTFail("\(error)") }
        }

        let recording = try GraphRecording.start(directory: directory, functions: ["inside_*"])
        XCTAssertEqual(run(12), 144)
        let summary = try recording.stop()
        XCTAssertEqual(summary.lost, 0)
        XCTAssertEqual(summary.functions, 4)
        // After stop, calls are not recorded any more.
        XCTAssertEqual(run(5), 5)

        let calls = try RecordFixtures.calls(directory)
        // fib(12): 2*F(13)-1 = 465 calls, F(13) = 233 base cases.
        XCTAssertEqual(calls, ["inside_run": 1, "inside_thread": 2, "inside_fib": 465, "inside_leaf": 233 + 200])
        // info.json says how: this recorder, its filter, no depth limit.
        XCTAssertEqual(try TraceReader.readInfo(directory: directory).options, RecordingOptions(recorder: "GraphRecording", functions: ["inside_*"]))
        let report = try TraceReport(directory: directory)
        XCTAssertEqual(report.threads, 3)
        XCTAssertEqual(report.unmatchedExits, 0)
        XCTAssertEqual(report.functions.map(\.unfinished), [0, 0, 0, 0])
    }
}
