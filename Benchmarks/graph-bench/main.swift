// Cost per call of the function graph: a hot function's entry and exit
// recorded (entry trampoline + shadow-stack push + return trampoline +
// two ring events), with the recording drained to a trace directory by the
// real drain thread, against the untraced call, in alternating rounds.
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
/// Alternating rounds (BENCH_RUNS, at least 7): each round measures the
/// untraced call, the hooks alone and a drained recording, one run each, so
/// a slow minute falls on every side; figures are the median and range of
/// the per-round added cost, never the best round.
let rounds = max(7, Int(ProcessInfo.processInfo.environment["BENCH_RUNS"] ?? "") ?? 7)

/// One timed run after a warm-up of a tenth, in ns per call.
func measure(_ count: Int = calls) -> Double {
    _ = loop(count / 10)
    return Double(loop(count)) / Double(count)
}

/// Median and range of `values`.
func spread(_ values: [Double]) -> (median: Double, low: Double, high: Double) {
    let sorted = values.sorted()
    let middle = sorted.count / 2
    let median = sorted.count % 2 == 1 ? sorted[middle] : (sorted[middle - 1] + sorted[middle]) / 2
    return (median, sorted.first!, sorted.last!)
}

func describe(_ values: [Double]) -> String {
    let s = spread(values)
    return "\(format(s.median)) (\(format(s.low))-\(format(s.high)))"
}

/// BENCH_ROWS (set by Benchmarks/run.sh): one row per figure for BENCHMARKS.md.
func row(_ name: String, _ values: [Double], unit: String, target: String) {
    guard let path = ProcessInfo.processInfo.environment["BENCH_ROWS"] else { return }
    let s = spread(values)
    let line = "\(name)\t\(format(s.median))\t\(format(s.low))-\(format(s.high))\t\(unit)\t\(target)\n"
    if let handle = FileHandle(forWritingAtPath: path) {
        handle.seekToEndOfFile()
        handle.write(line.data(using: .utf8)!)
        handle.closeFile()
    }
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
    let env = ProcessInfo.processInfo.environment
    let ringEvents = env["GRAPH_RING_EVENTS"].flatMap { Int($0) } ?? RingArea.defaultRingCapacity
    let drainMicroseconds = env["GRAPH_DRAIN_US"].flatMap { Int($0) } ?? 2000
    var untraced: [Double] = [], hooks: [Double] = [], recorded: [Double] = []
    var events: UInt64 = 0, lost: UInt64 = 0, waitCount: UInt64 = 0, waitMs = 0.0
    for round in 0..<rounds {
        let base = measure()
        untraced.append(base)

        // The hooks alone: no recording attached (the writer returns at once).
        let hooksOnly = try FunctionGraph.start(functions: ["bench_f"])
        hooks.append(measure() - base)
        try hooksOnly.stop()

        let trace = directory + "-\(round)"
        let recorder = try Recorder.start(directory: trace, ringCapacity: ringEvents, drainInterval: .microseconds(drainMicroseconds))
        // GRAPH_HIGH_WATER: the wake-up mark, in events (set before the first
        // event: rings are claimed, and their limits computed, at first use).
        if let mark = env["GRAPH_HIGH_WATER"].flatMap({ UInt32($0) }) {
            _ = lt_ring_area_set_high_water(recorder.area.base, mark)
        }
        let graph = try FunctionGraph.start(functions: ["bench_f"])
        recorded.append(measure() - base)
        try graph.stop()
        let summary = try recorder.stop()
        let waits = writerWaits(recorder.area)
        events += summary.events
        lost += summary.lost
        waitCount += waits.count
        waitMs += waits.milliseconds
        try? FileManager.default.removeItem(atPath: trace)
    }
    let expectedEvents = UInt64(rounds * 2 * (calls / 10 + calls))
    print("graph: \(rounds) alternating rounds of \(calls) calls; median (range) ns per call")
    print("graph: untraced call (nop5 site)               \(describe(untraced))")
    print("graph: added, entry+exit hooked, no recording  +\(describe(hooks))")
    print("graph: added, entry+exit recorded and drained  +\(describe(recorded))")
    print("graph: writer waits for the drain while recording: \(waitCount), \(format(waitMs)) ms in total")
    print("graph: events \(events) (expected \(expectedEvents)), lost \(lost)")
    print("graph: reference: uftrace record costs 92-95 ns per call on this machine (NOTES.md); target: at least 4x less")
    row("function graph in process: entry+exit recorded and drained, added per call", recorded, unit: "ns", target: "")
    row("function graph in process: hooks alone, added per call", hooks, unit: "ns", target: "")
} catch {
    printError("livetrace-graph-bench: \(error)\n")
    exit(1)
}
