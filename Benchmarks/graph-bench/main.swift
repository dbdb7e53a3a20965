// Cost per call of the function graph: a hot function's entry and exit
// recorded (entry trampoline + shadow-stack push + return trampoline +
// two ring events), with the recording drained to a trace directory by the
// real drain thread, against the untraced call in the same run.
// Usage: livetrace-graph-bench <hot-fixture.so> <trace dir> [calls]
import Foundation
import Glibc
import CLiveTraceShims
import LiveTrace

let arguments = CommandLine.arguments
guard arguments.count >= 3, let library = dlopen(arguments[1], RTLD_NOW | RTLD_GLOBAL) else {
    printError("usage: livetrace-graph-bench <hot-fixture.so> <trace dir> [calls]\n")
    exit(2)
}
let directory = arguments[2]
let calls = arguments.count > 3 ? Int(arguments[3]) ?? 1_000_000 : 1_000_000
typealias Loop = @convention(c) (Int) -> UInt64
let loop = unsafeBitCast(dlsym(library, "bench_loop")!, to: Loop.self)
let runs = 5

/// Best of `runs`, in ns per call.
func measure(_ count: Int = calls) -> Double {
    _ = loop(count / 10)
    var best = Double.infinity
    for _ in 0..<runs { best = min(best, Double(loop(count)) / Double(count)) }
    return best
}

/// The bounded waits of every writer for the drain (ring header counters).
func writerWaits(_ area: RingArea) -> (count: UInt64, milliseconds: Double) {
    var count: UInt64 = 0, ticks: UInt64 = 0
    for index in 0..<area.ringCount {
        count += area.ring(index).pointee.waits
        ticks += area.ring(index).pointee.wait_ticks
    }
    let perMs = area.base.assumingMemoryBound(to: lt_area_header.self).pointee.tsc_ticks_per_ms
    return (count, Double(ticks) / Double(max(perMs, 1)))
}

func format(_ x: Double) -> String { String((x * 100).rounded() / 100) }

func printError(_ text: String) {
    var bytes = Array(text.utf8)
    _ = bytes.withUnsafeMutableBytes { write(2, $0.baseAddress, $0.count) }
}

do {
    let untracedFirst = measure()
    print("graph: untraced call (nop5 site)             \(format(untracedFirst)) ns/call")

    // The hooks alone: no recording attached (the writer returns at once).
    let hooksOnly = try FunctionGraph.start(functions: ["bench_f"])
    let hooked = measure()
    try hooksOnly.stop()
    print("graph: entry+exit hooked, no recording       \(format(hooked)) ns/call")

    let env = ProcessInfo.processInfo.environment
    let ringEvents = env["GRAPH_RING_EVENTS"].flatMap { Int($0) } ?? RingArea.defaultRingCapacity
    let drainMicroseconds = env["GRAPH_DRAIN_US"].flatMap { Int($0) } ?? 2000
    let recorder = try Recorder.start(directory: directory, ringCapacity: ringEvents, drainInterval: .microseconds(drainMicroseconds))
    // GRAPH_HIGH_WATER: the wake-up mark, in events (set before the first
    // event: rings are claimed, and their limits computed, at first use).
    if let mark = env["GRAPH_HIGH_WATER"].flatMap({ UInt32($0) }) {
        _ = lt_ring_area_set_high_water(recorder.area.base, mark)
    }
    let graph = try FunctionGraph.start(functions: ["bench_f"])
    let recorded = measure()
    try graph.stop()
    let summary = try recorder.stop()
    let waits = writerWaits(recorder.area)

    // The writer alone: rings large enough for the whole run, so the
    // writer never waits for the drain (which then copies afterwards).
    let shortCalls = calls / 4
    let bigRings = try Recorder.start(directory: directory + "-big", ringCount: 2, ringCapacity: 1 << 23)
    let graphBig = try FunctionGraph.start(functions: ["bench_f"])
    let recordedNoWait = measure(shortCalls)
    try graphBig.stop()
    let summaryBig = try bigRings.stop()
    print("graph: entry+exit recorded, ring never full   \(format(recordedNoWait)) ns/call (\(summaryBig.events) events, lost \(summaryBig.lost))")

    let untracedAfter = measure()
    let baseline = min(untracedFirst, untracedAfter)
    let expectedEvents = UInt64(2 * (calls / 10 + runs * calls))
    print("graph: entry+exit recorded, drained to disk   \(format(recorded)) ns/call")
    print("graph: untraced again after stop             \(format(untracedAfter)) ns/call; baseline \(format(baseline)) ns/call")
    print("graph: added per call, drained while recording: \(format(recorded - baseline)) ns; writer never waiting: \(format(recordedNoWait - baseline)) ns; hooks alone: \(format(hooked - baseline)) ns")
    print("graph: writer waits for the drain while recording: \(waits.count), \(format(waits.milliseconds)) ms in total")
    print("graph: events \(summary.events) (expected \(expectedEvents)), lost \(summary.lost)")
    print("graph: reference: uftrace record costs 92-95 ns per call on this machine (NOTES.md); target: at least 4x less")
} catch {
    printError("livetrace-graph-bench: \(error)\n")
    exit(1)
}
