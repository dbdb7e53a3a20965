// Ops on functions without sites (OpsRegistry.includeDynamic): attached
// closures see every call of relocated functions exactly once with the
// function's own site as `ip`, refused functions are never written, and a
// relocated entry switched between its per-function trampoline and an
// iterator while threads call it (plain, signals blocked, from a handler)
// counts every call once.
import Glibc
import LiveTrace
@testable import LiveTraceTrampolines
import Synchronization
import TestSupport
import XCTest

final class RelocatedOpsTests: XCTestCase {
    final class Counts: @unchecked Sendable {
        let lock = NSLock()
        var bySite: [UInt: Int] = [:]
        func add(_ site: UInt) { lock.lock(); bySite[site, default: 0] += 1; lock.unlock() }
    }

    typealias Unary = @convention(c) (Int32) -> Int32

    static func library(_ name: String) throws -> (UnsafeMutableRawPointer, String) {
        let path = try Fixtures.compile(["relocation/prologues.c", "relocation/hammer.c"], compiler: "gcc",
                                        flags: ["-O2", "-shared", "-fPIC", "-pthread"], output: "libltfix_relops_\(name).so")
        guard let handle = dlopen(path, RTLD_NOW | RTLD_LOCAL) else {
            throw FixtureError.compileFailed(command: "dlopen \(path)", output: String(cString: dlerror()))
        }
        return (handle, path)
    }

    func testAttachedClosureCountsEveryCallOfRelocatedFunctionsOnce() throws {
        let (handle, _) = try Self.library("attach")
        OpsRegistry.shared.includeDynamic = true
        defer { OpsRegistry.shared.includeDynamic = false }
        let names = ["rel_rip_load", "rel_rip_lea", "rel_jcc_inside", "rel_jcc_after", "rel_endbr", "rel_jmp_inside", "c_sum"]
        let addresses = names.map { UInt(bitPattern: TrampolineFixtures.address(handle, $0)) }
        let refused = UInt(bitPattern: TrampolineFixtures.address(handle, "rel_call_first"))
        let originals = addresses.map { Array(UnsafeRawBufferPointer(start: UnsafeRawPointer(bitPattern: $0), count: 12)) }
        // Results before any patching, to compare with.
        let expected = names.map { name in (0..<20).map { TrampolineFixtures.symbol(handle, name, as: Unary.self)(Int32($0)) } }

        let counts = Counts()
        let patterns = (addresses + [refused]).map { "0x" + String($0, radix: 16) }
        let traced = try Tracer.attach(patterns) { call in counts.add(call.site) }
        XCTAssertEqual(Set(traced.functions.map(\.functionAddress)), Set(addresses))
        let refusals = OpsRegistry.shared.dynamicRefusals
        XCTAssertEqual(refusals.map(\.site.functionAddress), [refused])
        XCTAssertEqual(refusals.first?.reason, .cannotMove(offset: 0, mnemonic: "call"))
        XCTAssertEqual(Array(UnsafeRawBufferPointer(start: UnsafeRawPointer(bitPattern: refused), count: 5)),
                       [0xe8] + Array(UnsafeRawBufferPointer(start: UnsafeRawPointer(bitPattern: refused + 1), count: 4)),
                       "a refused function is never written")

        for (i, name) in names.enumerated() {
            let f = TrampolineFixtures.symbol(handle, name, as: Unary.self)
            for x in 0..<(i + 1) * 3 { XCTAssertEqual(f(Int32(x % 20)), expected[i][x % 20], "\(name)(\(x))") }
        }
        for (i, address) in addresses.enumerated() {
            let site = traced.functions.first { $0.functionAddress == address }!.address
            XCTAssertEqual(counts.bySite[site], (i + 1) * 3, names[i])
        }
        try traced.detach()
        for (i, name) in names.enumerated() { _ = TrampolineFixtures.symbol(handle, name, as: Unary.self)(1); _ = i }
        XCTAssertEqual(counts.bySite.values.reduce(0, +), (1...names.count).reduce(0) { $0 + $1 * 3 }, "no call counted after detach")
        // Still relocated (off: jmp to the stub) until restored.
        XCTAssertTrue(Set(OpsRegistry.shared.relocatedFunctions).isSuperset(of: traced.functions.map(\.address)))
        try OpsRegistry.shared.restoreRelocatedFunctions()
        for (i, address) in addresses.enumerated() {
            XCTAssertEqual(Array(UnsafeRawBufferPointer(start: UnsafeRawPointer(bitPattern: address), count: 12)), originals[i], names[i])
            XCTAssertEqual(TrampolineFixtures.symbol(handle, names[i], as: Unary.self)(7), expected[i][7])
        }
    }

    func testPerFunctionAndIteratorSwitchesOnARelocatedEntryCountEveryCallOnce() throws {
        let (handle, _) = try Self.library("seed")
        OpsRegistry.shared.includeDynamic = true
        defer { OpsRegistry.shared.includeDynamic = false }
        let pattern = "0x" + String(UInt(bitPattern: TrampolineFixtures.address(handle, "rel_pause2")), radix: 16)
        let countA = Atomic<Int>(0)
        let a = try Tracer.attach(pattern) { _ in countA.add(1, ordering: .relaxed) }
        typealias Start = @convention(c) () -> Void
        typealias Stop = @convention(c) (UnsafeMutablePointer<Int>) -> Void
        TrampolineFixtures.symbol(handle, "hammer_start", as: Start.self)()
        var switches = 0
        for _ in 0..<40 {
            let b = try Tracer.attach(pattern) { _ in }
            try b.detach()
            switches += 2
        }
        var out = [Int](repeating: 0, count: 4)
        out.withUnsafeMutableBufferPointer { TrampolineFixtures.symbol(handle, "hammer_stop", as: Stop.self)($0.baseAddress!) }
        try a.detach()
        print("relocated seed: \(switches) switches, calls \(out[0..<3]), counted \(countA.load(ordering: .relaxed))")
        XCTAssertEqual(out[3], 0, "wrong results")
        XCTAssertTrue(out[0..<3].allSatisfy { $0 > 0 }, "\(out)")
        XCTAssertEqual(countA.load(ordering: .relaxed), out[0] + out[1] + out[2])
        try OpsRegistry.shared.restoreRelocatedFunctions()
    }

    /// `restoreRelocatedFunctions` while threads call the function (one
    /// plain, one with signals blocked, one from a signal handler; they
    /// sit in its `pause` instructions, inside the stub): the original bytes
    /// come back and every slot returns to the JIT only after a grace
    /// period, so after each restore the free-slot count is the starting
    /// one (a leaked stub fails it). Cycles alternate with relocating
    /// another function (rel_long) that takes the freed slot first: a stub
    /// reused while a thread was still inside would hand it rel_long's bytes
    /// mid-instruction (wrong results or a crash). That half is weak: the
    /// next relocation comes a register's site walk (~0.5 s) after the free,
    /// so removing the grace period was not caught in two runs.
    func testRestoreWhileThreadsCallReclaimsEveryStubOnlyAfterAGracePeriod() throws {
        let (handle, _) = try Self.library("reclaim")
        OpsRegistry.shared.includeDynamic = true
        defer { OpsRegistry.shared.includeDynamic = false }
        let pause2 = UInt(bitPattern: TrampolineFixtures.address(handle, "rel_pause2"))
        let long = UInt(bitPattern: TrampolineFixtures.address(handle, "rel_long"))
        let originals = [pause2, long].map { Array(UnsafeRawBufferPointer(start: UnsafeRawPointer(bitPattern: $0), count: 12)) }
        func cycle(_ address: UInt) throws {
            let traced = try Tracer.attach("0x" + String(address, radix: 16)) { _ in }
            XCTAssertEqual(traced.functions.map(\.functionAddress), [address])
            try traced.detach()
            try OpsRegistry.shared.restoreRelocatedFunctions()
        }
        // The first cycle maps the region the others reuse.
        try cycle(pause2)
        let start = OpsRegistry.shared.statistics
        typealias Start = @convention(c) () -> Void
        typealias Stop = @convention(c) (UnsafeMutablePointer<Int>) -> Void
        TrampolineFixtures.symbol(handle, "hammer_start", as: Start.self)()
        var out = [Int](repeating: 0, count: 4)
        defer {
            if out == [0, 0, 0, 0] {
                out.withUnsafeMutableBufferPointer { TrampolineFixtures.symbol(handle, "hammer_stop", as: Stop.self)($0.baseAddress!) }
            }
        }
        let cycles = 6
        for round in 0..<cycles {
            try cycle(round % 2 == 0 ? pause2 : long)
            let now = OpsRegistry.shared.statistics
            XCTAssertEqual(now.jitFreeSlots, start.jitFreeSlots, "round \(round): every slot back after the restore")
            XCTAssertEqual(now.jitRegions, start.jitRegions)
            XCTAssertEqual(now.retiredItems, 0)
            XCTAssertFalse(OpsRegistry.shared.relocatedFunctions.contains { $0 == pause2 || $0 == long })
        }
        let end = OpsRegistry.shared.statistics
        XCTAssertGreaterThanOrEqual(end.gracePeriods - start.gracePeriods, cycles, "one grace period per restore at least")
        out.withUnsafeMutableBufferPointer { TrampolineFixtures.symbol(handle, "hammer_stop", as: Stop.self)($0.baseAddress!) }
        print("relocated reclaim: \(cycles) restores with threads calling, calls \(out[0..<3]), \(end.gracePeriods - start.gracePeriods) grace periods, \(end.jitFreeSlots) free slots")
        XCTAssertEqual(out[3], 0, "wrong results")
        XCTAssertTrue(out[0..<3].allSatisfy { $0 > 0 }, "\(out)")
        for (address, original) in zip([pause2, long], originals) {
            XCTAssertEqual(Array(UnsafeRawBufferPointer(start: UnsafeRawPointer(bitPattern: address), count: 12)), original)
        }
    }
}
