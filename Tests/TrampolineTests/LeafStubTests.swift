// Leaf stubs (clean-call optimization): the analyzer's verdict on callbacks
// compiled by gcc and clang, the register contract through a leaf stub, and
// unregister/destroy keeping their promise without E1/E2.
import Glibc
import LiveTrace
@testable import LiveTraceTrampolines
import TestSupport
import XCTest

final class LeafStubTests: XCTestCase {
    /// leaf_callbacks.c built by `compiler` -O2 into its own library, loaded
    /// RTLD_LOCAL (the gcc and clang builds define the same names).
    static func leafLibrary(_ compiler: String) throws -> UnsafeMutableRawPointer {
        let path = try Fixtures.compile(
            ["trampolines/leaf_callbacks.c"], compiler: compiler,
            flags: ["-O2", "-shared", "-fPIC", "-I", TrampolineFixtures.includeDirectory],
            output: "libltfix_leaf_\(compiler).so")
        guard let handle = dlopen(path, RTLD_NOW | RTLD_LOCAL) else {
            throw FixtureError.compileFailed(command: "dlopen \(path)", output: String(cString: dlerror()))
        }
        return handle
    }

    static func verdict(_ handle: UnsafeMutableRawPointer, _ name: String) -> Result<LeafCallback, LeafRejection> {
        LeafCallbackAnalysis.analyze(UInt(bitPattern: TrampolineFixtures.address(handle, name)))
    }

    static let argumentsAndScratch: GPRSet = [GPRSet(.rax), GPRSet(.rdx), GPRSet(.rsi), GPRSet(.rdi),
                                             GPRSet(.r8), GPRSet(.r9), GPRSet(.r10), GPRSet(.r11)]

    func testAnalyzerAcceptsSmallLeafCallbacksOfGccAndClangWithTheRegistersTheyMention() throws {
        for compiler in ["gcc", "clang"] {
            let library = try Self.leafLibrary(compiler)
            let expected: [(String, GPRSet)] = [
                ("leaf_empty", []), ("leaf_increment", []), ("leaf_atomic_add", []),
                ("leaf_reads_ip", GPRSet(.rdi)), ("leaf_branch", [GPRSet(.rdi), GPRSet(.rsi)]),
            ]
            for (name, saved) in expected {
                switch Self.verdict(library, name) {
                case let .success(leaf):
                    XCTAssertEqual(leaf.saved, saved, "\(compiler) \(name): \(leaf.mentioned)")
                    XCTAssertFalse(leaf.mentioned.contains(GPRSet(.rcx)), "\(compiler) \(name)")
                    XCTAssertLessThanOrEqual(leaf.instructionCount, LeafCallbackAnalysis.maxInstructions)
                    XCTAssertEqual(leaf.codeRanges.first?.lowerBound, leaf.entry)
                case let .failure(reason):
                    XCTFail("\(compiler) \(name) must be a leaf: \(reason)")
                }
            }
            // Both paths of the branch end in their own `ret`: at least
            // cmp, jcc, two stores and two rets.
            if case let .success(branch) = Self.verdict(library, "leaf_branch") {
                XCTAssertGreaterThanOrEqual(branch.instructionCount, 6, "\(compiler): the branch's two paths")
            }
        }
    }

    func testAnalyzerRejectsLoopsCallsFloatingPointRegsAndThreadLocalsWithTheirReason() throws {
        for compiler in ["gcc", "clang"] {
            let library = try Self.leafLibrary(compiler)
            func rejection(_ name: String) -> LeafRejection? {
                if case let .failure(reason) = Self.verdict(library, name) { return reason }
                XCTFail("\(compiler) \(name) must not be a leaf")
                return nil
            }
            guard case .backwardBranch? = rejection("leaf_loop") else { return XCTFail("\(compiler) leaf_loop: \(String(describing: rejection("leaf_loop")))") }
            guard case .callsAFunction? = rejection("leaf_calls") else { return XCTFail("\(compiler) leaf_calls: \(String(describing: rejection("leaf_calls")))") }
            guard case .floatingPointOrVector? = rejection("leaf_floating_point") else {
                return XCTFail("\(compiler) leaf_floating_point: \(String(describing: rejection("leaf_floating_point")))")
            }
            XCTAssertEqual(rejection("leaf_reads_regs"), .readsRegisters, compiler)
            XCTAssertTrue(rejection("leaf_reads_regs")?.description.contains("rcx") == true)
            guard case .segmentOverride? = rejection("leaf_thread_local") else {
                return XCTFail("\(compiler) leaf_thread_local: \(String(describing: rejection("leaf_thread_local")))")
            }
            XCTAssertTrue(rejection("leaf_loop")?.description.contains("loop") == true)
            XCTAssertTrue(rejection("leaf_calls")?.description.contains("calls a function") == true)
        }
    }

    func testAnalyzerReadsCodeAtTheEndOfAMappingWithoutFaulting() throws {
        // Unmapped memory: a clear verdict, no SIGSEGV.
        guard case .unreadable? = Self.failure(LeafCallbackAnalysis.analyze(0x10)) else { return XCTFail("address 0x10") }
        // Nops running into the end of a mapping, with no ret before it.
        let page = Int(getpagesize())
        let memory = mmap(nil, 2 * page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0)!
        XCTAssertNotEqual(memory, MAP_FAILED)
        defer { munmap(memory, page) }
        munmap(memory + page, page)
        memset(memory, Int32(X86Instruction.nop), page)
        mprotect(memory, page, PROT_READ | PROT_EXEC)
        let nearEnd = UInt(bitPattern: memory) + UInt(page) - 8
        guard case .unreadable? = Self.failure(LeafCallbackAnalysis.analyze(nearEnd)) else {
            return XCTFail("nops into the unmapped page: \(LeafCallbackAnalysis.analyze(nearEnd))")
        }
        // Far from the end, 64 nops without a ret: too long, not a hang.
        guard case .tooManyInstructions? = Self.failure(LeafCallbackAnalysis.analyze(UInt(bitPattern: memory))) else {
            return XCTFail("a page of nops")
        }
    }

    static func failure(_ result: Result<LeafCallback, LeafRejection>) -> LeafRejection? {
        if case let .failure(reason) = result { return reason }
        return nil
    }

    func testRegistersOfBothConventionsSurviveALeafStubWhoseCallbackClobbersEveryScratchRegister() throws {
        let contract = try CallingConventionTests.Contract()
        let library = try TrampolineFixtures.library("ltfix_leaf_clobber", sources: ["leaf_clobber.S"])
        let clobber = TrampolineFixtures.symbol(library, "lt_leaf_clobber_callback", as: OpsCallback.self)
        let calls = TrampolineFixtures.address(library, "lt_leaf_clobber_calls").assumingMemoryBound(to: UInt64.self)
        let seenIP = TrampolineFixtures.address(library, "lt_leaf_clobber_ip").assumingMemoryBound(to: UInt.self)
        let seenParent = TrampolineFixtures.address(library, "lt_leaf_clobber_parent").assumingMemoryBound(to: UInt.self)
        let seenOps = TrampolineFixtures.address(library, "lt_leaf_clobber_ops").assumingMemoryBound(to: UInt.self)
        XCTAssertTrue(OpsRegistry.shared.leafStubsEnabled, "LIVETRACE_NO_LEAF must not be set for this test")

        let pattern = CallingConventionTests.registerPattern(5)
        func registers(_ image: [UInt8]) -> [UInt8] { Array(image[0..<104]) + Array(image[112..<240]) }
        XCTAssertEqual(registers(contract.registersAfterCalling("lt_fix_probe", pattern: pattern)), registers(pattern))

        let before = calls.pointee
        let handle = try Tracer.attach(["lt_fix_probe"], callback: clobber)
        let site = try XCTUnwrap(handle.functions.first)
        guard case let .jump(target) = OpsRegistry.shared.instruction(at: site.address) else { return XCTFail("not patched") }
        XCTAssertTrue(OpsRegistry.shared.isLeafStub(target, of: handle.ops), "the clobbering callback must get a leaf stub")
        guard case let .success(leaf)? = OpsRegistry.shared.leafAnalysis(of: handle.ops) else { return XCTFail("no leaf analysis") }
        XCTAssertEqual(leaf.saved, Self.argumentsAndScratch)
        XCTAssertEqual(registers(contract.registersAfterCalling("lt_fix_probe", pattern: pattern)), registers(pattern),
                       "leaf stub")
        XCTAssertEqual(calls.pointee - before, 1)
        XCTAssertEqual(seenIP.pointee, site.address, "ip is the site")
        XCTAssertEqual(seenOps.pointee, UInt(bitPattern: handle.ops.raw), "ops")
        let harness = UInt(bitPattern: TrampolineFixtures.address(contract.handle, "lt_fix_call_with_regs"))
        XCTAssertTrue(seenParent.pointee > harness && seenParent.pointee < harness + 512,
                      "parent_ip is the return address in lt_fix_call_with_regs")
        try handle.detach()

        // The contract's C functions return the same results through it.
        let untraced = (1...5).map { contract.results(seed: $0) }
        let all = try Tracer.attach(CallingConventionTests.contractFunctions, callback: clobber)
        let afterAttach = calls.pointee
        XCTAssertEqual((1...5).map { contract.results(seed: $0) }, untraced, "leaf stub changed a result")
        XCTAssertEqual(calls.pointee - afterAttach, 5 * 12)
        for function in all.functions {
            guard case let .jump(target) = OpsRegistry.shared.instruction(at: function.address) else { return XCTFail("not patched") }
            XCTAssertTrue(OpsRegistry.shared.isLeafStub(target, of: all.ops), function.function)
        }
        try all.detach()
        XCTAssertEqual((1...5).map { contract.results(seed: $0) }, untraced)
    }

    func testLeafStubThatDoesNotFitOneSlotTakesTwoAndCallsThroughALiteral() {
        let site: UInt = 0x7f00_0010_0000
        let stub: UInt = 0x7f00_0000_1040
        let far: UInt = 0x5555_0000_2000
        let every = GPRSet.callerSaved.subtracting(GPRSet(.rcx))
        let callback = LeafCallback(entry: far, mentioned: every, codeRanges: [far...far + 1], instructionCount: 1)
        let bytes = StubX86_64.leafStub(at: stub, site: site, resume: site + 5, ops: 0x1234_5678, callback: callback)
        XCTAssertEqual(bytes.count, 2 * JITMemory.slotSize)
        let literal = StubX86_64.littleEndian(UInt64(far))
        XCTAssertTrue((0...(bytes.count - 8)).contains { Array(bytes[$0..<$0 + 8]) == literal }, "the callback literal")
        // Near callback: one slot, a direct call.
        let near = LeafCallback(entry: site + 0x1000, mentioned: every, codeRanges: [], instructionCount: 1)
        XCTAssertEqual(StubX86_64.leafStub(at: stub, site: site, resume: site + 5, ops: 0x1234_5678, callback: near).count, JITMemory.slotSize)
    }

    func testCallbackBeyondTwoGiBIsCalledThroughALiteralInATwoSlotLeafStub() throws {
        let contract = try CallingConventionTests.Contract()
        let library = try TrampolineFixtures.library("ltfix_leaf_clobber", sources: ["leaf_clobber.S"])
        let start = TrampolineFixtures.address(library, "lt_leaf_pic_callback")
        let end = TrampolineFixtures.address(library, "lt_leaf_pic_callback_end")
        let length = end - start
        // A page far below the libraries (which sit near 0x7f...).
        let page = Int(getpagesize())
        var far: UnsafeMutableRawPointer?
        for candidate in stride(from: UInt(0x2000_0000), to: 0x8000_0000, by: 0x1000_0000) {
            let mapped = mmap(UnsafeMutableRawPointer(bitPattern: candidate), page, PROT_READ | PROT_WRITE,
                              MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0)
            if mapped != MAP_FAILED, mapped == UnsafeMutableRawPointer(bitPattern: candidate) { far = mapped; break }
        }
        let code = try XCTUnwrap(far, "no free page below 2 GiB")
        // Never unmapped: a retired stub may still be between its call and
        // the callback's ret for the length of a grace period.
        code.copyMemory(from: start, byteCount: length)
        XCTAssertEqual(mprotect(code, page, PROT_READ | PROT_EXEC), 0)
        let callback = unsafeBitCast(code, to: OpsCallback.self)
        let data = UnsafeMutablePointer<UInt>.allocate(capacity: 3)
        data.initialize(repeating: 0, count: 3)
        defer { data.deallocate() }

        let pattern = CallingConventionTests.registerPattern(9)
        func registers(_ image: [UInt8]) -> [UInt8] { Array(image[0..<104]) + Array(image[112..<240]) }
        let ops = try Ops(callback: callback, data: UnsafeMutableRawPointer(data), flags: [])
        OpsRegistry.shared.adopt(ops)
        defer { OpsRegistry.shared.destroy(ops) }
        try OpsRegistry.shared.addFilter(.glob("lt_fix_probe"), to: ops)
        try OpsRegistry.shared.register(ops)
        let site = try XCTUnwrap(OpsRegistry.shared.attachedSites(of: ops).first)
        guard case let .jump(target) = OpsRegistry.shared.instruction(at: site.address) else { return XCTFail("not patched") }
        XCTAssertTrue(OpsRegistry.shared.isLeafStub(target, of: ops), "\(String(describing: OpsRegistry.shared.leafAnalysis(of: ops)))")
        XCTAssertGreaterThan(abs(Int64(bitPattern: UInt64(target)) - Int64(bitPattern: UInt64(UInt(bitPattern: code)))), Int64(Int32.max))
        XCTAssertEqual(OpsRegistry.shared.stubSlotCount(at: site.address, of: ops), 2, "a far callback mentioning every scratch register needs two slots")
        XCTAssertEqual(registers(contract.registersAfterCalling("lt_fix_probe", pattern: pattern)), registers(pattern))
        XCTAssertEqual(data[0], 1)
        XCTAssertEqual(data[1], site.address, "ip")
        let harness = UInt(bitPattern: TrampolineFixtures.address(contract.handle, "lt_fix_call_with_regs"))
        XCTAssertTrue(data[2] > harness && data[2] < harness + 512, "parent_ip")
        try OpsRegistry.shared.unregister(ops)
        _ = contract.registersAfterCalling("lt_fix_probe", pattern: pattern)
        XCTAssertEqual(data[0], 1, "called after unregister")
    }

    func testUnregisterAndDestroyReturnOnlyWhenNoThreadRunsTheLeafCallbackOrReadsItsOps() throws {
        let load = try LoadTests.Load()
        let calls = TrampolineFixtures.address(load.handle, "lt_load_leaf_calls").assumingMemoryBound(to: UInt64.self)
        let badOps = TrampolineFixtures.address(load.handle, "lt_load_leaf_bad_ops").assumingMemoryBound(to: UInt64.self)
        let reader = TrampolineFixtures.symbol(load.handle, "lt_load_ops_reader_callback", as: OpsCallback.self)
        XCTAssertEqual(load.start(Int32(LoadTests.workers), 0), 0)
        defer { load.stop() }
        let cycles = LoadTests.soak ? 2_000 : 100
        var leafCycles = 0
        for cycle in 0..<cycles {
            let ops = try Ops(callback: reader, data: nil, flags: [])
            OpsRegistry.shared.adopt(ops)
            try OpsRegistry.shared.addFilter(.glob("lt_load_f"), to: ops)
            try OpsRegistry.shared.register(ops)
            if let site = OpsRegistry.shared.attachedSites(of: ops).first,
               case let .jump(target) = OpsRegistry.shared.instruction(at: site.address),
               OpsRegistry.shared.isLeafStub(target, of: ops) {
                leafCycles += 1
            }
            let entered = calls.pointee
            while calls.pointee == entered { sched_yield() }
            try OpsRegistry.shared.unregister(ops)
            let after = calls.pointee
            for _ in 0..<20 { sched_yield() }
            XCTAssertEqual(calls.pointee, after, "cycle \(cycle): the callback ran after unregister returned")
            // A grace period followed the unpublication: destroy frees the
            // ops at once, and no thread may read it through rdx any more.
            OpsRegistry.shared.destroy(ops)
            for _ in 0..<20 { sched_yield() }
            XCTAssertEqual(calls.pointee, after, "cycle \(cycle): the callback ran after destroy")
            if calls.pointee != after { break }
        }
        XCTAssertEqual(badOps.pointee, 0, "a leaf callback read an ops that was no longer alive")
        XCTAssertEqual(leafCycles, cycles, "the reader callback must run through its leaf stub")
    }
}
