// Swift @convention(c) callbacks through Tracer.attach(callback:): compiled
// with `swiftc -O` (SwiftCallbacks.swift), a Swift leaf takes the leaf stub
// and one that calls a function takes the generic stub; both count every
// call of every thread exactly, against the calls the threads made.
import Foundation
import Glibc
import LiveTrace
@testable import LiveTraceTrampolines
import TestSupport
import XCTest

final class SwiftCallbackTests: XCTestCase {
    nonisolated(unsafe) private static var swiftLibrary: UnsafeMutableRawPointer?
    private static let lock = NSLock()

    /// SwiftCallbacks.swift built -O into its own library, once per process.
    static func swiftCallbacks() throws -> UnsafeMutableRawPointer {
        lock.lock()
        defer { lock.unlock() }
        if let handle = swiftLibrary { return handle }
        let path = try Fixtures.compile(
            ["trampolines/SwiftCallbacks.swift"], compiler: "swiftc",
            flags: ["-O", "-emit-library", "-parse-as-library", "-module-name", "SwiftCallbacks",
                    "-import-objc-header", TrampolineFixtures.includeDirectory + "/lt_tramp.h"],
            output: "libltfix_swift_callbacks.so")
        guard let handle = dlopen(path, RTLD_NOW | RTLD_LOCAL) else {
            throw FixtureError.compileFailed(command: "dlopen \(path)", output: String(cString: dlerror()))
        }
        swiftLibrary = handle
        return handle
    }

    static func callback(_ name: String) throws -> OpsCallback {
        let getter = TrampolineFixtures.symbol(try swiftCallbacks(), name, as: (@convention(c) () -> UnsafeRawPointer).self)
        return unsafeBitCast(getter(), to: OpsCallback.self)
    }

    static let threads = 4
    static let callsPerThread = LoadTests.soak ? 2_000_000 : 100_000

    /// Attaches `callback` to lt_swiftcb_target with two counters as its
    /// data, runs the threads, and checks the count against the calls made,
    /// then that nothing is counted after detach. Returns the verdict.
    func countCalls(with callback: OpsCallback) throws -> (leafStub: Bool, analysis: Result<LeafCallback, LeafRejection>?) {
        let calls = try TrampolineFixtures.library("ltfix_swiftcb", sources: ["swift_callback_calls.c"])
        let run = TrampolineFixtures.symbol(calls, "lt_swiftcb_run", as: (@convention(c) (Int32, Int) -> Int).self)
        // Atomic<UInt64> has UInt64's layout; read only after the threads joined.
        let counters = UnsafeMutablePointer<UInt64>.allocate(capacity: 2)
        counters.initialize(repeating: 0, count: 2)
        defer { counters.deallocate() }
        XCTAssertTrue(OpsRegistry.shared.leafStubsEnabled, "LIVETRACE_NO_LEAF must not be set for this test")

        let skippedBefore = Tracer.skippedCalls
        let handle = try Tracer.attach(["lt_swiftcb_target"], callback: callback, data: UnsafeMutableRawPointer(counters))
        let site = try XCTUnwrap(handle.functions.first)
        guard case let .jump(target) = OpsRegistry.shared.instruction(at: site.address) else {
            XCTFail("lt_swiftcb_target is not patched")
            return (false, nil)
        }
        let leafStub = OpsRegistry.shared.isLeafStub(target, of: handle.ops)
        let made = run(Int32(Self.threads), Self.callsPerThread)
        XCTAssertEqual(made, Self.threads * Self.callsPerThread, "the threads made every call")
        XCTAssertEqual(counters[0], UInt64(made), "every call of every thread counted once")
        XCTAssertEqual(Tracer.skippedCalls, skippedBefore, "no call skipped")
        try handle.detach()
        XCTAssertEqual(run(Int32(Self.threads), 1000), Self.threads * 1000)
        XCTAssertEqual(counters[0], UInt64(made), "counted after detach")
        return (leafStub, handle.leafAnalysis)
    }

    func testOptimizedSwiftLeafCallbackTakesTheLeafStubAndCountsEveryCallOfEveryThread() throws {
        let (leafStub, analysis) = try countCalls(with: try Self.callback("swift_fixture_counting_callback"))
        XCTAssertTrue(leafStub, "the Swift leaf callback must run from a leaf stub: \(String(describing: analysis))")
        guard case let .success(leaf)? = analysis else { return XCTFail("verdict: \(String(describing: analysis))") }
        XCTAssertTrue(leaf.mentioned.contains(GPRSet(.rdx)), "it reads its ops (rdx): \(leaf.mentioned)")
        XCTAssertFalse(leaf.mentioned.contains(GPRSet(.rcx)), "\(leaf.mentioned)")
    }

    func testSwiftCallbackThatCallsAFunctionTakesTheGenericStubWithTheSameExactCounts() throws {
        let (leafStub, analysis) = try countCalls(with: try Self.callback("swift_fixture_calling_callback"))
        XCTAssertFalse(leafStub)
        guard case .callsAFunction? = LeafStubTests.failure(try XCTUnwrap(analysis)) else {
            return XCTFail("verdict: \(String(describing: analysis))")
        }
    }
}
