// Calls made from signal handlers that interrupt the tracer (a callback,
// the iterator, a trampoline between E1 and E2) run in an execution context
// of their own (lt_context.h): delivered to every ops exactly once, never
// taken for recursion; a callback that calls a traced function in its own
// context is still skipped and counted. The counts are checked against the
// fixture's own counters (Tests/Fixtures/trampolines/signal_contexts.c).
import CLiveTraceShims
import Glibc
import LiveTrace
import TestSupport
import XCTest

final class SignalContextTests: XCTestCase {
    struct Fixture {
        let start: @convention(c) (Int32) -> Int32
        let stop: @convention(c) () -> Int32
        let callH: @convention(c) (Int32) -> Void
        let reportsOwnHandler: @convention(c) () -> Int32
        let countA: OpsCallback
        let countB: OpsCallback
        let callsTraced: OpsCallback
        let handle: UnsafeMutableRawPointer

        init() throws {
            handle = try TrampolineFixtures.library("ltfix_signal_contexts", sources: ["signal_contexts.c"])
            start = TrampolineFixtures.symbol(handle, "lt_sig_start", as: (@convention(c) (Int32) -> Int32).self)
            stop = TrampolineFixtures.symbol(handle, "lt_sig_stop", as: (@convention(c) () -> Int32).self)
            callH = TrampolineFixtures.symbol(handle, "lt_sig_call_h", as: (@convention(c) (Int32) -> Void).self)
            reportsOwnHandler = TrampolineFixtures.symbol(handle, "lt_sig_reports_own_handler", as: (@convention(c) () -> Int32).self)
            countA = TrampolineFixtures.symbol(handle, "lt_sig_count_a", as: OpsCallback.self)
            countB = TrampolineFixtures.symbol(handle, "lt_sig_count_b", as: OpsCallback.self)
            callsTraced = TrampolineFixtures.symbol(handle, "lt_sig_calls_traced", as: OpsCallback.self)
        }

        func counter(_ name: String) -> UInt64 {
            TrampolineFixtures.address(handle, name).assumingMemoryBound(to: UInt64.self).pointee
        }
    }

    static let soak = ProcessInfo.processInfo.environment["LIVETRACE_SOAK"] == "1"

    /// The scenario: SIGALRM every 100 µs on every worker but one (which
    /// blocks every signal), each run calling g twice, while the
    /// workers call f flat out; A counts both for the whole run while B
    /// attaches and detaches 10,000 times, so the sites switch between A's
    /// per-function trampoline and the iterator under the handlers' feet.
    /// Both ops on the generic (guarded) path: leaf stubs off.
    func testCallsFromHandlersInterruptingCallbacksAreEachDeliveredOnce() throws {
        let fixture = try Fixture()
        let registry = OpsRegistry.shared
        let leafWasOn = registry.leafStubsEnabled
        registry.leafStubsEnabled = false
        defer { registry.leafStubsEnabled = leafWasOn }
        let skippedBefore = lt_skipped_calls()
        let switchesBefore = lt_context_switches()

        let a = try Tracer.attach(["lt_sig_f", "lt_sig_g"], callback: fixture.countA)
        XCTAssertEqual(fixture.start(3), 0, "workers and timers started")
        var stopped = false
        defer { if !stopped { _ = fixture.stop() } }
        // B's detach retires its stubs for a later grace period (every 256
        // retirements, and every 100th cycle waits for one): each cycle is
        // then two text pokes, and 10,000 of them fit in a test.
        let cycles = Self.soak ? 100_000 : 10_000
        let clock = ContinuousClock()
        let began = clock.now
        for cycle in 0..<cycles {
            let b = try Tracer.attach(["lt_sig_f", "lt_sig_g"], callback: fixture.countB)
            try b.detach(waitForQuiescence: cycle % 100 == 99)
        }
        let elapsed = clock.now - began
        _ = fixture.stop()
        stopped = true
        try a.detach()

        let madeF = fixture.counter("lt_sig_made_f"), madeG = fixture.counter("lt_sig_made_g")
        let runs = fixture.counter("lt_sig_handler_runs")
        XCTAssertGreaterThan(runs, 0, "the timers fired")
        XCTAssertGreaterThan(fixture.counter("lt_sig_seen_b"), 0, "B saw calls")
        XCTAssertEqual(fixture.counter("lt_sig_seen_a"), madeF + madeG, "A saw every call made, handlers' included, once")
        XCTAssertEqual(lt_skipped_calls() - skippedBefore, 0, "no call taken for recursion")
        print("signal contexts: \(madeF) calls of f, \(runs) handler runs (\(madeG) calls of g), "
              + "\(lt_context_switches() - switchesBefore) handler runs that interrupted the tracer, \(cycles) attach/detach cycles of B in \(elapsed)")
    }

    /// A callback that calls a traced function in its own context: that
    /// call is recursion, skipped and counted, and the ops watching it does
    /// not see it.
    func testACallbackCallingATracedFunctionIsSkippedAndCounted() throws {
        let fixture = try Fixture()
        let registry = OpsRegistry.shared
        let leafWasOn = registry.leafStubsEnabled
        registry.leafStubsEnabled = false
        defer { registry.leafStubsEnabled = leafWasOn }
        let a = try Tracer.attach(["lt_sig_f"], callback: fixture.countA)
        defer { try? a.detach() }
        let nested = try Tracer.attach(["lt_sig_h"], callback: fixture.callsTraced)
        defer { try? nested.detach() }
        let seenBefore = fixture.counter("lt_sig_seen_a"), skippedBefore = lt_skipped_calls()
        fixture.callH(1000)
        XCTAssertEqual(fixture.counter("lt_sig_seen_nested"), 1000, "h's callback ran on every call")
        XCTAssertEqual(fixture.counter("lt_sig_seen_a") - seenBefore, 0, "A never saw f called from a callback")
        XCTAssertEqual(lt_skipped_calls() - skippedBefore, 1000, "each nested call skipped and counted")
    }

    /// The dispatcher in front of a program's handler is invisible: the
    /// program reads back its own handler and flags.
    func testTheProgramReadsBackItsOwnHandler() throws {
        let fixture = try Fixture()
        XCTAssertEqual(fixture.reportsOwnHandler(), 1)
    }

    /// A handler installed with the raw system call, which the interposed
    /// sigaction never saw, gets the dispatcher in front of it when the
    /// patcher installs its own handlers (lt_sigmask_dispatch_installed_handlers):
    /// it still runs, and the program still reads it back.
    func testAHandlerInstalledBehindLiveTracesBackIsDispatchedToo() throws {
        let fixture = try Fixture()
        let handler = TrampolineFixtures.address(fixture.handle, "lt_sig_usr1_handler")
        let runs = TrampolineFixtures.address(fixture.handle, "lt_sig_usr1_runs").assumingMemoryBound(to: UInt64.self)
        var action = sigaction()
        action.__sigaction_handler.sa_handler = unsafeBitCast(handler, to: (@convention(c) (Int32) -> Void).self)
        sigemptyset(&action.sa_mask)
        XCTAssertEqual(lt_sys_libc_sigaction(SIGUSR1, &action, nil), 0)
        defer {
            var restore = sigaction()
            restore.__sigaction_handler.sa_handler = SIG_DFL
            _ = lt_sys_libc_sigaction(SIGUSR1, &restore, nil)
        }
        lt_sigmask_dispatch_installed_handlers(lt_trap_sync_signal())
        var kernel = sigaction(), reported = sigaction()
        XCTAssertEqual(lt_sys_libc_sigaction(SIGUSR1, nil, &kernel), 0)
        XCTAssertNotEqual(kernel.sa_flags & SA_SIGINFO, 0, "the dispatcher (SA_SIGINFO) is what the kernel holds")
        XCTAssertNotEqual(unsafeBitCast(kernel.__sigaction_handler.sa_sigaction, to: UnsafeRawPointer?.self), UnsafeRawPointer(handler))
        XCTAssertEqual(sigaction(SIGUSR1, nil, &reported), 0)
        XCTAssertEqual(reported.sa_flags & SA_SIGINFO, 0, "the program's flags")
        XCTAssertEqual(unsafeBitCast(reported.__sigaction_handler.sa_handler, to: UnsafeRawPointer?.self), UnsafeRawPointer(handler), "the program's handler")
        let before = runs.pointee
        raise(SIGUSR1)
        XCTAssertEqual(runs.pointee, before + 1, "the handler ran behind the dispatcher")
    }
}
