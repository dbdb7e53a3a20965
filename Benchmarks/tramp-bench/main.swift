// Cost per call of an enabled site: empty C callback through its leaf stub
// (the issue's target) and through the generic lean entry (leaf stubs off),
// a `counter++` C callback (leaf stub), the same two as Swift
// @convention(c) closures compiled here (release: leaf stubs), the empty C
// callback placed beyond 2 GiB like them, empty Swift closure, and the
// iterator, against the untraced call of the same function, in alternating
// rounds (BENCH_RUNS, at least 7): median and range of the added cost; and
// the time of the leaf analysis of one callback.
// Usage: livetrace-tramp-bench <fixture.so> [calls]
import Foundation
import Glibc
import LiveTrace

let arguments = CommandLine.arguments
guard arguments.count >= 2, let library = dlopen(arguments[1], RTLD_NOW | RTLD_GLOBAL) else {
    printError("usage: livetrace-tramp-bench <hot-fixture.so> [calls]\n")
    exit(2)
}
let calls = arguments.count > 2 ? Int(arguments[2]) ?? 20_000_000 : 20_000_000
typealias Loop = @convention(c) (Int) -> UInt64
let loop = unsafeBitCast(dlsym(library, "bench_loop")!, to: Loop.self)
let emptyCallback = unsafeBitCast(dlsym(library, "bench_empty_callback")!, to: OpsCallback.self)
let counterCallback = unsafeBitCast(dlsym(library, "bench_counter_callback")!, to: OpsCallback.self)
let counter = dlsym(library, "bench_counter")!.assumingMemoryBound(to: UInt64.self)
let counterEntry = UInt(bitPattern: dlsym(library, "bench_counter_callback")!)

/// Swift's fast path: @convention(c) closures that capture nothing, given
/// to Tracer.attach(callback:) like a C function. The counter is the ops's
/// data.
let swiftEmptyCallback: OpsCallback = { _, _, _, _ in }
let swiftCounterCallback: OpsCallback = { _, _, ops, _ in
    guard let data = ops?.pointee.data else { return }
    data.assumingMemoryBound(to: UInt64.self).pointee &+= 1
}
let swiftCounter = UnsafeMutablePointer<UInt64>.allocate(capacity: 1)
swiftCounter.initialize(to: 0)

/// Alternating rounds: each round measures the untraced call, then each
/// configuration attached for that one measurement, so a slow minute of the
/// shared machine falls on both sides. Figures are the median and range of
/// the per-round added cost, never the best round.
let rounds = max(7, Int(ProcessInfo.processInfo.environment["BENCH_RUNS"] ?? "") ?? 7)

/// One timed run after a warm-up of a tenth, in ns per call.
func measure() -> Double {
    _ = loop(calls / 10)
    return Double(loop(calls)) / Double(calls)
}

/// Median and range of `values`.
func spread(_ values: [Double]) -> (median: Double, low: Double, high: Double) {
    let sorted = values.sorted()
    let middle = sorted.count / 2
    let median = sorted.count % 2 == 1 ? sorted[middle] : (sorted[middle - 1] + sorted[middle]) / 2
    return (median, sorted.first!, sorted.last!)
}

func format(_ x: Double) -> String {
    let scaled = (x * 100).rounded() / 100
    return String(scaled)
}

/// BENCH_ROWS (set by Benchmarks/run.sh): one row per figure for BENCHMARKS.md.
func row(_ name: String, _ values: [Double], unit: String, target: String, limit: Double) {
    guard let path = ProcessInfo.processInfo.environment["BENCH_ROWS"] else { return }
    let s = spread(values)
    let verdict = s.median <= limit ? "met" : "NOT met"
    let line = "\(name)\t\(format(s.median))\t\(format(s.low))-\(format(s.high))\t\(unit)\t\(target)\t\(verdict)\n"
    if let handle = FileHandle(forWritingAtPath: path) {
        handle.seekToEndOfFile()
        handle.write(line.data(using: .utf8)!)
        handle.closeFile()
    }
}

let farCallback = farExecutablePage(holding: [0xc3])

struct Configuration {
    var name: String
    var attach: () throws -> [TraceHandle]
    var added: [Double] = []
}

do {
    var untraced: [Double] = []
    let leafWasOn = OpsRegistry.shared.leafStubsEnabled
    var cIsLeaf = false, kIsLeaf = false
    var configurations = [
        Configuration(name: "empty C callback (leaf stub)") {
            let handle = try Tracer.attach(["bench_f"], callback: emptyCallback)
            cIsLeaf = OpsRegistry.shared.isLeafStub(try currentTarget(handle), of: handle.ops)
            return [handle]
        },
        Configuration(name: "empty C callback (generic lean)") {
            OpsRegistry.shared.leafStubsEnabled = false
            defer { OpsRegistry.shared.leafStubsEnabled = leafWasOn }
            return [try Tracer.attach(["bench_f"], callback: emptyCallback)]
        },
        Configuration(name: "counter++ C callback (leaf stub)") {
            let handle = try Tracer.attach(["bench_f"], callback: counterCallback)
            kIsLeaf = OpsRegistry.shared.isLeafStub(try currentTarget(handle), of: handle.ops)
            return [handle]
        },
        Configuration(name: "empty Swift @convention(c)") {
            [try Tracer.attach(["bench_f"], callback: swiftEmptyCallback)]
        },
        Configuration(name: "counting Swift @convention(c)") {
            [try Tracer.attach(["bench_f"], callback: swiftCounterCallback, data: UnsafeMutableRawPointer(swiftCounter))]
        },
        Configuration(name: "empty C callback, beyond 2 GiB") {
            // The Swift callbacks above live in this executable, more than
            // 2 GiB from bench_f's library: their leaf stubs call through a
            // literal. The same empty C callback (a `ret`) placed far shows
            // what distance costs.
            guard let farRet = farCallback else { return [] }
            return [try Tracer.attach(["bench_f"], callback: unsafeBitCast(farRet, to: OpsCallback.self))]
        },
        Configuration(name: "empty Swift closure (per-function)") {
            [try Tracer.attach("bench_f") { _ in }]
        },
        Configuration(name: "iterator (closure + C callback)") {
            [try Tracer.attach("bench_f") { _ in }, try Tracer.attach(["bench_f"], callback: emptyCallback)]
        },
    ]
    counter.pointee = 0
    for _ in 0..<rounds {
        let base = measure()
        untraced.append(base)
        for index in configurations.indices {
            let handles = try configurations[index].attach()
            let value = measure()
            for handle in handles.reversed() { try handle.detach() }
            configurations[index].added.append(value - base)
        }
    }
    // The counting callback ran once per call of its measurements.
    let expectedCount = UInt64(rounds * (calls / 10 + calls))
    if counter.pointee != expectedCount {
        printError("livetrace-tramp-bench: the counter callback counted \(counter.pointee) calls, expected \(expectedCount)\n")
        exit(1)
    }
    let u = spread(untraced)
    print("tramp: \(rounds) alternating rounds of \(calls) calls; median (range) ns per call")
    print("tramp: \("untraced call (nop5 site)".padding(toLength: 36, withPad: " ", startingAt: 0)) \(format(u.median)) (\(format(u.low))-\(format(u.high)))")
    for configuration in configurations {
        var name = configuration.name
        if name.hasPrefix("empty C callback (leaf") && !cIsLeaf { name = "empty C callback (leaf off)" }
        if name.hasPrefix("counter++") && !kIsLeaf { name = "counter++ C callback (generic)" }
        let a = spread(configuration.added)
        print("tramp: \(name.padding(toLength: 36, withPad: " ", startingAt: 0)) +\(format(a.median)) (\(format(a.low))-\(format(a.high))) added")
    }
    print("tramp: targets: C callback <= 3 ns added, Swift closure <= 6 ns added")
    row("trampoline: empty C callback, leaf stub, added per call", configurations[0].added, unit: "ns", target: "<= 3 ns", limit: 3)
    row("trampoline: empty Swift closure, added per call", configurations[6].added, unit: "ns", target: "<= 6 ns", limit: 6)

    // The leaf analysis runs once per ops, at its first stub: its cost is
    // part of attaching, not of a call.
    var analysisTimes: [Double] = []
    for _ in 0..<201 {
        let start = monotonicNanoseconds()
        for _ in 0..<100 { _ = LeafCallbackAnalysis.analyze(counterEntry) }
        analysisTimes.append(Double(monotonicNanoseconds() - start) / 100)
    }
    analysisTimes.sort()
    print("tramp: leaf analysis of the counter++ callback: \(format(analysisTimes[100] / 1000)) us median, \(format(analysisTimes[20] / 1000))-\(format(analysisTimes[180] / 1000)) us (10th-90th percentile of 201 runs of 100)")
} catch {
    printError("livetrace-tramp-bench: \(error)\n")
    exit(1)
}

/// The trampoline the traced function's site jumps to now.
func currentTarget(_ handle: TraceHandle) throws -> UInt {
    guard let site = handle.functions.first, case let .jump(target) = OpsRegistry.shared.instruction(at: site.address) else {
        throw TraceError.invalidArgument("bench_f is not patched")
    }
    return target
}

/// A read+exec page below 2 GiB holding `code` (never unmapped: a retired
/// stub may still return into it during a grace period), or nil.
func farExecutablePage(holding code: [UInt8]) -> UnsafeMutableRawPointer? {
    for candidate in stride(from: UInt(0x2000_0000), to: 0x8000_0000, by: 0x1000_0000) {
        let page = mmap(UnsafeMutableRawPointer(bitPattern: candidate), 4096, PROT_READ | PROT_WRITE,
                        MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0)
        guard page != MAP_FAILED, let page else { continue }
        guard page == UnsafeMutableRawPointer(bitPattern: candidate) else { munmap(page, 4096); continue }
        code.withUnsafeBytes { page.copyMemory(from: $0.baseAddress!, byteCount: code.count) }
        guard mprotect(page, 4096, PROT_READ | PROT_EXEC) == 0 else { return nil }
        return page
    }
    return nil
}

func monotonicNanoseconds() -> UInt64 {
    var now = timespec()
    clock_gettime(CLOCK_MONOTONIC, &now)
    return UInt64(now.tv_sec) * 1_000_000_000 + UInt64(now.tv_nsec)
}

func printError(_ text: String) {
    var bytes = Array(text.utf8)
    _ = bytes.withUnsafeMutableBytes { write(2, $0.baseAddress, $0.count) }
}
