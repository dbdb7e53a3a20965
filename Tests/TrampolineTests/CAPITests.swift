// The C API as a C program sees it: liblivetrace.so linked into plain C
// programs (the Examples), self-contained, with the fixed names of livetrace.h.
import Foundation
import TestSupport
import XCTest

final class CAPITests: XCTestCase {
    /// A directory holding liblivetrace.so → the built libLiveTraceC.so.
    static func libraryDirectory() throws -> String {
        try Fixtures.liblivetraceDirectory("liblivetrace")
    }

    static var examplesDirectory: String {
        Fixtures.sourceDirectory.deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("Examples").path
    }

    func buildExample(_ name: String) throws -> String {
        let lib = try Self.libraryDirectory()
        return try Fixtures.compile(
            ["\(Self.examplesDirectory)/\(name).c"], compiler: "clang",
            flags: ["-O2", "-pthread", "-fpatchable-function-entry=5", "-I", TrampolineFixtures.includeDirectory,
                    "-L", lib, "-llivetrace", "-Wl,-rpath,\(lib)"],
            output: "example-\(name)")
    }

    func testLibraryIsSelfContainedForPlainCPrograms() throws {
        let lib = try Self.libraryDirectory()
        let result = try Fixtures.run(["/usr/bin/readelf", "-d", lib + "/liblivetrace.so"])
        XCTAssertTrue(result.stdout.contains("[liblivetrace.so]"), "soname must be liblivetrace.so")
        XCTAssertFalse(result.stdout.contains("libswift"), "the Swift runtime must be linked in:\n\(result.stdout)")
        let symbols = try Fixtures.run(["/usr/bin/nm", "-D", "--defined-only", lib + "/liblivetrace.so"]).stdout
        for name in ["lt_ops_create", "lt_ops_data", "lt_ops_set_filter", "lt_ops_set_notrace", "lt_ops_register",
                     "lt_ops_unregister", "lt_ops_destroy", "lt_regs_set_resume", "lt_strerror"] {
            XCTAssertTrue(symbols.contains(" T \(name)\n"), "\(name) must be exported")
        }
    }

    func testCProgramWithoutSitesTracesItsOwnFunctionsAfterIncludeDynamic() throws {
        let lib = try Self.libraryDirectory()
        let program = try Fixtures.compile(
            ["relocation/capi_dynamic.c"], compiler: "clang",
            flags: ["-O2", "-I", TrampolineFixtures.includeDirectory, "-L", lib, "-llivetrace", "-Wl,-rpath,\(lib)"],
            output: "capi-dynamic")
        let result = try Fixtures.run([program])
        XCTAssertEqual(result.status, 0, result.stdout + result.stderr)
        // twice: 1000 calls, square: 2000 calls; the callback saw each once.
        var total = 0
        for i in 0..<1000 { total += i * i + (i + 1) * (i + 1) }
        XCTAssertEqual(result.stdout, "total \(total) own 3000 seen 3000 restored 1\n")
    }

    func testCProgramTracesItsOwnFunctions() throws {
        let program = try buildExample("trace-self")
        let result = try Fixtures.run([program])
        XCTAssertEqual(result.status, 0, result.stdout + result.stderr)
        XCTAssertFalse(result.signaled)
        // The program checks that every entry of fib was seen (exit status).
        XCTAssertTrue(result.stdout.contains(", square 1\n"), result.stdout)
        let seen = result.stdout.split(separator: "\n").first { $0.hasPrefix("calls seen: fib ") }
        let after = result.stdout.split(separator: "\n").first { $0.hasPrefix("after unregister: fib ") }
        XCTAssertEqual(seen?.split(separator: " ")[3], after?.split(separator: " ")[3], "no call counted after unregister")
        XCTAssertTrue(result.stdout.contains("traced:   fib(20) = 6765, square(12) = 144"), result.stdout)
    }

    func testLivePatchingExampleRunsNoOldBodyAfterTheSwitch() throws {
        let program = try buildExample("live-patch")
        let result = try Fixtures.run([program])
        XCTAssertEqual(result.status, 0, result.stdout + result.stderr)
        XCTAssertFalse(result.signaled)
        XCTAssertTrue(result.stdout.contains("restored: price_with_tax(1000) = 1100"), result.stdout)
    }

    func testSwiftProgramTracesItsOwnSwiftFunctions() throws {
        let lib = try Self.libraryDirectory()
        let out = Fixtures.buildDirectory.appendingPathComponent("swift-trace-self").path
        try? FileManager.default.createDirectory(atPath: out, withIntermediateDirectories: true)
        let result = try Fixtures.run(["/bin/bash", Self.examplesDirectory + "/swift-trace-self.sh", lib, out])
        XCTAssertEqual(result.status, 0, result.stdout + result.stderr)
        // fib(15) makes 2 * fib(16) - 1 = 1973 calls; greet is called once.
        XCTAssertTrue(result.stdout.contains("fib(15) = 610; traced calls: 1973; last argument seen: 1"), result.stdout + result.stderr)
        XCTAssertTrue(result.stdout.contains("Hello, LiveTrace! traced calls of fib and greet: 1"), result.stdout)
    }
}
