// The function graph is exact: fixture libraries with known call trees are
// loaded into the test process, traced there, and every thread's recorded
// entry/exit sequence must equal the expected one line for line — including
// tail calls, longjmp, signal handlers, alternate signal stacks, threads,
// pthread_exit, fork, and the depth limit. The traced functions' results
// (every return register, errno) must be what they are untraced.
import Foundation
import Glibc
import LiveTrace
import TestSupport
import XCTest

final class FunctionGraphExactnessTests: XCTestCase {
    typealias IntToInt = @convention(c) (Int32) -> Int32
    typealias VoidToInt = @convention(c) () -> Int32

    var calls: UnsafeMutableRawPointer!

    override func setUpWithError() throws {
        calls = try GraphFixtures.library("graph_calls.c", compiler: "clang")
        GraphFixtures.nameFunctions(calls, [
            "g_leaf", "g_mid", "g_top", "g_fib", "g_tail", "g_tail_host", "g_long_double", "g_complex_long_double",
            "g_double", "g_float", "g_int128", "g_struct_big", "g_struct_mixed", "g_struct_doubles", "g_set_errno",
            "g_jumper", "g_deep2", "g_deep1", "g_longjmp_host", "g_jumping_handler", "g_returning_handler",
            "g_raise_deep", "g_signal_host", "g_siglongjmp_host", "g_altstack_body", "g_worker", "g_exiter2",
            "g_exiter1", "g_exit_body", "g_child_work", "g_fork_host", "g_stress_handler", "g_backtrace_inner", "g_backtrace_outer", "g_exec_host", "g_recurse", "g_backtrace_raw_inner", "g_backtrace_raw_outer", "g_cancel_wait", "g_cancel_body",
            "g_ctx_host", "g_ctx_trigger", "g_ctx_handler",
        ])
    }

    func function<T>(_ name: String, as type: T.Type) throws -> T {
        try GraphFixtures.symbol(calls, name, as: type)
    }

    func testNestedCallsAndRecursionAreRecordedWithTheirDepths() throws {
        let top = try function("g_top", as: IntToInt.self)
        let fib = try function("g_fib", as: IntToInt.self)
        var results: [Int32] = []
        let recorded = try recordGraph(["g_*"]) {
            results = [top(3), fib(6)]
        }
        XCTAssertEqual(results, [15, 8])
        let expected = [
            "> g_top 0", "> g_mid 1", "> g_leaf 2", "< g_leaf 2", "> g_leaf 2", "< g_leaf 2", "< g_mid 1", "< g_top 0",
        ] + expectedFib(6, depth: 0)
        XCTAssertEqual(recorded.byThread[currentThreadID()], expected)
        XCTAssertEqual(recorded.byThread.count, 1, "only this thread called traced functions")
        XCTAssertEqual(FunctionGraph.currentThreadDepth, 0)
    }

    func testTailCallRecordsBothExitsInOrder() throws {
        let host = try function("g_tail_host", as: IntToInt.self)
        var result: Int32 = 0
        let recorded = try recordGraph(["g_*"]) { result = host(1) }
        XCTAssertEqual(result, 5)
        XCTAssertEqual(recorded.byThread[currentThreadID()], [
            "> g_tail_host 0", "> g_tail 1", "> g_leaf 2", "< g_leaf 2", "< g_tail 1", "< g_tail_host 0",
        ])
    }

    func testReturnRegistersAndErrnoAreUnchanged() throws {
        let check = try function("g_check_returns", as: VoidToInt.self)
        XCTAssertEqual(check(), 0, "the fixture's own check fails untraced")
        var failed: Int32 = -1
        let recorded = try recordGraph(["g_*"]) { failed = check() }
        XCTAssertEqual(failed, 0, "check bit \(failed) failed traced (1 long double, 2 complex long double, 4 double, "
            + "8 float, 16 int128, 32 big struct, 64 mixed struct, 128 two doubles, 256 errno, 512 x87 stack)")
        let lines = try XCTUnwrap(recorded.byThread[currentThreadID()])
        for name in ["g_long_double", "g_complex_long_double", "g_double", "g_float", "g_int128", "g_struct_big",
                     "g_struct_mixed", "g_struct_doubles", "g_set_errno"] {
            XCTAssertEqual(lines.filter { $0 == "> \(name) 0" }.count, 1, name)
            XCTAssertEqual(lines.filter { $0 == "< \(name) 0" }.count, 1, name)
        }
        XCTAssertEqual(lines.count, 18)
    }

    func testLongjmpEmitsUnwoundExitsForTheFramesItLeft() throws {
        let host = try function("g_longjmp_host", as: VoidToInt.self)
        let before = FunctionGraph.statistics.unwound
        var result: Int32 = 0
        let recorded = try recordGraph(["g_*"]) { result = host() }
        XCTAssertEqual(result, 10)
        XCTAssertEqual(recorded.byThread[currentThreadID()], [
            "> g_longjmp_host 0", "> g_deep1 1", "> g_deep2 2", "> g_jumper 3", "> g_leaf 4", "< g_leaf 4",
            "<! g_jumper 3", "<! g_deep2 2", "<! g_deep1 1",
            "> g_leaf 1", "< g_leaf 1", "< g_longjmp_host 0",
        ])
        XCTAssertEqual(FunctionGraph.statistics.unwound - before, 3)
    }

    func testSignalHandlerCallingTracedFunctionsNestsUnderTheInterruptedFrame() throws {
        let host = try function("g_signal_host", as: VoidToInt.self)
        var result: Int32 = 0
        let recorded = try recordGraph(["g_*"]) { result = host() }
        XCTAssertEqual(result, 12)
        XCTAssertEqual(recorded.byThread[currentThreadID()], [
            "> g_signal_host 0", "> g_raise_deep 1", "> g_returning_handler 2", "> g_leaf 3", "< g_leaf 3",
            "< g_returning_handler 2", "< g_raise_deep 1", "> g_leaf 1", "< g_leaf 1", "< g_signal_host 0",
        ])
    }

    /// A handler that interrupts LiveTrace's own code (here: a callback on
    /// g_ctx_trigger that raises SIGUSR1, after the graph's entry callback
    /// in the iterator) runs in a context of its own: its calls go to a ring
    /// of their own, depths from 0. Returning, everything goes on in the
    /// thread's context; leaving by siglongjmp, the normal flow runs on the
    /// handler's context until a function of the lower one returns, which
    /// switches back and ends the abandoned section, so nothing is skipped
    /// afterwards and the detach does not wait for it.
    func testHandlerInterruptingTheTracerGetsItsOwnContextAndSurvivesSiglongjmp() throws {
        typealias Host = @convention(c) (Int32) -> Int32
        let host = try function("g_ctx_host", as: Host.self)
        let raiseCallback = try GraphFixtures.symbol(calls, "g_ctx_raise_callback", as: OpsCallback.self)
        let registry = OpsRegistry.shared
        let leafWasOn = registry.leafStubsEnabled
        registry.leafStubsEnabled = false
        defer { registry.leafStubsEnabled = leafWasOn }
        let skippedBefore = lt_skipped_calls()
        var results: [Int32] = []
        let recorded = try recordGraph(["g_ctx_*", "g_leaf"]) {
            let raising = try Tracer.attach(["g_ctx_trigger"], callback: raiseCallback)
            results = [host(0), host(1), host(0)]
            try raising.detach()
        }
        XCTAssertEqual(results, [18, 18, 18])
        XCTAssertEqual(lt_skipped_calls() - skippedBefore, 0, "nothing taken for recursion")
        let mine = recorded.events.filter { $0.tid == currentThreadID() }
        let rings = Array(Set(mine.map(\.ring))).sorted()
        let streams = rings.map { ring in mine.filter { $0.ring == ring }.map(\.line) }
        let thread = try XCTUnwrap(streams.first { $0.first == "> g_ctx_host 0" }, "\(streams)")
        let handler = try XCTUnwrap(streams.first { $0.first == "> g_ctx_handler 0" }, "\(streams)")
        XCTAssertEqual(streams.count, 2, "\(streams)")
        XCTAssertEqual(thread, [
            // host(0): the handler returns; trigger runs.
            "> g_ctx_host 0", "> g_ctx_trigger 1", "< g_ctx_trigger 1", "> g_leaf 1", "< g_leaf 1", "< g_ctx_host 0",
            // host(1): the handler jumps out of trigger's callback; host's
            // g_leaf(9) runs on the handler's context; host's return switches back.
            "> g_ctx_host 0", "> g_ctx_trigger 1", "<! g_ctx_trigger 1", "< g_ctx_host 0",
            // host(0) again, in the thread's own context.
            "> g_ctx_host 0", "> g_ctx_trigger 1", "< g_ctx_trigger 1", "> g_leaf 1", "< g_leaf 1", "< g_ctx_host 0",
        ])
        XCTAssertEqual(handler, [
            "> g_ctx_handler 0", "> g_leaf 1", "< g_leaf 1", "< g_ctx_handler 0",
            "> g_ctx_handler 0", "> g_leaf 1", "< g_leaf 1", "<! g_ctx_handler 0", "> g_leaf 0", "< g_leaf 0",
            "> g_ctx_handler 0", "> g_leaf 1", "< g_leaf 1", "< g_ctx_handler 0",
        ])
    }

    func testSiglongjmpOutOfAHandlerUnwindsHandlerAndInterruptedFrames() throws {
        let host = try function("g_siglongjmp_host", as: VoidToInt.self)
        var result: Int32 = 0
        let recorded = try recordGraph(["g_*"]) { result = host() }
        XCTAssertEqual(result, 14)
        XCTAssertEqual(recorded.byThread[currentThreadID()], [
            "> g_siglongjmp_host 0", "> g_raise_deep 1", "> g_jumping_handler 2", "> g_leaf 3", "< g_leaf 3",
            "<! g_jumping_handler 2", "<! g_raise_deep 1", "> g_leaf 1", "< g_leaf 1", "< g_siglongjmp_host 0",
        ])
    }

    func testHandlerOnAlternateSignalStackKeepsTheThreadsFrames() throws {
        typealias Run = @convention(c) (UnsafeMutablePointer<Int32>) -> Int32
        let run = try function("g_altstack_run", as: Run.self)
        var above: Int32 = -1
        var result: Int32 = 0
        let recorded = try recordGraph(["g_*"]) { result = run(&above) }
        XCTAssertEqual(result, 16)
        let threads = recorded.byThread.filter { $0.key != currentThreadID() }
        XCTAssertEqual(threads.count, 1)
        XCTAssertEqual(threads.first?.value, [
            "> g_altstack_body 0", "> g_raise_deep 1", "> g_returning_handler 2", "> g_leaf 3", "< g_leaf 3",
            "< g_returning_handler 2", "< g_raise_deep 1", "> g_leaf 1", "< g_leaf 1", "< g_altstack_body 0",
        ])
        // The interesting layout (the handler's calls have higher slots than
        // the interrupted frames) is the usual one; say when it was not.
        if above != 1 { print("note: the alternate stack lay below the thread's stack in this run") }
    }

    func testEveryThreadHasItsOwnExactSequence() throws {
        typealias Run = @convention(c) (Int32, Int32, UnsafeMutablePointer<Int32>) -> Int
        let run = try function("g_threads_run", as: Run.self)
        var tids = [Int32](repeating: 0, count: 4)
        var total = 0
        let recorded = try recordGraph(["g_*"]) { total = run(4, 7, &tids) }
        XCTAssertEqual(total, 4 * 13)
        let expected = ["> g_worker 0"] + expectedFib(7, depth: 1) + ["< g_worker 0"]
        for tid in tids {
            XCTAssertEqual(recorded.byThread[UInt64(tid)], expected, "thread \(tid)")
        }
        XCTAssertEqual(recorded.byThread.count, 4, "the test thread called no traced function")
    }

    func testPthreadExitUnwindsHookedFramesAndRunsCleanups() throws {
        typealias Run = @convention(c) (UnsafeMutablePointer<Int32>, UnsafeMutablePointer<Int32>) -> Int
        let run = try function("g_pthread_exit_run", as: Run.self)
        var cleanupRan: Int32 = 0, tid: Int32 = 0
        var value = 0
        let recorded = try recordGraph(["g_*"]) { value = run(&cleanupRan, &tid) }
        XCTAssertEqual(value, 42)
        XCTAssertEqual(cleanupRan, 1, "pthread_cleanup_push handlers still run")
        XCTAssertEqual(recorded.byThread[UInt64(tid)], [
            "> g_exit_body 0", "> g_exiter1 1", "> g_exiter2 2", "> g_leaf 3", "< g_leaf 3",
            "<! g_exiter2 2", "<! g_exiter1 1", "<! g_exit_body 0",
        ])
    }

    func testForkedChildKeepsItsShadowStackAndRecordsIntoItsOwnRing() throws {
        typealias Run = @convention(c) (UnsafeMutablePointer<Int32>) -> Int32
        let host = try function("g_fork_host", as: Run.self)
        var childPid: Int32 = 0
        var status: Int32 = -1
        let recorded = try recordGraph(["g_*"]) { status = host(&childPid) }
        XCTAssertEqual(status, 0, "the child exits 0")
        XCTAssertEqual(recorded.byThread[currentThreadID()], [
            "> g_fork_host 0", "> g_leaf 1", "< g_leaf 1", "< g_fork_host 0",
        ])
        // The child never returns from g_fork_host (it calls _exit), and its
        // calls nest under the frame it inherited.
        let child = recorded.events.filter { $0.pid == UInt64(childPid) }
        XCTAssertEqual(child.map(\.line), [
            "> g_leaf 1", "< g_leaf 1", "> g_child_work 1", "> g_leaf 2", "< g_leaf 2", "< g_child_work 1",
        ])
        XCTAssertEqual(Set(child.map(\.tid)), [UInt64(childPid)])
    }

    func testDepthLimitFollowsButDoesNotRecordDeeperCalls() throws {
        let top = try function("g_top", as: IntToInt.self)
        var result: Int32 = 0
        let recorded = try recordGraph(["g_*"], maxDepth: 2) { result = top(3) }
        XCTAssertEqual(result, 15)
        XCTAssertEqual(recorded.byThread[currentThreadID()], ["> g_top 0", "> g_mid 1", "< g_mid 1", "< g_top 0"])
    }

    func testBadDepthLimitAndSecondGraphAreClearErrors() throws {
        XCTAssertThrowsError(try FunctionGraph.start(functions: ["g_*"], maxDepth: 0))
        XCTAssertThrowsError(try FunctionGraph.start(functions: ["g_*"], maxDepth: FunctionGraph.stackCapacity + 1))
        XCTAssertThrowsError(try FunctionGraph.start(functions: ["no_such_function_anywhere_*"])) { error in
            XCTAssertEqual((error as? TraceError)?.cCode, -Int32(LT_ENOENT))
        }
        let graph = try FunctionGraph.start(functions: ["g_leaf"])
        XCTAssertThrowsError(try FunctionGraph.start(functions: ["g_mid"])) { error in
            XCTAssertEqual(error as? TraceError, .alreadyRegistered)
        }
        try graph.stop()
        XCTAssertThrowsError(try graph.stop())
    }

    func testNothingIsRecordedOrHookedAfterStop() throws {
        let top = try function("g_top", as: IntToInt.self)
        let recording = try GraphRecording()
        let graph = try FunctionGraph.start(functions: ["g_top"])
        XCTAssertEqual(top(1), 7)
        try graph.stop()
        XCTAssertEqual(top(1), 7)
        let lines = try recording.finish().map(\.line)
        XCTAssertEqual(lines, ["> g_top 0", "< g_top 0"], "nothing after stop")
    }

    func testSignalsAtAnyInstructionKeepEveryThreadsGraphWellNested() throws {
        typealias Run = @convention(c) (Int, UnsafeMutablePointer<Int32>, UnsafeMutablePointer<Int32>) -> Int
        let run = try function("g_stress_run", as: Run.self)
        let soak = ProcessInfo.processInfo.environment["LIVETRACE_SOAK"] != nil
        let calls = soak ? 1_000_000 : 100_000
        var sumOK: Int32 = 0, tid: Int32 = 0
        let skippedBefore = lt_skipped_calls()
        // 8 events per g_top call, a few per handler run.
        let recording = try GraphRecording(rings: 8, capacity: soak ? 1 << 24 : 1 << 21)
        let graph = try FunctionGraph.start(functions: ["g_*"])
        let handled = run(calls, &sumOK, &tid)
        try graph.stop()
        let events = try recording.finish().filter { $0.tid == UInt64(tid) }
        XCTAssertEqual(sumOK, 1, "every g_top result was right")
        XCTAssertGreaterThan(handled, 0, "signals were delivered")
        // Each execution context of the thread (its normal flow, the signal
        // handler) records into a ring of its own. In each: well nested,
        // every exit closes the innermost open entry at its depth, and none
        // is flagged unwound (no frame was left by a jump).
        var handlerEntries = 0, topEntries = 0
        for ring in Set(events.map(\.ring)).sorted() {
            var open: [String] = []
            for line in events.filter({ $0.ring == ring }).map(\.line) {
                let parts = line.split(separator: " ")
                guard parts.count == 3 else { XCTFail(line); break }
                if parts[0] == ">" {
                    guard Int(parts[2]) == open.count else { XCTFail("entry depth \(open.count) expected: \(line)"); break }
                    open.append(String(parts[1]))
                    if parts[1] == "g_stress_handler" { handlerEntries += 1 }
                    if parts[1] == "g_top" { topEntries += 1 }
                } else {
                    guard parts[0] == "<", open.last == String(parts[1]), Int(parts[2]) == open.count - 1 else {
                        XCTFail("exit does not close \(open.last ?? "nothing") at depth \(open.count - 1): \(line)")
                        break
                    }
                    open.removeLast()
                }
            }
            XCTAssertEqual(open, [], "every entry has its exit (ring \(ring))")
        }
        XCTAssertEqual(topEntries, calls, "every call of g_top recorded")
        // A handler run that interrupts the tracer itself (entry callback,
        // return path, recorder) runs in the next context: it is recorded
        // like every other, and nothing is skipped.
        let skipped = Int(lt_skipped_calls() - skippedBefore)
        XCTAssertEqual(skipped, 0, "no call skipped")
        XCTAssertEqual(handlerEntries, handled, "every handler run recorded")
        print("signals: \(handled) handler runs during \(calls) calls, \(handlerEntries) recorded, \(lt_context_switches()) context switches")
    }

    func testBacktraceThroughHookedFramesSeesTheRealCallers() throws {
        typealias Run = @convention(c) (UnsafeMutablePointer<UInt>) -> Int32
        let outer = try function("g_backtrace_outer", as: Run.self)
        var lastUntraced: UInt = 0, lastTraced: UInt = 0
        let untraced = outer(&lastUntraced)
        XCTAssertGreaterThan(untraced, 3, "the untraced walk reaches this test's callers")
        var traced: Int32 = 0
        let recorded = try recordGraph(["g_backtrace_*"]) { traced = outer(&lastTraced) }
        // backtrace() is interposed (lt_unwind.c): the hooked slots hold their
        // original return addresses during the walk, then are hooked again.
        // The traced call runs under the recording closure: a few frames more.
        XCTAssertGreaterThanOrEqual(traced, untraced, "the walk goes through the hooked frames")
        XCTAssertEqual(lastTraced, lastUntraced, "both walks end at the same outermost frame")
        XCTAssertEqual(recorded.byThread[currentThreadID()], [
            "> g_backtrace_outer 0", "> g_backtrace_inner 1", "< g_backtrace_inner 1", "< g_backtrace_outer 0",
        ], "the frames were hooked again after the walk: their exits are recorded")
    }

    func testBacktraceFromAnUnwinderThatCannotRestoreEndsAtTheReturnTrampoline() throws {
        // _Unwind_Backtrace reached without the interposer (glibc's
        // backtrace calls libgcc_s through its own handle; here: the real
        // function directly) meets the trampoline: its unwind information
        // ends the walk there instead of walking garbage.
        typealias Run = @convention(c) (UnsafeMutablePointer<UInt>) -> Int32
        let outer = try function("g_backtrace_raw_outer", as: Run.self)
        var last: UInt = 0
        var traced: Int32 = 0
        _ = try recordGraph(["g_backtrace_raw_*"]) { traced = outer(&last) }
        XCTAssertEqual(traced, 2, "g_backtrace_raw_inner, then the trampoline as its return address")
        XCTAssertEqual(last, lt_graph_return_trampoline_address())
    }

    func testExecFailingOrReplacingTheImageUnderHookedFrames() throws {
        typealias Run = @convention(c) (UnsafeMutablePointer<Int32>) -> Int32
        let host = try function("g_exec_host", as: Run.self)
        var failed: Int32 = 0
        var status: Int32 = -1
        let recorded = try recordGraph(["g_*"]) { status = host(&failed) }
        XCTAssertEqual(failed, -ENOENT, "the failed execve returned its error (errno kept) into hooked frames")
        XCTAssertEqual(status, 0, "the child's new image (/bin/true) ran and exited 0")
        XCTAssertEqual(recorded.byThread[currentThreadID()], [
            "> g_exec_host 0", "> g_leaf 1", "< g_leaf 1", "< g_exec_host 0",
        ])
        // The child's stream ends inside g_exec_host: its image was replaced,
        // the frame never returned (a reader reports it unfinished).
        let child = recorded.events.filter { $0.pid != UInt64(getpid()) }.map(\.line)
        XCTAssertEqual(child, ["> g_leaf 1", "< g_leaf 1"])
    }

    func testRecursionDeeperThanTheShadowStackIsCountedNotLost() throws {
        typealias Recurse = @convention(c) (Int) -> Int
        let recurse = try function("g_recurse", as: Recurse.self)
        let depth = FunctionGraph.stackCapacity + 500
        let before = FunctionGraph.statistics.overflow
        var result = 0
        let recorded = try recordGraph(["g_recurse"]) { result = recurse(depth - 1) }
        XCTAssertEqual(result, depth - 1)
        XCTAssertEqual(FunctionGraph.statistics.overflow - before, 500, "calls beyond the capacity are counted")
        let lines = try XCTUnwrap(recorded.byThread[currentThreadID()])
        let capacity = FunctionGraph.stackCapacity
        let expected = (0..<capacity).map { "> g_recurse \($0)" } + (0..<capacity).reversed().map { "< g_recurse \($0)" }
        XCTAssertEqual(lines, expected, "the frames the shadow stack holds are exact")
    }

    func testCancelledThreadsFramesAreRecordedUnwoundAtThreadExit() throws {
        typealias Run = @convention(c) (UnsafeMutablePointer<Int32>) -> Int32
        let run = try function("g_cancel_run", as: Run.self)
        var tid: Int32 = 0
        var cancelled: Int32 = 0
        let recorded = try recordGraph(["g_cancel_*"]) { cancelled = run(&tid) }
        XCTAssertEqual(cancelled, 1, "the thread ended as cancelled")
        XCTAssertEqual(recorded.byThread[UInt64(tid)], [
            "> g_cancel_body 0", "> g_cancel_wait 1", "<! g_cancel_wait 1", "<! g_cancel_body 0",
        ])
    }
}
