// Cost per call of an enabled site: empty C callback through its leaf stub
// (the issue's target) and through the generic lean entry (leaf stubs off),
// a `counter++` C callback (leaf stub), the same two as Swift
// @convention(c) closures compiled here (release: leaf stubs), the empty C
// callback placed beyond 2 GiB like them, empty Swift closure, and the
// iterator, against the untraced call of the same
// function, all measured in this run; and the time of the leaf analysis of
// one callback.
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

/// Best of 7 runs, in ns per call.
func measure() -> Double {
    _ = loop(calls / 10)
    var best = Double.infinity
    for _ in 0..<7 { best = min(best, Double(loop(calls)) / Double(calls)) }
    return best
}

func report(_ name: String, _ value: Double, baseline: Double) {
    let added = value - baseline
    let line = "tramp: \(name.padding(toLength: 34, withPad: " ", startingAt: 0)) \(format(value)) ns/call  (+\(format(added)) ns, \(format(value / baseline))x)"
    print(line)
}

func format(_ x: Double) -> String {
    let scaled = (x * 100).rounded() / 100
    return String(scaled)
}

do {
    // The baseline is the best of two untraced measurements, one before the
    // traced ones and one after, so a slow start does not flatter the rest.
    let untracedFirst = measure()
    let untraced = untracedFirst
    print("tramp: \("untraced call (nop5 site)".padding(toLength: 34, withPad: " ", startingAt: 0)) \(format(untraced)) ns/call")

    let leafWasOn = OpsRegistry.shared.leafStubsEnabled
    let c = try Tracer.attach(["bench_f"], callback: emptyCallback)
    let perFunction = measure()
    let cIsLeaf = OpsRegistry.shared.isLeafStub(try currentTarget(c), of: c.ops)
    report(cIsLeaf ? "empty C callback (leaf stub)" : "empty C callback (leaf off)", perFunction, baseline: untraced)
    try c.detach()

    OpsRegistry.shared.leafStubsEnabled = false
    let g = try Tracer.attach(["bench_f"], callback: emptyCallback)
    let generic = measure()
    report("empty C callback (generic lean)", generic, baseline: untraced)
    try g.detach()
    OpsRegistry.shared.leafStubsEnabled = leafWasOn

    counter.pointee = 0
    let k = try Tracer.attach(["bench_f"], callback: counterCallback)
    let counting = measure()
    let kIsLeaf = OpsRegistry.shared.isLeafStub(try currentTarget(k), of: k.ops)
    report(kIsLeaf ? "counter++ C callback (leaf stub)" : "counter++ C callback (generic)", counting, baseline: untraced)
    try k.detach()
    // measure() makes 7 timed runs after one warm-up of a tenth.
    let expectedCount = UInt64(calls / 10 + 7 * calls)
    if counter.pointee != expectedCount {
        printError("livetrace-tramp-bench: the counter callback counted \(counter.pointee) calls, expected \(expectedCount)\n")
        exit(1)
    }

    let swiftEmpty = try Tracer.attach(["bench_f"], callback: swiftEmptyCallback)
    let swiftEmptyCost = measure()
    let swiftEmptyIsLeaf = OpsRegistry.shared.isLeafStub(try currentTarget(swiftEmpty), of: swiftEmpty.ops)
    report("empty Swift @convention(c) " + (swiftEmptyIsLeaf ? "(leaf)" : "(gen.)"), swiftEmptyCost, baseline: untraced)
    try swiftEmpty.detach()

    let swiftCounting = try Tracer.attach(["bench_f"], callback: swiftCounterCallback, data: UnsafeMutableRawPointer(swiftCounter))
    let swiftCountingCost = measure()
    let swiftCountingIsLeaf = OpsRegistry.shared.isLeafStub(try currentTarget(swiftCounting), of: swiftCounting.ops)
    report("Swift @convention(c) count " + (swiftCountingIsLeaf ? "(leaf)" : "(gen.)"), swiftCountingCost, baseline: untraced)
    try swiftCounting.detach()
    if swiftCounter.pointee != expectedCount {
        printError("livetrace-tramp-bench: the Swift counter callback counted \(swiftCounter.pointee) calls, expected \(expectedCount)\n")
        exit(1)
    }

    // The Swift callbacks above live in this executable, more than 2 GiB
    // from bench_f's library: their leaf stubs call through a literal. The
    // same empty C callback (a `ret`) placed far shows what distance costs.
    if let farRet = farExecutablePage(holding: [0xc3]) {
        let far = try Tracer.attach(["bench_f"], callback: unsafeBitCast(farRet, to: OpsCallback.self))
        let farCost = measure()
        report("empty C callback, far " + (OpsRegistry.shared.isLeafStub(try currentTarget(far), of: far.ops) ? "(leaf)" : "(gen.)"), farCost, baseline: untraced)
        try far.detach()
    }

    let closure = try Tracer.attach("bench_f") { _ in }
    let swiftClosure = measure()
    report("empty Swift closure (per-function)", swiftClosure, baseline: untraced)

    let second = try Tracer.attach(["bench_f"], callback: emptyCallback)
    let iterator = measure()
    report("iterator (closure + C callback)", iterator, baseline: untraced)
    try second.detach()
    try closure.detach()

    let after = measure()
    let baseline = min(untracedFirst, after)
    print("tramp: untraced again after detach     \(format(after)) ns/call; baseline used below: \(format(baseline)) ns/call")
    print("tramp: added per call: C callback \(format(perFunction - baseline)) ns (\(cIsLeaf ? "leaf stub" : "generic")), generic lean \(format(generic - baseline)) ns, counter++ \(format(counting - baseline)) ns, Swift @convention(c) empty \(format(swiftEmptyCost - baseline)) ns (\(swiftEmptyIsLeaf ? "leaf stub" : "generic")) and counter \(format(swiftCountingCost - baseline)) ns, Swift closure \(format(swiftClosure - baseline)) ns, iterator of two \(format(iterator - baseline)) ns")
    print("tramp: targets: C callback <= 3 ns added, Swift closure <= 6 ns added")

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
