// dlclose of an object whose functions are traced (lt_unload.h): the registry
// forgets the sites with their code, so detaching afterwards neither reads nor
// writes the unmapped text (before, it read the site and the program died).
import CLiveTraceShims
import Glibc
import LiveTrace
import Synchronization
import TestSupport
import XCTest

private final class CallCounter: Sendable {
    private let count = Atomic<Int>(0)
    func add() { count.add(1, ordering: .relaxed) }
    var calls: Int { count.load(ordering: .relaxed) }
}

final class UnloadTests: XCTestCase {
    typealias Target = @convention(c) (Int32) -> Int32

    /// A library of its own per test: the loader must really unmap it.
    private func build(_ name: String) throws -> String {
        try Fixtures.compile(
            ["trampolines/unload.c"], compiler: "clang",
            flags: ["-O2", "-fpatchable-function-entry=5", "-shared", "-fPIC"],
            output: "lib\(name).so")
    }

    private func open(_ path: String) throws -> UnsafeMutableRawPointer {
        guard let handle = dlopen(path, RTLD_NOW | RTLD_LOCAL) else {
            throw FixtureError.compileFailed(command: "dlopen \(path)", output: String(cString: dlerror()))
        }
        return handle
    }

    private func target(_ handle: UnsafeMutableRawPointer) -> Target {
        unsafeBitCast(dlsym(handle, "lt_unload_target")!, to: Target.self)
    }

    func testDetachAfterDlcloseUnmappedTheTracedLibraryForgetsItsSites() throws {
        let path = try build("unload_once")
        let counter = CallCounter()

        var handle = try open(path)
        let traced = try Tracer.attach("lt_unload_target") { _ in counter.add() }
        XCTAssertEqual(traced.functions.count, 1)
        for i in 0..<3 { XCTAssertEqual(target(handle)(Int32(i)), Int32(i) * 3 + 1) }
        XCTAssertEqual(counter.calls, 3)

        let unloadsBefore = lt_unload_count()
        XCTAssertEqual(dlclose(handle), 0)
        XCTAssertEqual(lt_unload_count(), unloadsBefore + 1, "the library was not unmapped, or the hook missed it")
        XCTAssertEqual(traced.functions.count, 0, "the registry still holds the unmapped site")
        XCTAssertNoThrow(try traced.detach())

        // Loaded again (often at the same address): untraced, and traceable.
        handle = try open(path)
        XCTAssertEqual(target(handle)(5), 16)
        XCTAssertEqual(counter.calls, 3, "the reloaded copy called a stale trampoline")
        let again = try Tracer.attach("lt_unload_target") { _ in counter.add() }
        XCTAssertEqual(target(handle)(6), 19)
        XCTAssertEqual(counter.calls, 4)
        try again.detach()
        XCTAssertEqual(dlclose(handle), 0)
    }

    func testAChildForkedWhileTheUnloadGateIsClosedStartsWithItOpen() throws {
        // This thread closes the gate as a dlclose in progress would; a
        // child forked now must be able to enter it (its owner is not there).
        let entered = lt_unload_gate_enter(1_000)
        XCTAssertEqual(entered, 1)
        let child = fork()
        if child == 0 {
            let token = lt_unload_gate_enter(1_000)
            _exit(token == 1 ? 0 : 3)
        }
        lt_unload_gate_leave(entered)
        var status: Int32 = 0
        XCTAssertEqual(waitpid(child, &status, 0), child)
        XCTAssertEqual(status, 0, "the child could not enter the gate its parent held at fork")
    }

    func testDlcloseThatOnlyDropsAReferenceKeepsTheSitesPatched() throws {
        let path = try build("unload_twice")
        let counter = CallCounter()

        let first = try open(path)
        let second = try open(path)
        let traced = try Tracer.attach("lt_unload_target") { _ in counter.add() }
        let unloadsBefore = lt_unload_count()
        XCTAssertEqual(dlclose(first), 0)
        XCTAssertEqual(lt_unload_count(), unloadsBefore, "a dlclose that unmapped nothing was taken for an unload")
        XCTAssertEqual(target(second)(1), 4)
        XCTAssertEqual(counter.calls, 1, "the still-loaded library stopped being traced")
        XCTAssertEqual(traced.functions.count, 1)

        XCTAssertEqual(dlclose(second), 0)
        XCTAssertEqual(lt_unload_count(), unloadsBefore + 1)
        XCTAssertEqual(traced.functions.count, 0)
        XCTAssertNoThrow(try traced.detach())
    }
}
