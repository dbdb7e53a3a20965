// The transition test the project was founded on: threads run a
// site at full speed while the main thread switches it, and not one call is
// lost, duplicated, or sent to the old target.
import CLiveTraceShims
import Foundation
import LiveTrace
import TestSupport
import XCTest

final class SeedTransitionTests: XCTestCase {
    let poker = TextPoker.shared

    override func setUp() {
        super.setUp()
        poker.configuration = TextPoker.Configuration()
    }

    override func tearDown() {
        poker.configuration = TextPoker.Configuration()
        super.tearDown()
    }

    /// Runs `transitions` switches call A <-> call B with 5 workers (3 plain,
    /// one with every signal blocked, one calling from a signal handler whose
    /// sa_mask blocks everything), then checks every thread's counts.
    private func switchCallTargets(transitions: Int, file: StaticString = #filePath, line: UInt = #line) throws {
        XCTAssertEqual(lt_sigmask_interposition_active(), 1, "the interposed sigaction must be the one libraries reach", file: file, line: line)
        let seed = try SeedFixture()
        let first = poker.apply([SiteTransition(site: seed.site, to: .call(seed.targetA))])
        XCTAssertEqual(first.patchedCount, 1, "\(first.failed)", file: file, line: line)
        let trapsBefore = poker.trapCounters.emulated_calls
        let workers = seed.start(plainWorkers: 3)
        XCTAssertEqual(workers, 5, file: file, line: line)
        var current = seed.targetA
        for _ in 0..<transitions {
            current = current == seed.targetA ? seed.targetB : seed.targetA
            let r = poker.apply([SiteTransition(site: seed.site, to: .call(current))])
            if r.patchedCount != 1 {
                XCTFail("transition failed: \(r.failed) \(r.skipped)", file: file, line: line)
                break
            }
        }
        seed.stop()
        for w in 0..<workers {
            let made = seed.counter(w, .made)
            let counted = seed.counter(w, .a) + seed.counter(w, .b)
            XCTAssertGreaterThan(made, 0, "worker \(w) made no call", file: file, line: line)
            XCTAssertEqual(made, counted, "worker \(w): made \(made), A+B counted \(counted)", file: file, line: line)
            XCTAssertEqual(seed.counter(w, .trapBlocked), 0, "worker \(w) had SIGTRAP really blocked", file: file, line: line)
        }
        let emulated = poker.trapCounters.emulated_calls - trapsBefore
        XCTAssertGreaterThan(emulated, 0, "no thread ever trapped on a site in flight: the test did not test the handler", file: file, line: line)
        print("seed A<->B: \(transitions) transitions, \(seed.totalMade()) calls, \(emulated) emulated by the trap handler")
        XCTAssertEqual(poker.apply([SiteTransition(site: seed.site, to: .nop)]).patchedCount, 1, file: file, line: line)
    }

    func testSwitchingBetweenTwoCallTargetsCountsEveryCallExactlyOnce() throws {
        let rounds = soak ? 50 : 2
        for _ in 0..<rounds {
            try switchCallTargets(transitions: 10_000)
        }
    }

    func testSwitchingWithSignalFallbackSerializationCountsEveryCallExactlyOnce() throws {
        poker.configuration.serialization = .signalEveryThread
        try switchCallTargets(transitions: soak ? 2_000 : 150)
    }

    /// nop <-> call A: a call is never counted that was not made, and every
    /// call made entirely inside a window where the site was stably enabled
    /// is counted; none made in a stably disabled window is.
    func testNopCallTransitionsCountEveryCallMadeWhileStablyEnabled() throws {
        let rounds = soak ? 20 : 1
        for _ in 0..<rounds {
            let seed = try SeedFixture()
            let workers = seed.start(plainWorkers: 3)
            XCTAssertEqual(workers, 5)
            for i in 0..<10_000 {
                let enable = i % 2 == 0
                seed.beginTransition(enabledAfter: enable)
                let r = poker.apply([SiteTransition(site: seed.site, to: enable ? .call(seed.targetA) : .nop)])
                seed.endTransition()
                if r.patchedCount != 1 {
                    XCTFail("transition failed: \(r.failed)")
                    break
                }
            }
            // On a loaded machine a worker (the signal-handler one most of
            // all) may not have run inside any of those short windows: one
            // last enabled window stays open until every worker has made a
            // call in it (bounded), then closes.
            seed.beginTransition(enabledAfter: true)
            XCTAssertEqual(poker.apply([SiteTransition(site: seed.site, to: .call(seed.targetA))]).patchedCount, 1)
            seed.endTransition()
            let deadline = ContinuousClock.now + .seconds(30)
            while (0..<workers).contains(where: { seed.counter($0, .stableOn) == 0 }), ContinuousClock.now < deadline {
                usleep(1_000)
            }
            seed.beginTransition(enabledAfter: false)
            XCTAssertEqual(poker.apply([SiteTransition(site: seed.site, to: .nop)]).patchedCount, 1)
            seed.endTransition()
            seed.stop()
            for w in 0..<workers {
                let made = seed.counter(w, .made), a = seed.counter(w, .a)
                let on = seed.counter(w, .stableOn), off = seed.counter(w, .stableOff)
                XCTAssertEqual(seed.counter(w, .b), 0)
                XCTAssertLessThanOrEqual(a, made - off, "worker \(w): counted \(a), made \(made), \(off) while stably disabled")
                XCTAssertGreaterThanOrEqual(a, on, "worker \(w): counted \(a) < \(on) made while stably enabled")
                XCTAssertGreaterThan(on, 0, "worker \(w) never ran inside an enabled window")
            }
            XCTAssertEqual(poker.currentInstruction(at: seed.site), .nop)
        }
    }

    /// After apply(call A -> call B) returns, A receives no further call
    /// except those already inside it (at most one per thread): the old
    /// ("buggy") function does not keep running.
    func testOldTargetReceivesNoCallAfterSwitchReturns() throws {
        let seed = try SeedFixture()
        let workers = seed.start(plainWorkers: 3)
        defer { seed.stop() }
        for _ in 0..<(soak ? 500 : 40) {
            XCTAssertEqual(poker.apply([SiteTransition(site: seed.site, to: .call(seed.targetA))]).patchedCount, 1)
            usleep(1000)
            XCTAssertEqual(poker.apply([SiteTransition(site: seed.site, to: .call(seed.targetB))]).patchedCount, 1)
            let aAtSwitch = seed.totalA()
            let madeAtSwitch = seed.totalMade()
            // Let the workers make progress after the switch; on a loaded
            // 2-core machine that may take far longer than a few ms, so wait
            // for progress (bounded) rather than for a fixed time.
            let deadline = Date().addingTimeInterval(10)
            while seed.totalMade() <= madeAtSwitch + 100 * workers, Date() < deadline {
                usleep(1000)
            }
            let late = seed.totalA() - aAtSwitch
            XCTAssertLessThanOrEqual(late, workers, "A received \(late) calls after the switch to B returned")
            XCTAssertGreaterThan(seed.totalMade(), madeAtSwitch, "workers made no progress in 10 s")
        }
        XCTAssertEqual(poker.apply([SiteTransition(site: seed.site, to: .nop)]).patchedCount, 1)
    }
}
