// "The function cannot tell": the same results traced and untraced, and every
// register of the C and Swift conventions surviving each trampoline kind.
import Glibc
import LiveTrace
import TestSupport
import XCTest

final class CallingConventionTests: XCTestCase {
    struct Contract {
        let handle: UnsafeMutableRawPointer
        let runAll: @convention(c) (UnsafeMutableRawPointer, Int) -> Void
        let resultsSize: Int
        let callWithRegisters: @convention(c) (UnsafeRawPointer, UnsafeMutableRawPointer, UnsafeMutableRawPointer) -> Void
        let hostile: OpsCallback
        let second: OpsCallback
        let recursive: OpsCallback
        let hostileCalls: UnsafeMutablePointer<UInt64>
        let secondCalls: UnsafeMutablePointer<UInt64>

        init() throws {
            handle = try TrampolineFixtures.library("ltfix_contract", sources: ["contract.c", "regs_harness.S"])
            runAll = TrampolineFixtures.symbol(handle, "lt_fix_run_all", as: (@convention(c) (UnsafeMutableRawPointer, Int) -> Void).self)
            let size = TrampolineFixtures.symbol(handle, "lt_fix_results_size", as: (@convention(c) () -> UInt).self)
            resultsSize = Int(size())
            callWithRegisters = TrampolineFixtures.symbol(handle, "lt_fix_call_with_regs", as: (@convention(c) (UnsafeRawPointer, UnsafeMutableRawPointer, UnsafeMutableRawPointer) -> Void).self)
            hostile = TrampolineFixtures.symbol(handle, "lt_fix_hostile_callback", as: OpsCallback.self)
            second = TrampolineFixtures.symbol(handle, "lt_fix_second_callback", as: OpsCallback.self)
            recursive = TrampolineFixtures.symbol(handle, "lt_fix_recursive_callback", as: OpsCallback.self)
            hostileCalls = TrampolineFixtures.address(handle, "lt_fix_hostile_calls").assumingMemoryBound(to: UInt64.self)
            secondCalls = TrampolineFixtures.address(handle, "lt_fix_second_calls").assumingMemoryBound(to: UInt64.self)
        }

        func results(seed: Int) -> [UInt8] {
            let buffer = UnsafeMutableRawPointer.allocate(byteCount: resultsSize, alignment: 16)
            defer { buffer.deallocate() }
            runAll(buffer, seed)
            return Array(UnsafeRawBufferPointer(start: buffer, count: resultsSize))
        }

        /// The register image after calling `function` with `pattern` loaded.
        func registersAfterCalling(_ function: String, pattern: [UInt8]) -> [UInt8] {
            let size = 240
            let input = UnsafeMutableRawPointer.allocate(byteCount: size, alignment: 16)
            let output = UnsafeMutableRawPointer.allocate(byteCount: size, alignment: 16)
            defer { input.deallocate(); output.deallocate() }
            input.copyMemory(from: pattern, byteCount: size)
            output.initializeMemory(as: UInt8.self, repeating: 0, count: size)
            callWithRegisters(TrampolineFixtures.address(handle, function), input, output)
            return Array(UnsafeRawBufferPointer(start: output, count: size))
        }
    }

    static let contractFunctions = ["lt_fix_many_ints", "lt_fix_many_doubles", "lt_fix_mixed", "lt_fix_make_*",
                                    "lt_fix_long_double", "lt_fix_set_errno", "lt_fix_read_errno", "lt_fix_variadic", "lt_fix_float"]

    /// A register image with a distinct, recognisable value in every slot
    /// (the pad at 104 is left as is).
    static func registerPattern(_ salt: UInt8) -> [UInt8] {
        (0..<240).map { UInt8(truncatingIfNeeded: $0 &* 7 &+ Int(salt)) | 0x01 }
    }

    func testTracedFunctionsReturnTheSameResultsAsUntracedThroughEachTrampolineKind() throws {
        let contract = try Contract()
        let untraced = (1...5).map { contract.results(seed: $0) }

        let before = contract.hostileCalls.pointee
        let full = try Tracer.attach(Self.contractFunctions, callback: contract.hostile, flags: [.saveRegisters])
        XCTAssertEqual((1...5).map { contract.results(seed: $0) }, untraced, "per-function trampoline (full entry) changed a result")
        try full.detach()
        let first = try Tracer.attach(Self.contractFunctions, callback: contract.hostile)
        XCTAssertEqual(first.functions.count, 12)
        let perFunction = (1...5).map { contract.results(seed: $0) }
        XCTAssertEqual(perFunction, untraced, "per-function trampoline changed a result")
        XCTAssertEqual(contract.hostileCalls.pointee - before, 2 * 5 * 12)

        let secondBefore = contract.secondCalls.pointee
        let second = try Tracer.attach(Self.contractFunctions, callback: contract.second)
        let iterated = (1...5).map { contract.results(seed: $0) }
        XCTAssertEqual(iterated, untraced, "iterator changed a result")
        XCTAssertEqual(contract.secondCalls.pointee - secondBefore, 5 * 12)
        XCTAssertEqual(contract.hostileCalls.pointee - before, 3 * 5 * 12)

        try second.detach()
        try first.detach()
        XCTAssertEqual((1...5).map { contract.results(seed: $0) }, untraced)
        XCTAssertEqual(contract.hostileCalls.pointee - before, 3 * 5 * 12, "a detached ops was called")
    }

    func testEveryRegisterOfBothConventionsSurvivesEachTrampolineKind() throws {
        let contract = try Contract()
        let pattern = Self.registerPattern(3)
        // The pad slot at 104..111 is not a register.
        func registers(_ image: [UInt8]) -> [UInt8] { Array(image[0..<104]) + Array(image[112..<240]) }
        let untraced = contract.registersAfterCalling("lt_fix_probe", pattern: pattern)
        XCTAssertEqual(registers(untraced), registers(pattern), "the probe itself must not change a register")

        // An ops with LT_OPS_SAVE_REGS goes through the full entry, one
        // without through the lean entry (lt_tramp_x86_64.S): both keep it all.
        let full = try Tracer.attach(["lt_fix_probe"], callback: contract.hostile, flags: [.saveRegisters])
        XCTAssertEqual(registers(contract.registersAfterCalling("lt_fix_probe", pattern: pattern)), registers(pattern),
                       "per-function trampoline, full entry")
        try full.detach()
        let first = try Tracer.attach(["lt_fix_probe"], callback: contract.hostile)
        XCTAssertEqual(registers(contract.registersAfterCalling("lt_fix_probe", pattern: pattern)), registers(pattern),
                       "per-function trampoline, lean entry")
        let second = try Tracer.attach(["lt_fix_probe"], callback: contract.second)
        XCTAssertEqual(registers(contract.registersAfterCalling("lt_fix_probe", pattern: pattern)), registers(pattern),
                       "iterator trampoline")
        let replacement = try Tracer.replace("lt_fix_probe", with: TrampolineFixtures.address(contract.handle, "lt_fix_probe_replacement"))
        XCTAssertEqual(registers(contract.registersAfterCalling("lt_fix_probe", pattern: pattern)), registers(pattern),
                       "iterator with a resume address")
        try first.detach()
        try second.detach()
        XCTAssertEqual(registers(contract.registersAfterCalling("lt_fix_probe", pattern: pattern)), registers(pattern),
                       "per-function trampoline with a resume address")
        try replacement.detach()
    }

    func testCallbackCallingATracedFunctionIsSkippedAndCounted() throws {
        let contract = try Contract()
        let callsBefore = contract.hostileCalls.pointee
        let skippedBefore = Tracer.skippedCalls
        let handle = try Tracer.attach(["lt_fix_float"], callback: contract.recursive)
        let float = TrampolineFixtures.symbol(contract.handle, "lt_fix_float", as: (@convention(c) (Float, Float) -> Float).self)
        for i in 0..<100 { XCTAssertEqual(float(Float(i), 2), Float(i) * 2 - 1.5) }
        try handle.detach()
        XCTAssertEqual(contract.hostileCalls.pointee - callsBefore, 100)
        XCTAssertEqual(Tracer.skippedCalls - skippedBefore, 100)
    }

    func testClosureSeesSiteReturnAddressAndArguments() throws {
        let contract = try Contract()
        let ints = TrampolineFixtures.symbol(contract.handle, "lt_fix_many_ints", as: (@convention(c) (Int, Int, Int, Int, Int, Int, Int, Int) -> Int).self)
        let seen = UnsafeMutablePointer<(UInt, UInt64, UInt64)>.allocate(capacity: 1)
        defer { seen.deallocate() }
        seen.initialize(to: (0, 0, 0))
        nonisolated(unsafe) let box = seen
        let handle = try Tracer.attach("lt_fix_many_ints") { call in
            box.pointee = (call.site, call.registers.pointee.rdi, call.registers.pointee.r9)
        }
        XCTAssertEqual(ints(10, 20, 30, 40, 50, 60, 70, 80), 10 + 40 + 90 + 200 + 350 + 660 + 910 + 1360)
        try handle.detach()
        let functionAddress = UInt(bitPattern: TrampolineFixtures.address(contract.handle, "lt_fix_many_ints"))
        XCTAssertEqual(seen.pointee.0, functionAddress, "ip is the site (function entry without endbr64)")
        XCTAssertEqual(seen.pointee.1, 10)
        XCTAssertEqual(seen.pointee.2, 60)
    }

    func testBadFiltersGetClearErrors() throws {
        _ = try Contract()
        XCTAssertThrowsError(try Tracer.attach("no_such_function_anywhere_*") { _ in }) { error in
            guard case TraceError.noMatchingFunction = error as! TraceError else { return XCTFail("\(error)") }
        }
        XCTAssertThrowsError(try Tracer.attach("0xzz") { _ in }) { error in
            guard case TraceError.invalidArgument = error as! TraceError else { return XCTFail("\(error)") }
        }
        XCTAssertThrowsError(try Tracer.replace("lt_fix_make_*", with: UnsafeRawPointer(bitPattern: 0x1000)!)) { error in
            guard case TraceError.invalidArgument = error as! TraceError else { return XCTFail("\(error)") }
        }
        XCTAssertEqual(OpsRegistry.shared.statistics.registeredOps, 0)
    }
}
