// The seed's test on relocated prologues, through the ops registry: threads
// call four relocated functions flat out (seed_hammer.c: plain, every signal
// blocked, from a signal handler; a slow prologue, rip-relative operands
// first, a branch right after the patched bytes) while their entries are
// switched between per-function trampolines and iterators, patched and
// unpatched, and given their original bytes back. The oracle is the
// fixture's own counts: a callback that stays attached counts every call
// exactly once; one attached and detached counts at least the calls made
// while it was stably on and none made while it was stably off.
// The suite makes thousands of changes: 2,000 trampoline switches per
// function, and 600 patch/unpatch rounds (about 2,000 changes, 150 restores
// of the original bytes). One change through the registry costs about 3 ms
// here with the threads running (debug build, 2 busy cores: 2,000 switches in
// 6.7 s, 200 patch/unpatch rounds in 5.3 s; 19 s and 18 s for 600 rounds
// while other builds ran), since it resolves its filter
// against sites indexed once per loaded-objects generation
// (RegistrySites.swift); it cost 0.5-2.5 s when every change walked every
// function of every loaded object. The soak (LIVETRACE_SOAK=1, make soak)
// makes 20,000 switch rounds and 2,000 patch/unpatch rounds.
import Foundation
import Glibc
import LiveTrace
@testable import LiveTraceTrampolines
import TestSupport
import XCTest

final class RelocatedSeedTests: XCTestCase {
    static let soak = ProcessInfo.processInfo.environment["LIVETRACE_SOAK"] == "1"
    static let functions = ["rel_pause2", "rel_rip_load", "rel_rip_lea", "rel_jcc_after"]

    typealias Start = @convention(c) () -> Void
    typealias Counts = @convention(c) (UnsafeMutablePointer<Int>) -> Void
    typealias Phase = @convention(c) (Int32) -> Void

    struct Fixture {
        let handle: UnsafeMutableRawPointer
        let patterns: [String]
        let callback: OpsCallback

        init(_ name: String) throws {
            let path = try Fixtures.compile(["relocation/prologues.c", "relocation/seed_hammer.c"], compiler: "gcc",
                                            flags: ["-O2", "-shared", "-fPIC", "-pthread"], output: "libltfix_relseed_\(name).so")
            guard let handle = dlopen(path, RTLD_NOW | RTLD_LOCAL) else {
                throw FixtureError.compileFailed(command: "dlopen \(path)", output: String(cString: dlerror()))
            }
            self.handle = handle
            patterns = RelocatedSeedTests.functions.map { "0x" + String(UInt(bitPattern: TrampolineFixtures.address(handle, $0)), radix: 16) }
            callback = TrampolineFixtures.symbol(handle, "seed_count", as: OpsCallback.self)
        }

        func start() { TrampolineFixtures.symbol(handle, "seed_start", as: Start.self)() }
        func phase(_ p: Int32) { TrampolineFixtures.symbol(handle, "seed_phase", as: Phase.self)(p) }
        /// Per thread (plain, blocked, handler): [made, stable on, stable off], and wrong results.
        func counts(stopping: Bool = false) -> (made: [Int], on: [Int], off: [Int], wrong: Int) {
            var out = [Int](repeating: 0, count: 10)
            out.withUnsafeMutableBufferPointer {
                TrampolineFixtures.symbol(handle, stopping ? "seed_stop" : "seed_counts", as: Counts.self)($0.baseAddress!)
            }
            return (Array(out[0..<3]), Array(out[3..<6]), Array(out[6..<9]), out[9])
        }

        /// Attaches seed_count to the four functions, counting into
        /// counters[0..<4] (and counters[4], calls of anything else).
        func attach(_ counters: UnsafeMutablePointer<Int>) throws -> [TraceHandle] {
            [try Tracer.attach(patterns, callback: callback, data: UnsafeMutableRawPointer(counters))]
        }
    }

    override func setUp() { OpsRegistry.shared.includeDynamic = true }
    override func tearDown() {
        try? OpsRegistry.shared.restoreRelocatedFunctions()
        OpsRegistry.shared.includeDynamic = false
    }

    func testPerFunctionAndIteratorSwitchesOnRelocatedEntriesCountEveryCallExactlyOnce() throws {
        try switchTrampolines(rounds: 1000)
    }

    func testPatchingAndUnpatchingRelocatedEntriesCountsEveryStablyEnabledCall() throws {
        try patchAndUnpatch(rounds: 600)
    }

    func testSoakRelocatedSeedThousandsOfChanges() throws {
        try XCTSkipUnless(Self.soak, "set LIVETRACE_SOAK=1 to run the soak")
        try switchTrampolines(rounds: 20_000)
        try patchAndUnpatch(rounds: 2_000)
    }

    func switchTrampolines(rounds: Int) throws {
        // A fixture of its own per round count: the soak runs after the
        // shorter test in the same process, and dlopen of the same file
        // would hand back the library whose call counters already ran.
        let f = try Fixture("switch\(rounds)")
        let counters = UnsafeMutablePointer<Int>.allocate(capacity: 10)
        counters.initialize(repeating: 0, count: 10)
        defer { counters.deallocate() }
        let kept = try f.attach(counters)
        f.start()
        let clock = ContinuousClock()
        let started = clock.now
        for _ in 0..<rounds {
            // A second ops on each entry: per-function trampoline -> iterator -> per-function.
            let other = try f.attach(counters + 5)
            for handle in other { try handle.detach(waitForQuiescence: false) }
        }
        let elapsed = clock.now - started
        let counts = f.counts(stopping: true)
        for handle in kept { try handle.detach() }
        let made = counts.made.reduce(0, +)
        print("relocated seed, switches: \(rounds * 2) per function in \(elapsed), groups made \(counts.made), counted \((0..<4).map { counters[$0] }), second ops \((5..<9).map { counters[$0] })")
        XCTAssertEqual(counts.wrong, 0, "wrong results")
        XCTAssertEqual(counters[4] + counters[9], 0, "calls of other functions counted")
        XCTAssertTrue(counts.made.allSatisfy { $0 > 0 }, "a thread never called: \(counts.made)")
        for (i, name) in Self.functions.enumerated() {
            XCTAssertEqual(counters[i], made, "\(name): counted \(counters[i]), called \(made)")
            XCTAssertLessThanOrEqual(counters[5 + i], made, name)
        }
    }

    func patchAndUnpatch(rounds: Int) throws {
        let f = try Fixture("patch\(rounds)")
        let counters = UnsafeMutablePointer<Int>.allocate(capacity: 10)
        counters.initialize(repeating: 0, count: 10)
        defer { counters.deallocate() }
        f.phase(2)
        f.start()
        let clock = ContinuousClock()
        let started = clock.now
        var restored = 0
        for round in 0..<rounds {
            f.phase(0)
            let handles = try f.attach(counters)
            f.phase(1)
            // Every other round an iterator for a while (two ops on each
            // entry): the first ops keeps counting through both switches.
            if round % 2 == 1 {
                let more = try f.attach(counters + 5)
                for handle in more { try handle.detach(waitForQuiescence: false) }
            }
            f.phase(0)
            for handle in handles { try handle.detach(waitForQuiescence: false) }
            f.phase(2)
            // Every fourth round the original bytes back: the next attach relocates again.
            if round % 4 == 3 {
                try OpsRegistry.shared.restoreRelocatedFunctions()
                restored += 1
            }
        }
        let elapsed = clock.now - started
        let counts = f.counts(stopping: true)
        let made = counts.made.reduce(0, +), on = counts.on.reduce(0, +), off = counts.off.reduce(0, +)
        print("relocated seed, patch/unpatch: \(rounds) rounds (\(restored) restores) in \(elapsed), groups made \(counts.made), stably on \(counts.on), stably off \(counts.off), counted \((0..<4).map { counters[$0] })")
        XCTAssertEqual(counts.wrong, 0, "wrong results")
        XCTAssertEqual(counters[4] + counters[9], 0, "calls of other functions counted")
        XCTAssertTrue((5..<9).allSatisfy { counters[$0] <= made }, "second ops counted more calls than made")
        XCTAssertTrue(counts.on.allSatisfy { $0 > 0 }, "a thread never ran inside an enabled window: \(counts.on)")
        XCTAssertTrue(counts.off.allSatisfy { $0 > 0 }, "a thread never ran inside a disabled window: \(counts.off)")
        for (i, name) in Self.functions.enumerated() {
            XCTAssertGreaterThanOrEqual(counters[i], on, "\(name): counted \(counters[i]) < \(on) made while stably on")
            XCTAssertLessThanOrEqual(counters[i], made - off, "\(name): counted \(counters[i]), made \(made), \(off) while stably off")
        }
    }
}
