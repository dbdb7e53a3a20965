// Ops semantics: filters and exclusions, changing a filter while registered,
// one MODIFY_RESUME ops per function, calls from inside a callback refused.
import Glibc
import LiveTrace
import TestSupport
import XCTest

final class OpsTests: XCTestCase {
    typealias Ints = @convention(c) (Int, Int, Int, Int, Int, Int, Int, Int) -> Int
    typealias Float2 = @convention(c) (Float, Float) -> Float

    final class Counter: @unchecked Sendable {
        var value = 0
        var error: TraceError?
        var handle: TraceHandle?
    }

    func contract() throws -> CallingConventionTests.Contract { try CallingConventionTests.Contract() }

    func testNotraceExcludesFunctionsFromAGlob() throws {
        let c = try contract()
        let counter = Counter()
        let handle = try Tracer.attach(["lt_fix_make_*"], excluding: ["lt_fix_make_big", "lt_fix_make_mix"]) { _ in counter.value += 1 }
        XCTAssertEqual(Set(handle.functions.map(\.function)), ["lt_fix_make_pair", "lt_fix_make_dpair"])
        _ = c.results(seed: 1)
        try handle.detach()
        XCTAssertEqual(counter.value, 2)
    }

    func testFilterChangeWhileRegisteredTakesEffectAtOnce() throws {
        let c = try contract()
        let ints = TrampolineFixtures.symbol(c.handle, "lt_fix_many_ints", as: Ints.self)
        let float = TrampolineFixtures.symbol(c.handle, "lt_fix_float", as: Float2.self)
        let counter = Counter()
        let handle = try Tracer.attach("lt_fix_many_ints") { _ in counter.value += 1 }
        _ = float(1, 2)
        XCTAssertEqual(counter.value, 0)
        try OpsRegistry.shared.addFilter(.glob("lt_fix_float"), to: handle.ops)
        _ = float(1, 2)
        _ = ints(1, 2, 3, 4, 5, 6, 7, 8)
        XCTAssertEqual(counter.value, 2)
        try OpsRegistry.shared.addFilter(.glob("lt_fix_many_*"), to: handle.ops, exclude: true)
        _ = ints(1, 2, 3, 4, 5, 6, 7, 8)
        XCTAssertEqual(counter.value, 2, "an exclusion added while registered must unpatch")
        XCTAssertEqual(handle.functions.map(\.function), ["lt_fix_float"])
        try handle.detach()
        XCTAssertEqual(OpsRegistry.shared.instruction(at: UInt(bitPattern: TrampolineFixtures.address(c.handle, "lt_fix_float"))), .nop)
    }

    func testSecondReplacementOfAFunctionIsRefused() throws {
        let c = try contract()
        let probe = TrampolineFixtures.address(c.handle, "lt_fix_probe_replacement")
        let first = try Tracer.replace("lt_fix_probe", with: probe)
        XCTAssertThrowsError(try Tracer.replace("lt_fix_probe", with: probe)) { error in
            guard case TraceError.resumeConflict = error as! TraceError else { return XCTFail("\(error)") }
            XCTAssertEqual((error as! TraceError).cCode, -3)
        }
        try first.detach()
        let again = try Tracer.replace("lt_fix_probe", with: probe)
        try again.detach()
    }

    func testRegistryCallsFromInsideACallbackAreRefused() throws {
        let c = try contract()
        let float = TrampolineFixtures.symbol(c.handle, "lt_fix_float", as: Float2.self)
        let counter = Counter()
        let handle = try Tracer.attach("lt_fix_float") { _ in
            do throws(TraceError) {
                try counter.handle?.detach()
            } catch {
                counter.error = error
            }
        }
        counter.handle = handle
        XCTAssertEqual(float(2, 2), 2.5)
        XCTAssertEqual(counter.error, .calledFromCallback)
        XCTAssertTrue(handle.isAttached)
        counter.handle = nil
        try handle.detach()
    }

    func testResumeAddressNeedsTheModifyResumeFlag() throws {
        let c = try contract()
        let float = TrampolineFixtures.symbol(c.handle, "lt_fix_float", as: Float2.self)
        let counter = Counter()
        let handle = try Tracer.attach("lt_fix_float") { call in
            counter.value = Int(lt_regs_set_resume(call.registers, 0x1234))
        }
        XCTAssertEqual(float(2, 2), 2.5, "the resume address must not change")
        try handle.detach()
        XCTAssertEqual(counter.value, -8, "-LT_EPERM")
        XCTAssertEqual(String(cString: lt_strerror(-8)), "lt_regs_set_resume needs an ops created with LT_OPS_MODIFY_RESUME")
    }
}
