// The hazards of the text poke protocol (docs/ARCHITECTURE.md, "The text poke"), one test each.
import CLiveTraceShims
import Foundation
import LiveTrace
import TestSupport
import Synchronization
import XCTest

#if canImport(Glibc)
import Glibc
#endif

final class TrapHazardTests: XCTestCase {
    let poker = TextPoker.shared

    override func setUp() {
        super.setUp()
        poker.configuration = TextPoker.Configuration()
    }

    private struct ProgramCounts {
        var madeRaise = 0, handledRaise = 0, madeInt3 = 0, handledInt3 = 0, handledOther = 0
    }

    private func programCounts(_ lib: LoadedFixture) -> ProgramCounts {
        var out = [Int](repeating: 0, count: 5)
        out.withUnsafeMutableBufferPointer {
            lib.function("lt_program_counts", as: (@convention(c) (UnsafeMutablePointer<Int>) -> Void).self)($0.baseAddress!)
        }
        return ProgramCounts(madeRaise: out[0], handledRaise: out[1], madeInt3: out[2], handledInt3: out[3], handledOther: out[4])
    }

    /// Runs transitions on the seed site while the program's trapper thread
    /// hits its own breakpoints; every breakpoint reaches its handler.
    private func breakpointsDuringTransitions(rawInstall: Bool) throws -> BatchResult {
        let seed = try SeedFixture()
        let program = try PokeFixtures.load("program_traps.c", compiler: "gcc", flags: [])
        // Make sure our handler is installed before the program's (for the
        // raw variant: the program then replaces it behind our back).
        XCTAssertTrue(poker.normalize([seed.site]).succeeded)
        let install = program.function("lt_program_install_trap_handler", as: (@convention(c) (Int32) -> Int32).self)
        XCTAssertEqual(install(rawInstall ? 1 : 0), 0)
        XCTAssertEqual(program.function("lt_program_start_trapper", as: (@convention(c) () -> Int32).self)(), 0)
        let firstResult = poker.apply([SiteTransition(site: seed.site, to: .call(seed.targetB))])
        XCTAssertEqual(firstResult.patchedCount, 1)
        let workers = seed.start(plainWorkers: 2)
        for i in 0..<2_000 {
            let r = poker.apply([SiteTransition(site: seed.site, to: i % 2 == 0 ? .call(seed.targetA) : .call(seed.targetB))])
            XCTAssertEqual(r.patchedCount, 1)
        }
        seed.stop()
        program.function("lt_program_stop_trapper", as: (@convention(c) () -> Void).self)()
        for w in 0..<workers {
            XCTAssertEqual(seed.counter(w, .made), seed.counter(w, .a) + seed.counter(w, .b))
        }
        let c = programCounts(program)
        XCTAssertGreaterThan(c.madeRaise, 0)
        XCTAssertEqual(c.madeRaise, c.handledRaise, "raise(SIGTRAP) lost or duplicated")
        XCTAssertEqual(c.madeInt3, c.handledInt3, "the program's int3 lost or duplicated")
        XCTAssertEqual(c.handledOther, 0)
        XCTAssertEqual(poker.apply([SiteTransition(site: seed.site, to: .nop)]).patchedCount, 1)
        return firstResult
    }

    func testProgramBreakpointsReachTheProgramsHandlerDuringTransitions() throws {
        _ = try breakpointsDuringTransitions(rawInstall: false)
    }

    func testHandlerReplacedBehindOurBackIsReinstalledAndForwardedTo() throws {
        let first = try breakpointsDuringTransitions(rawInstall: true)
        XCTAssertTrue(first.handlerReinstalled, "the batch did not notice that its SIGTRAP handler was replaced")
    }

    /// pthread_sigmask/sigprocmask/sigaction as the program calls them never
    /// leave SIGTRAP (or the sync signal) blocked.
    func testBlockingEverySignalLeavesSIGTRAPUnblocked() throws {
        XCTAssertEqual(lt_sigmask_interposition_active(), 1)
        XCTAssertTrue(poker.normalize([]).succeeded) // installs the handlers
        let result = try runOnNewThread { () -> (Bool, Bool, Bool) in
            var all = sigset_t(), old = sigset_t(), now = sigset_t()
            sigfillset(&all)
            pthread_sigmask(SIG_BLOCK, &all, &old)
            _ = lt_sys_rt_sigprocmask(SIG_BLOCK, nil, &now)
            let trapAfterPthread = sigismember(&now, SIGTRAP) == 1
            let syncAfterPthread = sigismember(&now, lt_trap_sync_signal()) == 1
            sigprocmask(SIG_SETMASK, &all, nil)
            _ = lt_sys_rt_sigprocmask(SIG_BLOCK, nil, &now)
            let trapAfterProc = sigismember(&now, SIGTRAP) == 1
            return (trapAfterPthread, syncAfterPthread, trapAfterProc)
        }
        XCTAssertFalse(result.0, "pthread_sigmask blocked SIGTRAP")
        XCTAssertFalse(result.1, "pthread_sigmask blocked the sync signal")
        XCTAssertFalse(result.2, "sigprocmask blocked SIGTRAP")

        var act = sigaction(), readBack = sigaction()
        sigfillset(&act.sa_mask)
        act.__sigaction_handler.sa_handler = SIG_IGN
        XCTAssertEqual(sigaction(SIGUSR1, &act, nil), 0)
        XCTAssertEqual(lt_sys_libc_sigaction(SIGUSR1, nil, &readBack), 0)
        XCTAssertEqual(sigismember(&readBack.sa_mask, SIGTRAP), 0, "a handler's sa_mask blocks SIGTRAP")
        XCTAssertEqual(sigismember(&readBack.sa_mask, SIGINT), 1)
    }

    /// gcc's five 1-byte nops become one 5-byte nop while threads run them;
    /// threads stopped between the nops are moved past them first.
    func testFiveOneByteNopsAreNormalizedWhileThreadsRunThem() throws {
        let rounds = soak ? 10 : 1
        var rescued = 0
        for _ in 0..<rounds {
            let lib = try PokeFixtures.load("nop1x5_sites.c", compiler: "gcc", flags: ["-fpatchable-function-entry=5"])
            let count = Int(lib.function("lt_nop_site_count", as: (@convention(c) () -> Int32).self)())
            let addressOf = lib.function("lt_nop_site_address", as: (@convention(c) (Int32) -> UInt).self)
            let sites = (0..<count).map { PokeFixtures.site(function: addressOf(Int32($0)), kind: .nop1x5, name: "lt_nop_site_\($0)") }
            for s in sites { XCTAssertEqual(CodeWriter.read(s.address, count: 5), X86SiteEncoding.nop1x5) }
            let start = lib.function("lt_nop_start", as: (@convention(c) (Int32) -> Int32).self)
            XCTAssertEqual(start(3), 3)
            usleep(10_000)
            // One batch per site: many rescue rounds.
            for s in sites {
                let r = poker.normalize([s])
                XCTAssertEqual(r.patchedCount, 1, "\(r.failed)")
                rescued += r.threadsRescued
            }
            for s in sites {
                XCTAssertEqual(CodeWriter.read(s.address, count: 5), X86SiteEncoding.nop5)
                XCTAssertEqual(poker.currentInstruction(at: s), .nop)
            }
            // The normalized sites then patch like any other.
            let target = lib.address("lt_nop_target")
            for i in 0..<200 {
                let r = poker.apply(sites.map { SiteTransition(site: $0, to: i % 2 == 0 ? .call(target) : .nop) })
                XCTAssertEqual(r.patchedCount, sites.count)
            }
            lib.function("lt_nop_stop", as: (@convention(c) () -> Void).self)()
            let made = lib.function("lt_nop_made", as: (@convention(c) (Int32) -> Int).self)
            let counted = lib.function("lt_nop_counted", as: (@convention(c) (Int32) -> Int).self)
            for w in 0..<3 {
                XCTAssertGreaterThan(made(Int32(w)), 0)
                XCTAssertLessThanOrEqual(counted(Int32(w)), made(Int32(w)))
            }
        }
        // Threads rarely stop between the nops by chance (int3 stops new
        // arrivals at once); the next test holds one there on purpose.
        print("nop1x5: \(rescued) threads moved out of five 1-byte nops by chance")
    }

    /// A thread held (by a ptrace helper) with its PC between the five nops
    /// while they are rewritten is moved past them by its sync handler, and
    /// runs on unharmed.
    func testThreadStoppedBetweenTheNopsIsMovedPastThem() throws {
        let tracer = try Fixtures.compile(["poke/rescue_tracer.c"], compiler: "gcc", flags: ["-O2"], output: "rescue_tracer")
        let lib = try PokeFixtures.load("nop1x5_sites.c", compiler: "gcc", flags: ["-fpatchable-function-entry=5"])
        let addressOf = lib.function("lt_nop_site_address", as: (@convention(c) (Int32) -> UInt).self)
        let site = PokeFixtures.site(function: addressOf(7), kind: .nop1x5, name: "lt_nop_site_07")
        XCTAssertEqual(lib.function("lt_nop_start", as: (@convention(c) (Int32) -> Int32).self)(1), 1)
        let made = lib.function("lt_nop_made", as: (@convention(c) (Int32) -> Int).self)
        let tidOf = lib.function("lt_nop_worker_tid", as: (@convention(c) (Int32) -> Int32).self)
        while tidOf(0) == 0 { usleep(1000) }
        XCTAssertTrue(poker.normalize([]).succeeded) // handlers installed first

        let process = Process()
        process.executableURL = URL(fileURLWithPath: tracer)
        process.arguments = [String(tidOf(0)), String(site.address, radix: 16)]
        let out = Pipe()
        process.standardOutput = out
        try process.run()
        var text = ""
        while !text.contains("\n") {
            let chunk = out.fileHandleForReading.availableData
            if chunk.isEmpty { break }
            text += String(decoding: chunk, as: UTF8.self)
        }
        XCTAssertTrue(text.hasPrefix("ready "), "tracer: \(text)")
        let heldAt = UInt(text.dropFirst(6).prefix { $0 != "\n" }, radix: 16) ?? 0
        XCTAssertTrue(heldAt > site.address && heldAt < site.address + 5)

        let before = poker.trapCounters.rescued
        let r = poker.normalize([site])
        XCTAssertEqual(r.patchedCount, 1, "\(r.failed)")
        XCTAssertEqual(r.threadsRescued, 1)
        XCTAssertEqual(poker.trapCounters.rescued - before, 1)
        process.waitUntilExit()
        let rest = String(decoding: out.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        XCTAssertEqual(process.terminationStatus, 0, "tracer: \(text)\(rest)")
        XCTAssertTrue((text + rest).contains("delivered \(lt_trap_sync_signal())"), "tracer: \(text)\(rest)")

        // The worker runs on through the rewritten site.
        let madeAfter = made(0)
        usleep(20_000)
        XCTAssertGreaterThan(made(0), madeAfter)
        XCTAssertEqual(CodeWriter.read(site.address, count: 5), X86SiteEncoding.nop5)
        lib.function("lt_nop_stop", as: (@convention(c) () -> Void).self)()
    }

    /// `call __fentry__` (clang: e8) and `call *__fentry__@GOTPCREL(%rip)`
    /// (gcc PIC: ff 15) become nops; then they patch like any other site.
    func testFentryCallsAreNormalizedToNops() throws {
        let variants: [(String, [String], SiteKind, Int)] = [
            ("clang", ["-pg", "-mfentry", "-Wl,-Bsymbolic"], .callFentry, 5),
            ("gcc", ["-pg", "-mfentry", "-Wl,--no-relax", "-Wl,-Bsymbolic"], .callFentryGOT, 6),
            ("gcc", ["-pg", "-mfentry", "-Wl,-Bsymbolic"], .callFentryGOT, 6), // relaxed to 67 e8
        ]
        for (compiler, flags, kind, length) in variants {
            let lib = try PokeFixtures.load("fentry_sites.c", compiler: compiler, flags: flags)
            let function = lib.address("lt_fentry_site")
            let site = PokeFixtures.site(function: function, kind: kind, name: "lt_fentry_site")
            let call = lib.function("lt_fentry_site", as: (@convention(c) (UnsafeMutablePointer<Int>) -> Int).self)
            let fentryCount = lib.function("lt_fentry_count", as: (@convention(c) () -> Int).self)
            var counter = 0
            let before = fentryCount()
            XCTAssertEqual(call(&counter), 42)
            XCTAssertEqual(fentryCount(), before + 1, "\(compiler): __fentry__ not called before normalization")
            XCTAssertNil(poker.currentInstruction(at: site), "\(compiler): not yet normal form")

            let r = poker.normalize([site])
            XCTAssertEqual(r.patchedCount, 1, "\(compiler) \(flags): \(r.failed)")
            let bytes = CodeWriter.read(site.address, count: length)
            XCTAssertEqual(Array(bytes[0..<5]), X86SiteEncoding.nop5)
            if length == 6 { XCTAssertEqual(bytes[5], X86SiteEncoding.nop1) }
            let afterNormal = fentryCount()
            XCTAssertEqual(call(&counter), 42)
            XCTAssertEqual(fentryCount(), afterNormal, "\(compiler): __fentry__ still called")

            let target = lib.address("lt_fentry_target")
            XCTAssertEqual(poker.apply([SiteTransition(site: site, to: .call(target))]).patchedCount, 1)
            XCTAssertEqual(call(&counter), 42)
            XCTAssertEqual(counter, 1)
            XCTAssertEqual(poker.currentInstruction(at: site), .call(target))
            XCTAssertEqual(poker.apply([SiteTransition(site: site, to: .nop)]).patchedCount, 1)
            XCTAssertEqual(call(&counter), 42)
            XCTAssertEqual(counter, 1)
        }
    }

    /// gcc's 6-byte GOT form going straight to a call, in one batch (the
    /// normalization fused with it), while a thread calls the function flat
    /// out: a thread that traps in flight is emulated as the call and
    /// returns past the sixth byte, which is still the old displacement's
    /// last until the batch writes it. Then off, and the compiler's bytes
    /// given back, hundreds of times. No call goes astray: every call
    /// returns 42, and each is either the target's, `__fentry__`'s or none.
    func testGotFentrySiteGoesStraightToACallInOneBatchUnderLoad() throws {
        let lib = try PokeFixtures.load("fentry_sites.c", compiler: "gcc", flags: ["-pg", "-mfentry", "-Wl,--no-relax", "-Wl,-Bsymbolic"])
        let site = PokeFixtures.site(function: lib.address("lt_fentry_site"), kind: .callFentryGOT, name: "lt_fentry_site")
        let call = lib.function("lt_fentry_site", as: (@convention(c) (UnsafeMutablePointer<Int>) -> Int).self)
        let fentryCount = lib.function("lt_fentry_count", as: (@convention(c) () -> Int).self)
        let target = lib.address("lt_fentry_target")
        let original = CodeWriter.read(site.address, count: 6)
        XCTAssertEqual(Array(original[0..<2]), X86SiteEncoding.callIndirectRipRelative)

        final class Worker: @unchecked Sendable {
            let stop = Atomic<Bool>(false)
            let done = Atomic<Bool>(false)
            var calls = 0, wrong = 0
            let counter = UnsafeMutablePointer<Int>.allocate(capacity: 1)
            init() { counter.initialize(to: 0) }
            deinit { counter.deallocate() }
        }
        let worker = Worker()
        let fentryBefore = fentryCount()
        Thread.detachNewThread {
            while !worker.stop.load(ordering: .acquiring) {
                if call(worker.counter) != 42 { worker.wrong += 1 }
                worker.calls += 1
            }
            worker.done.store(true, ordering: .releasing)
        }
        for round in 0..<300 {
            let on = poker.apply([SiteTransition(site: site, to: .call(target))])
            XCTAssertEqual(on.patchedCount, 1, "round \(round): \(on.failed)")
            XCTAssertEqual(on.serializations, 3, "round \(round): one batch, not a normalization and an enabling")
            let enabled = CodeWriter.read(site.address, count: 6)
            XCTAssertEqual(enabled[0], X86SiteEncoding.callRel32Opcode)
            XCTAssertEqual(enabled[5], X86SiteEncoding.nop1)
            XCTAssertEqual(poker.apply([SiteTransition(site: site, to: .nop)]).patchedCount, 1, "round \(round)")
            XCTAssertEqual(poker.restoreOriginal([site]).patchedCount, 1, "round \(round)")
            XCTAssertEqual(CodeWriter.read(site.address, count: 6), original, "round \(round)")
            if on.patchedCount != 1 { break }
        }
        worker.stop.store(true, ordering: .releasing)
        while !worker.done.load(ordering: .acquiring) { usleep(1000) }
        XCTAssertEqual(worker.wrong, 0)
        XCTAssertGreaterThan(worker.calls, 0)
        let counted = worker.counter.pointee + (fentryCount() - fentryBefore)
        XCTAssertLessThanOrEqual(counted, worker.calls, "a call counted twice")
        XCTAssertGreaterThan(worker.counter.pointee, 0, "no call went through the enabled site")
    }

    /// A SIGTRAP handler that runs late — its thread preempted before the
    /// handler's first instruction, or between its look-up and its read of
    /// the site — while its batch ends and the next one (over the same site)
    /// begins: the handler must not take the next batch's int3 for a
    /// stranger's and forward it (the program would die of SIGTRAP). The
    /// test seam stretches both windows to hundreds of microseconds; every
    /// call still reaches A or B exactly once.
    func testATrapHandledLateWhileTheNextBatchWritesItsInt3IsStillEmulated() throws {
        let seed = try SeedFixture()
        XCTAssertTrue(poker.normalize([seed.site]).succeeded)
        XCTAssertEqual(poker.apply([SiteTransition(site: seed.site, to: .call(seed.targetA))]).patchedCount, 1)
        let before = poker.trapCounters
        lt_trap_test_set_handler_delays(40_000, 60_000)
        defer { lt_trap_test_set_handler_delays(0, 0) }
        let workers = seed.start(plainWorkers: 2)
        let clock = ContinuousClock()
        let deadline = clock.now + .seconds(20)
        var rounds = 0
        while rounds < 3_000 && clock.now < deadline {
            let r = poker.apply([SiteTransition(site: seed.site, to: rounds % 2 == 0 ? .call(seed.targetB) : .call(seed.targetA))])
            XCTAssertEqual(r.patchedCount, 1, "round \(rounds): \(r.failed)")
            rounds += 1
            if poker.trapCounters.retried - before.retried >= 20 && rounds >= 500 { break }
        }
        seed.stop()
        lt_trap_test_set_handler_delays(0, 0)
        for w in 0..<workers {
            XCTAssertGreaterThan(seed.counter(w, .made), 0)
            XCTAssertEqual(seed.counter(w, .made), seed.counter(w, .a) + seed.counter(w, .b), "worker \(w): a call lost or doubled")
        }
        let after = poker.trapCounters
        XCTAssertEqual(after.forwarded, before.forwarded, "a trap of ours was forwarded")
        XCTAssertGreaterThan(after.retried, before.retried, "no look-up met an exchange of the table: the window was not exercised")
        print("late trap handlers: \(rounds) batches, \(after.emulated_calls - before.emulated_calls) emulated, "
              + "\(after.stale - before.stale) stale, \(after.retried - before.retried) look-ups repeated")
        XCTAssertEqual(poker.apply([SiteTransition(site: seed.site, to: .nop)]).patchedCount, 1)
    }

    /// Partial success is reported per site, and a site that does not verify
    /// is never written.
    func testBatchReportsSkippedAndFailedSitesAndWritesNothingUnverified() throws {
        let seed = try SeedFixture()
        let good = seed.site
        var rejected = good
        rejected.address = seed.targetB
        rejected.rejection = .noFunction
        var unsupported = good
        unsupported.address = seed.targetB
        unsupported.kind = .none
        // targetA's bytes are `incq (%rdi); ret`, not a nop: must fail.
        let wrongBytes = PokeFixtures.site(function: seed.targetA, kind: .nop5, name: "lt_seed_target_a")
        let bytesBefore = CodeWriter.read(seed.targetA, count: 5)

        let r = poker.apply([
            SiteTransition(site: good, to: .call(seed.targetA)),
            SiteTransition(site: good, to: .call(seed.targetB)),
            SiteTransition(site: rejected, to: .nop),
            SiteTransition(site: unsupported, to: .nop),
            SiteTransition(site: wrongBytes, to: .call(seed.targetB)),
        ])
        XCTAssertEqual(r.patched.map(\.address), [good.address])
        XCTAssertEqual(r.skippedCount, 3)
        XCTAssertTrue(r.skipped.contains { $0.problem == .duplicateInBatch })
        XCTAssertTrue(r.skipped.contains { $0.problem == .rejectedSite(.noFunction) })
        XCTAssertTrue(r.skipped.contains { $0.problem == .unsupportedKind(.none) })
        XCTAssertEqual(r.failedCount, 1)
        if case .bytesMismatch = r.failed.first?.problem {} else { XCTFail("\(r.failed)") }
        XCTAssertEqual(CodeWriter.read(seed.targetA, count: 5), bytesBefore)
        XCTAssertEqual(poker.currentInstruction(at: good), .call(seed.targetA))

        // Already in the requested state: unchanged, nothing written.
        let again = poker.apply([SiteTransition(site: good, to: .call(seed.targetA))])
        XCTAssertEqual(again.unchangedCount, 1)
        XCTAssertEqual(again.serializations, 0)

        // A target beyond rel32 reach.
        let far = poker.apply([SiteTransition(site: good, to: .call(good.address &+ (UInt(1) << 40)))])
        XCTAssertEqual(far.failedCount, 1)
        if case .targetOutOfRange = far.failed.first?.problem {} else { XCTFail("\(far.failed)") }

        // Bytes changed behind the poker's back: refused.
        XCTAssertEqual(poker.apply([SiteTransition(site: good, to: .nop)]).patchedCount, 1)
        try overwrite(good.address, with: [0xE8, 0, 0, 0, 0])
        let tampered = poker.apply([SiteTransition(site: good, to: .call(seed.targetA))])
        XCTAssertEqual(tampered.failedCount, 1)
        XCTAssertEqual(CodeWriter.read(good.address, count: 5), [0xE8, 0, 0, 0, 0])
        try overwrite(good.address, with: X86SiteEncoding.nop5)
    }

    /// After batches (mprotect writer and /proc/self/mem writer), no mapping
    /// of the process is writable and executable, and the patched library's
    /// code is r-x again.
    func testNoPageIsWritableAndExecutableAfterBatches() throws {
        for method in [CodeWriter.Method.mprotect, .procSelfMem] {
            poker.configuration.writeMethod = method
            let seed = try SeedFixture()
            XCTAssertEqual(poker.apply([SiteTransition(site: seed.site, to: .call(seed.targetB))]).patchedCount, 1)
            let workers = seed.start(plainWorkers: 2)
            for i in 0..<200 {
                XCTAssertEqual(poker.apply([SiteTransition(site: seed.site, to: i % 2 == 0 ? .call(seed.targetA) : .call(seed.targetB))]).patchedCount, 1)
            }
            seed.stop()
            for w in 0..<workers {
                XCTAssertEqual(seed.counter(w, .made), seed.counter(w, .a) + seed.counter(w, .b), "\(method)")
            }
            XCTAssertEqual(try PokeFixtures.writableExecutableMappings(), [], "\(method)")
            let code = try ProcessMaps.read().first { $0.start <= seed.site.address && seed.site.address < $0.end }
            XCTAssertEqual(code?.executable, true)
            XCTAssertEqual(code?.writable, false)
            XCTAssertEqual(poker.apply([SiteTransition(site: seed.site, to: .nop)]).patchedCount, 1)
        }
    }

    // MARK: - helpers

    private func overwrite(_ address: UInt, with bytes: [UInt8]) throws {
        try CodeWriter(method: .procSelfMem).perform([CodeWriter.Write(address: address, bytes: bytes)], mappings: ProcessMaps.read())
    }

    private func runOnNewThread<T: Sendable>(_ body: @escaping @Sendable () -> T) throws -> T {
        let box = ResultBox<T>()
        let done = DispatchSemaphore(value: 0)
        let thread = Thread {
            box.value = body()
            done.signal()
        }
        thread.start()
        done.wait()
        return box.value!
    }
}

private final class ResultBox<T>: @unchecked Sendable {
    var value: T?
}
