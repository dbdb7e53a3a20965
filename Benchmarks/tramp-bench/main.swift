// Cost per call of an enabled site: empty C callback (per-function
// trampoline), empty Swift closure, and the iterator, against the untraced
// call of the same function, all measured in this run.
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

    let c = try Tracer.attach(["bench_f"], callback: emptyCallback)
    let perFunction = measure()
    report("empty C callback (per-function)", perFunction, baseline: untraced)
    try c.detach()

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
    print("tramp: added per call: C callback \(format(perFunction - baseline)) ns, Swift closure \(format(swiftClosure - baseline)) ns, iterator of two \(format(iterator - baseline)) ns")
    print("tramp: targets: C callback <= 3 ns added, Swift closure <= 6 ns added")
} catch {
    printError("livetrace-tramp-bench: \(error)\n")
    exit(1)
}

func printError(_ text: String) {
    var bytes = Array(text.utf8)
    _ = bytes.withUnsafeMutableBytes { write(2, $0.baseAddress, $0.count) }
}
