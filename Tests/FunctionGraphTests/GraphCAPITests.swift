// lt_graph_start/lt_graph_stop as a program sees them: a C++ program linked
// with liblivetrace.so records its own function graph, including an
// exception caught through hooked frames (the unwinder interposers live in
// the shared library there).
import Foundation
import TestSupport
import XCTest

final class GraphCAPITests: XCTestCase {
    /// A directory holding liblivetrace.so → the built libLiveTraceC.so.
    static func libraryDirectory() throws -> String {
        try Fixtures.liblivetraceDirectory("graph-liblivetrace")
    }

    func testCPlusPlusProgramRecordsItsGraphThroughTheCAPI() throws {
        let lib = try Self.libraryDirectory()
        let include = Fixtures.sourceDirectory.deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("Sources/CLiveTraceShims/include").path
        // The source goes before -llivetrace (the linker resolves left to
        // right), so it is passed among the flags.
        let program = try Fixtures.compile(
            [], compiler: "g++",
            flags: ["-O0", "-fpatchable-function-entry=5", "-rdynamic", "-I", include, Fixtures.source("graph/graph_capi.cpp"),
                    "-L", lib, "-llivetrace", "-Wl,-rpath,\(lib)"],
            output: "graph-capi")
        let result = try Fixtures.run([program])
        XCTAssertEqual(result.status, 0, result.stdout + result.stderr)
        XCTAssertFalse(result.signaled)
        let fib = ["> cx_fib 1", "> cx_fib 2", "> cx_fib 3", "< cx_fib 3", "> cx_fib 3", "< cx_fib 3", "< cx_fib 2",
                   "> cx_fib 2", "< cx_fib 2", "< cx_fib 1"]
        let expected = ["min_time refused: yes",
                        "> cx_main_work 0", "> cx_catcher 1", "> cx_thrower 2", "> cx_leaf 3", "< cx_leaf 3",
                        "<! cx_thrower 2", "> cx_leaf 2", "< cx_leaf 2", "< cx_catcher 1"]
            + fib + ["< cx_main_work 0", "lost 0", "second start: already", "second stop: not registered", "result 53"]
        XCTAssertEqual(result.stdout.split(separator: "\n").map(String.init), expected, result.stderr)
    }
}
