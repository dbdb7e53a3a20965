// Live relocation of a prologue (TextPoker.relocate/restore, RelocatedEntry):
// threads call a relocated function flat out — one plain, one with every
// signal blocked, one from a signal handler — while its entry is relocated
// and restored, or switched between two counting targets, thousands of
// times: every result right, every call counted exactly once, no crash; the
// threads found strictly inside the moved bytes are moved to the stub.
import CLiveTraceShims
import Foundation
import Glibc
import LiveTrace
@testable import LiveTraceTrampolines
import TestSupport
import XCTest

final class RelocatedPokeTests: XCTestCase {
    let poker = TextPoker.shared
    typealias Start = @convention(c) () -> Void
    typealias Stop = @convention(c) (UnsafeMutablePointer<Int>) -> Void

    struct Fixture {
        var handle: UnsafeMutableRawPointer
        var entry: RelocatedEntry
        var jit: JITMemory
        var stub: RelocatedStub

        func start() { TrampolineSymbol.call(handle, "hammer_start", as: Start.self)() }
        /// Calls per thread (plain, blocked, handler) and wrong results.
        func stop() -> [Int] {
            var out = [Int](repeating: 0, count: 4)
            out.withUnsafeMutableBufferPointer { TrampolineSymbol.call(handle, "hammer_stop", as: Stop.self)($0.baseAddress!) }
            return out
        }
    }

    enum TrampolineSymbol {
        static func call<T>(_ handle: UnsafeMutableRawPointer, _ name: String, as type: T.Type) -> T {
            unsafeBitCast(dlsym(handle, name)!, to: type)
        }
    }

    func fixture(_ name: String, function: String = "rel_pause2") throws -> Fixture {
        let path = try Fixtures.compile(["relocation/prologues.c", "relocation/hammer.c"], compiler: "gcc",
                                        flags: ["-O2", "-shared", "-fPIC", "-pthread"], output: "libltfix_reloc_\(name).so")
        guard let handle = dlopen(path, RTLD_NOW | RTLD_LOCAL) else {
            throw FixtureError.compileFailed(command: "dlopen \(path)", output: String(cString: dlerror()))
        }
        let relocations = try ElfObject(path: path).prologueRelocations()
        let size = try XCTUnwrap(relocations.entries.first { relocations.symbol(of: $0) == function }?.size)
        let address = UInt(bitPattern: dlsym(handle, function))
        let relocation = try PrologueRelocation.analyze(functionAt: address, size: size).get()
        let jit = JITMemory()
        let stub = try jit.placeRelocatedStub(relocation)
        let entry = RelocatedEntry(relocation: relocation, stub: stub.address, stubOffsets: stub.offsets)
        return Fixture(handle: handle, entry: entry, jit: jit, stub: stub)
    }

    /// A JIT stub that counts in `counter` (lock inc through r11, which is
    /// free at a function entry) and continues at `stub`.
    func countingStub(_ jit: JITMemory, near site: UInt, counter: UnsafeMutablePointer<UInt64>, continueAt stub: UInt) throws -> UInt {
        let slot = try jit.allocate(near: site)
        let address = jit.address(of: slot)
        var bytes: [UInt8] = [0x49, 0xbb] + withUnsafeBytes(of: UInt64(UInt(bitPattern: counter)).littleEndian) { Array($0) }
        bytes += [0xf0, 0x49, 0xff, 0x03]
        let rel = Int32(Int(stub) - Int(address) - (bytes.count + 5))
        bytes += [0xe9] + withUnsafeBytes(of: rel.littleEndian) { Array($0) }
        bytes += [UInt8](repeating: 0xcc, count: JITMemory.slotSize - bytes.count)
        try jit.write(bytes, at: address)
        return address
    }

    func testRelocateAndRestoreThousandsOfTimesWithThreadsCalling() throws {
        let f = try fixture("cycle")
        let original = Array(UnsafeRawBufferPointer(start: UnsafeRawPointer(bitPattern: f.entry.site.address), count: 6))
        let rescuedBefore = poker.trapCounters.rescued
        f.start()
        for i in 0..<1000 {
            let r = poker.relocate([f.entry])
            XCTAssertEqual(r.patchedCount, 1, "cycle \(i): \(r.failed)")
            let back = poker.restore([f.entry])
            XCTAssertEqual(back.patchedCount, 1, "cycle \(i): \(back.failed)")
            if r.patchedCount != 1 || back.patchedCount != 1 { break }
        }
        let counts = f.stop()
        let rescued = poker.trapCounters.rescued - rescuedBefore
        print("relocate/restore x1000: calls \(counts[0..<3]), threads moved into the stub \(rescued)")
        XCTAssertEqual(counts[3], 0, "wrong results")
        XCTAssertTrue(counts[0..<3].allSatisfy { $0 > 0 }, "\(counts)")
        XCTAssertGreaterThan(rescued, 0, "no thread was ever found inside the moved bytes")
        XCTAssertEqual(Array(UnsafeRawBufferPointer(start: UnsafeRawPointer(bitPattern: f.entry.site.address), count: 6)), original)
    }

    func testSwitchingARelocatedEntryBetweenTwoTargetsCountsEveryCallOnce() throws {
        let f = try fixture("switch")
        let counters = UnsafeMutablePointer<UInt64>.allocate(capacity: 2)
        counters.initialize(repeating: 0, count: 2)
        defer { counters.deallocate() }
        let a = try countingStub(f.jit, near: f.entry.site.address, counter: counters, continueAt: f.stub.address)
        let b = try countingStub(f.jit, near: f.entry.site.address, counter: counters + 1, continueAt: f.stub.address)
        XCTAssertEqual(poker.relocate([f.entry]).patchedCount, 1)
        XCTAssertEqual(poker.apply([SiteTransition(site: f.entry.site, to: .jump(a))]).patchedCount, 1)
        f.start()
        var current = a
        for i in 0..<3000 {
            current = current == a ? b : a
            let r = poker.apply([SiteTransition(site: f.entry.site, to: .jump(current))])
            if r.patchedCount != 1 { XCTFail("switch \(i): \(r.failed) \(r.skipped)"); break }
        }
        let counts = f.stop()
        XCTAssertEqual(counts[3], 0, "wrong results")
        XCTAssertEqual(UInt64(counts[0] + counts[1] + counts[2]), counters[0] + counters[1], "calls \(counts) counted \(counters[0]) + \(counters[1])")
        XCTAssertGreaterThan(counters[0], 0)
        XCTAssertGreaterThan(counters[1], 0)
        // Off, then the original bytes back.
        XCTAssertEqual(poker.apply([SiteTransition(site: f.entry.site, to: .jump(f.stub.address))]).patchedCount, 1)
        XCTAssertEqual(poker.restore([f.entry]).patchedCount, 1)
        XCTAssertEqual(Array(UnsafeRawBufferPointer(start: UnsafeRawPointer(bitPattern: f.entry.site.address), count: 6)), Array(f.entry.original))
    }

    func testRelocateRefusesChangedBytesAndRestoreRefusesAPatchedEntry() throws {
        let f = try fixture("refuse")
        var wrong = f.entry
        wrong.original[1] ^= 0xff
        XCTAssertEqual(poker.relocate([wrong]).failed.count, 1)
        XCTAssertEqual(poker.relocate([f.entry]).patchedCount, 1)
        XCTAssertEqual(poker.apply([SiteTransition(site: f.entry.site, to: .jump(f.stub.address + 0))]).unchanged.count, 1)
        let slot = try f.jit.allocate(near: f.entry.site.address)
        try f.jit.write([0xe9] + withUnsafeBytes(of: Int32(Int(f.stub.address) - Int(f.jit.address(of: slot)) - 5).littleEndian) { Array($0) },
                        at: f.jit.address(of: slot))
        XCTAssertEqual(poker.apply([SiteTransition(site: f.entry.site, to: .jump(f.jit.address(of: slot)))]).patchedCount, 1)
        XCTAssertEqual(poker.restore([f.entry]).failed.count, 1, "restore must refuse an entry that is on")
        XCTAssertEqual(poker.apply([SiteTransition(site: f.entry.site, to: .jump(f.stub.address))]).patchedCount, 1)
        XCTAssertEqual(poker.restore([f.entry]).patchedCount, 1)
    }

    func testAPrologueLongerThanEightBytesIsRelocatedAndRestored() throws {
        let f = try fixture("long", function: "rel_long")
        XCTAssertEqual(f.entry.original.count, 10)
        typealias Long = @convention(c) (Int) -> Int
        let call = unsafeBitCast(dlsym(f.handle, "rel_long")!, to: Long.self)
        XCTAssertEqual(poker.relocate([f.entry]).patchedCount, 1)
        XCTAssertEqual(call(1), 0x1122334455667789)
        XCTAssertEqual(poker.restore([f.entry]).patchedCount, 1)
        XCTAssertEqual(Array(UnsafeRawBufferPointer(start: UnsafeRawPointer(bitPattern: f.entry.site.address), count: 10)), Array(f.entry.original))
        XCTAssertEqual(call(2), 0x112233445566778a)
    }
}
