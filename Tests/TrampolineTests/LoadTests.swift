// Ops changing while threads run the sites flat out: the seed's scenario
// (one ops → iterator → one ops, thousands of times), live patching under
// load, and attach/detach churn with bounded memory.
import Glibc
import LiveTrace
import TestSupport
import XCTest

final class LoadTests: XCTestCase {
    struct Load {
        let handle: UnsafeMutableRawPointer
        let start: @convention(c) (Int32, Int32) -> Int32
        let stopFunction: @convention(c) () -> Int32
        let snapshotFunction: @convention(c) (UnsafeMutablePointer<UInt64>, Int32) -> Void
        let countA: UnsafeMutablePointer<UInt64>
        let countB: UnsafeMutablePointer<UInt64>
        let callbackA: OpsCallback
        let callbackB: OpsCallback

        init() throws {
            handle = try TrampolineFixtures.library("ltfix_load", sources: ["load.c"])
            start = TrampolineFixtures.symbol(handle, "lt_load_start", as: (@convention(c) (Int32, Int32) -> Int32).self)
            stopFunction = TrampolineFixtures.symbol(handle, "lt_load_stop", as: (@convention(c) () -> Int32).self)
            snapshotFunction = TrampolineFixtures.symbol(handle, "lt_load_snapshot", as: (@convention(c) (UnsafeMutablePointer<UInt64>, Int32) -> Void).self)
            countA = TrampolineFixtures.address(handle, "lt_load_count_a").assumingMemoryBound(to: UInt64.self)
            countB = TrampolineFixtures.address(handle, "lt_load_count_b").assumingMemoryBound(to: UInt64.self)
            callbackA = TrampolineFixtures.symbol(handle, "lt_load_count_a_callback", as: OpsCallback.self)
            callbackB = TrampolineFixtures.symbol(handle, "lt_load_count_b_callback", as: OpsCallback.self)
        }

        struct Progress { var started: UInt64; var finished: UInt64; var lastOldIndex: UInt64; var oldCalls: UInt64; var newCalls: UInt64 }

        /// Stops the workers (idempotent: every test also defers it).
        func stop() { _ = stopFunction() }

        func snapshot(workers: Int) -> [Progress] {
            var raw = [UInt64](repeating: 0, count: 5 * workers)
            raw.withUnsafeMutableBufferPointer { snapshotFunction($0.baseAddress!, Int32(workers)) }
            return (0..<workers).map { Progress(started: raw[5 * $0], finished: raw[5 * $0 + 1], lastOldIndex: raw[5 * $0 + 2], oldCalls: raw[5 * $0 + 3], newCalls: raw[5 * $0 + 4]) }
        }
    }

    static let soak = ProcessInfo.processInfo.environment["LIVETRACE_SOAK"] == "1"
    static let workers = 2

    /// A's callback is a small leaf function: with leaf stubs off it goes
    /// through the generic stub and lean entry.
    func testSeedScenarioPerFunctionToIteratorAndBackLosesAndDuplicatesNothing() throws {
        let registry = OpsRegistry.shared
        let leafWasOn = registry.leafStubsEnabled
        registry.leafStubsEnabled = false
        defer { registry.leafStubsEnabled = leafWasOn }
        try runSeedScenario(leafA: false)
    }

    /// The same with A on its own leaf stub (no E1/E2, no lt_regs) and B
    /// making the site switch between it and the iterator.
    func testSeedScenarioWithALeafStubForALosesAndDuplicatesNothing() throws {
        XCTAssertTrue(OpsRegistry.shared.leafStubsEnabled, "LIVETRACE_NO_LEAF must not be set for this test")
        try runSeedScenario(leafA: true)
    }

    func runSeedScenario(leafA: Bool) throws {
        let load = try Load()
        let cycles = Self.soak ? 20_000 : 1_000
        load.countA.pointee = 0
        let a = try Tracer.attach(["lt_load_f"], callback: load.callbackA)
        let site = try XCTUnwrap(a.functions.first)
        guard case let .jump(perFunctionTarget) = OpsRegistry.shared.instruction(at: site.address) else {
            return XCTFail("A alone must be a call")
        }
        XCTAssertTrue(OpsRegistry.shared.isPerFunctionTrampoline(perFunctionTarget, of: a.ops))
        XCTAssertEqual(OpsRegistry.shared.isLeafStub(perFunctionTarget, of: a.ops), leafA, "A's stub kind")
        XCTAssertEqual(load.start(Int32(Self.workers), 0), 0)
        defer { load.stop() }

        var insideCalls: UInt64 = 0
        var windowsWithCalls = 0
        for cycle in 0..<cycles {
            load.countB.pointee = 0
            let finishedBefore = load.snapshot(workers: Self.workers)
            let b = try Tracer.attach(["lt_load_f"], callback: load.callbackB)
            let startedAfterAttach = load.snapshot(workers: Self.workers)
            if cycle == 0 {
                guard case let .jump(target) = OpsRegistry.shared.instruction(at: site.address) else { return XCTFail("iterator") }
                XCTAssertFalse(OpsRegistry.shared.isPerFunctionTrampoline(target, of: a.ops), "two ops must use the iterator")
            }
            // Let the workers run through the window.
            for _ in 0..<50 { sched_yield() }
            let finishedBeforeDetach = load.snapshot(workers: Self.workers)
            try b.detach()
            let startedAfterDetach = load.snapshot(workers: Self.workers)
            let counted = load.countB.pointee
            // Strictly inside: started after attach returned, finished before detach began.
            var lower: UInt64 = 0, upper: UInt64 = 0
            for t in 0..<Self.workers {
                if finishedBeforeDetach[t].finished > startedAfterAttach[t].started {
                    lower += finishedBeforeDetach[t].finished - startedAfterAttach[t].started
                }
                upper += startedAfterDetach[t].started - finishedBefore[t].finished
            }
            XCTAssertGreaterThanOrEqual(counted, lower, "cycle \(cycle): B missed a call made strictly inside its window")
            XCTAssertLessThanOrEqual(counted, upper, "cycle \(cycle): B counted a call outside its window")
            if counted < lower || counted > upper { break }
            insideCalls += lower
            if lower > 0 { windowsWithCalls += 1 }
            guard case .jump(perFunctionTarget) = OpsRegistry.shared.instruction(at: site.address) else {
                return XCTFail("after B detached, the site must call A's own trampoline again")
            }
        }
        load.stop()
        let made = load.snapshot(workers: Self.workers).reduce(0) { $0 + $1.finished }
        try a.detach()
        XCTAssertEqual(load.countA.pointee, made, "A must count exactly every call made")
        XCTAssertGreaterThan(windowsWithCalls, cycles / 10, "the workers must actually run inside B's windows")
        print("seed scenario (A \(leafA ? "leaf stub" : "generic stub")): \(cycles) cycles, \(made) calls, \(insideCalls) strictly inside B's windows (\(windowsWithCalls) windows with calls)")
    }

    func testLivePatchingUnderLoadNoCallRunsTheOldBodyAfterReplaceReturns() throws {
        let load = try Load()
        let cycles = Self.soak ? 5_000 : 300
        XCTAssertEqual(load.start(Int32(Self.workers), 1), 0)
        defer { load.stop() }
        let fixed = TrampolineFixtures.address(load.handle, "lt_load_fixed")
        var newCallsInWindows: UInt64 = 0
        for cycle in 0..<cycles {
            let replacement = try Tracer.replace("lt_load_buggy", with: fixed)
            let afterReplace = load.snapshot(workers: Self.workers)
            for _ in 0..<20 { sched_yield() }
            let beforeRestore = load.snapshot(workers: Self.workers)
            for t in 0..<Self.workers {
                // Call number `started` was in flight when replace returned: it
                // may be inside the old body. Every later call must not be.
                XCTAssertLessThanOrEqual(beforeRestore[t].lastOldIndex, afterReplace[t].started,
                                         "cycle \(cycle), thread \(t): call \(beforeRestore[t].lastOldIndex) ran the old body after the replacement returned")
                newCallsInWindows += beforeRestore[t].newCalls - afterReplace[t].newCalls
            }
            try replacement.detach()
        }
        load.stop()
        XCTAssertGreaterThan(newCallsInWindows, 0, "the replacement must have run")
        print("live patching: \(cycles) replace/restore cycles, \(newCallsInWindows) calls to the fixed body inside the windows")
    }

    func testAttachDetachChurnWithThreadsRunningKeepsMemoryBounded() throws {
        let load = try Load()
        // 100,000 in soak mode (LIVETRACE_SOAK=1): every cycle is two text
        // pokes, milliseconds each when the two cores are shared.
        let cycles = Self.soak ? 100_000 : 5_000
        load.countA.pointee = 0
        let a = try Tracer.attach(["lt_load_f"], callback: load.callbackA)
        if let site = a.functions.first, case let .jump(target) = OpsRegistry.shared.instruction(at: site.address) {
            XCTAssertEqual(OpsRegistry.shared.isLeafStub(target, of: a.ops), OpsRegistry.shared.leafStubsEnabled, "A's leaf stub")
        }
        XCTAssertEqual(load.start(Int32(Self.workers), 0), 0)
        defer { load.stop() }
        var baseline: (Int, OpsRegistry.Statistics)? = nil
        let clock = ContinuousClock()
        let began = clock.now
        for cycle in 0..<cycles {
            // Alternate between the C-callback and closure kinds of ops; the
            // C callback also gets lt_load_buggy, where it is alone: a leaf
            // stub built and retired every other cycle.
            let b: TraceHandle
            if cycle % 2 == 0 {
                b = try Tracer.attach(["lt_load_f", "lt_load_buggy"], callback: load.callbackB)
                if cycle == 0 {
                    let alone = try XCTUnwrap(b.functions.first { $0.function == "lt_load_buggy" })
                    guard case let .jump(target) = OpsRegistry.shared.instruction(at: alone.address) else { return XCTFail("lt_load_buggy") }
                    XCTAssertEqual(OpsRegistry.shared.isLeafStub(target, of: b.ops), OpsRegistry.shared.leafStubsEnabled,
                                   "B alone on lt_load_buggy: its own leaf stub")
                }
            } else {
                b = try Tracer.attach("lt_load_f") { _ in }
            }
            // Every 10th detach waits for quiescence; the others leave the
            // reclamation to the registry's batched grace periods.
            try b.detach(waitForQuiescence: cycle % 10 == 0)
            if cycle == min(1_000, cycles / 5) { baseline = (Self.residentPages(), OpsRegistry.shared.statistics) }
        }
        let elapsed = clock.now - began
        load.stop()
        let made = load.snapshot(workers: Self.workers).reduce(0) { $0 + $1.finished }
        try a.detach()
        XCTAssertEqual(load.countA.pointee, made, "A must count every call through every transition")
        let stats = OpsRegistry.shared.statistics
        let (pagesAt1000, statsAt1000) = try XCTUnwrap(baseline)
        XCTAssertEqual(stats.jitRegions, statsAt1000.jitRegions, "JIT regions must not grow with churn")
        XCTAssertLessThan(stats.retiredItems, OpsRegistry.retiredBatchSize, "retired items must be reclaimed in batches")
        XCTAssertEqual(stats.liveOps, 1, "only A's ops may be alive")
        let growthKiB = (Self.residentPages() - pagesAt1000) * Int(getpagesize()) / 1024
        XCTAssertLessThan(growthKiB, 8 * 1024, "resident memory grew by \(growthKiB) KiB after cycle 1,000")
        print("churn: \(cycles) attach/detach cycles in \(elapsed), \(made) calls counted exactly, RSS growth \(growthKiB) KiB, \(stats.gracePeriods) grace periods")
    }

    static func residentPages() -> Int {
        guard let text = try? String(contentsOfFile: "/proc/self/statm", encoding: .utf8) else { return 0 }
        let fields = text.split(separator: " ")
        return fields.count > 1 ? Int(fields[1]) ?? 0 : 0
    }
}
