// Relocated stubs (RelocatedStub.swift): a function called through the stub
// of its moved prologue returns what the function itself returns — rip-
// relative loads and addresses, short jcc and jmp widened, a jcc right after
// the moved bytes, endbr64 left behind — and the thread-move map points every
// boundary strictly inside the moved bytes to its copy.
import Foundation
import Glibc
import LiveTrace
@testable import LiveTraceTrampolines
import TestSupport
import XCTest

final class RelocatedStubTests: XCTestCase {
    typealias Unary = @convention(c) (Int32) -> Int32
    typealias Binary = @convention(c) (Int32, Int32) -> Int32

    static func load(_ compiler: String, _ level: String) throws -> (UnsafeMutableRawPointer, [String: Int]) {
        let path = try Fixtures.compile(["relocation/prologues.c"], compiler: compiler, flags: [level, "-shared", "-fPIC"],
                                        output: "libltfix_reloc_\(compiler)\(level).so")
        guard let handle = dlopen(path, RTLD_NOW | RTLD_LOCAL) else {
            throw FixtureError.compileFailed(command: "dlopen \(path)", output: String(cString: dlerror()))
        }
        let relocations = try ElfObject(path: path).prologueRelocations()
        let sizes = Dictionary(relocations.entries.map { (relocations.symbol(of: $0), $0.size) },
                               uniquingKeysWith: { a, _ in a })
        return (handle, sizes)
    }

    static func relocation(_ handle: UnsafeMutableRawPointer, _ sizes: [String: Int], _ name: String) throws -> PrologueRelocation {
        let address = UInt(bitPattern: TrampolineFixtures.address(handle, name))
        return try PrologueRelocation.analyze(functionAt: address, size: try XCTUnwrap(sizes[name])).get()
    }

    func testFunctionsCalledThroughTheirStubReturnWhatTheFunctionsReturn() throws {
        let jit = JITMemory()
        for (compiler, level) in [("gcc", "-O2"), ("clang", "-O2"), ("gcc", "-O0")] {
            let (handle, sizes) = try Self.load(compiler, level)
            let unary = ["rel_rip_load", "rel_rip_lea", "rel_jcc_inside", "rel_jcc_after", "rel_endbr", "rel_jmp_inside", "c_sum"]
            for name in unary {
                let relocation = try Self.relocation(handle, sizes, name)
                let stub = try jit.placeRelocatedStub(relocation)
                let direct = TrampolineFixtures.symbol(handle, name, as: Unary.self)
                // A stub is entered where the patch would be: after endbr64.
                let viaStub = unsafeBitCast(UnsafeRawPointer(bitPattern: stub.address), to: Unary.self)
                for x in Int32(-40)...40 {
                    XCTAssertEqual(viaStub(x), direct(x), "\(compiler) \(level) \(name)(\(x))")
                }
                jit.free(stub.slot)
            }
            let relocation = try Self.relocation(handle, sizes, "c_mix")
            let stub = try jit.placeRelocatedStub(relocation)
            let direct = TrampolineFixtures.symbol(handle, "c_mix", as: Binary.self)
            let viaStub = unsafeBitCast(UnsafeRawPointer(bitPattern: stub.address), to: Binary.self)
            for x in Int32(-5)...5 { for y in Int32(-5)...5 { XCTAssertEqual(viaStub(x, y), direct(x, y)) } }
            jit.free(stub.slot)
            // The stub reads the variable itself, not a copy.
            typealias Address = @convention(c) () -> UnsafeMutablePointer<Int32>
            let counter = TrampolineFixtures.symbol(handle, "rel_counter_address", as: Address.self)()
            let loadStub = try jit.placeRelocatedStub(try Self.relocation(handle, sizes, "rel_rip_load"))
            counter.pointee = 1000
            XCTAssertEqual(unsafeBitCast(UnsafeRawPointer(bitPattern: loadStub.address), to: Unary.self)(1), 1001)
            counter.pointee = 41
            jit.free(loadStub.slot)
        }
    }

    func testStubBytesWidenTheShortJccAndJumpBack() throws {
        let (handle, sizes) = try Self.load("gcc", "-O2")
        let relocation = try Self.relocation(handle, sizes, "rel_jcc_inside")
        let stub = try JITMemory().placeRelocatedStub(relocation)
        let bytes = Array(UnsafeRawBufferPointer(start: UnsafeRawPointer(bitPattern: stub.address), count: 18))
        func rel32(_ target: UInt, end: Int) -> [UInt8] {
            withUnsafeBytes(of: Int32(Int(target) - Int(stub.address) - end).littleEndian) { Array($0) }
        }
        // test edi, edi; js rel32 (0f 88); mov eax, edi; jmp rel32 back to +6.
        let expected: [UInt8] = [0x85, 0xff] + [0x0f, 0x88] + rel32(relocation.functionAddress + 9, end: 8)
            + [0x89, 0xf8] + [0xe9] + rel32(relocation.functionAddress + 6, end: 15) + [0xcc, 0xcc, 0xcc]
        XCTAssertEqual(bytes, expected)
        XCTAssertEqual(Array(stub.offsets), [0, 2, 8])
        XCTAssertEqual(stub.equivalent(of: relocation.patchAddress + 2), stub.address + 2)
        XCTAssertEqual(stub.equivalent(of: relocation.patchAddress + 4), stub.address + 8)
        XCTAssertNil(stub.equivalent(of: relocation.patchAddress), "the patch itself is not inside")
        XCTAssertNil(stub.equivalent(of: relocation.patchAddress + 3), "not an instruction boundary")
        XCTAssertNil(stub.equivalent(of: relocation.resumeAddress))
    }

    /// Stubs of several slots take contiguous free slots, never a slot in
    /// use, whatever order slots were freed in; freeing gives every slot back.
    func testMultiSlotStubsTakeContiguousFreeSlotsNeverOneInUse() throws {
        let jit = JITMemory()
        let near = UInt(bitPattern: TrampolineFixtures.address(dlopen(nil, RTLD_NOW), "getpid"))
        let first = try jit.allocate(near: near)
        let start = jit.freeSlotCount + 1
        var used = [first] + (try (0..<40).map { _ in try jit.allocate(near: near) })
        // Free every third slot: single free slots, no run of 2 among them.
        for index in stride(from: 39, through: 0, by: -3) { jit.free(used.remove(at: index)) }
        var taken: [JITSlot] = []
        for count in [2, 3, 2, 4, 1, 2] { taken.append(try jit.allocate(near: near, slots: count)) }
        var inUse = Set<Int>()
        for slot in used + taken {
            for index in slot.index..<slot.index + slot.count {
                XCTAssertTrue(inUse.insert(slot.region << 32 | index).inserted, "slot \(index) handed out twice")
            }
        }
        for slot in used + taken { jit.free(slot) }
        XCTAssertEqual(jit.freeSlotCount, start)
        // After the scrambled frees, a run is still found.
        let wide = try jit.allocate(near: near, slots: 4)
        XCTAssertEqual(jit.address(of: wide) + UInt(3 * JITMemory.slotSize),
                       jit.address(of: JITSlot(region: wide.region, index: wide.index + 3)))
    }

    /// The analysis with the stubs placed as it goes (the calling thread
    /// places each run's stubs while another thread analyzes on) places the
    /// same entries, in the same order, as the analysis followed by the
    /// placement, on libswiftCore as loaded in this process (about 20,000
    /// relocatable functions: many runs, two threads); each stub in memory
    /// holds exactly the bytes its relocation draws for that address. No
    /// function is patched.
    func testStubsPlacedAsTheAnalysisGoesEqualThoseOfTheWholeAnalysis() throws {
        let loaded = try XCTUnwrap(dlsym(dlopen(nil, RTLD_NOW), "swift_retain"), "libswiftCore.so is not loaded")
        // Its file: the mapping of /proc/self/maps that holds the function.
        let maps = String(decoding: try XCTUnwrap(FileHandle(forReadingAtPath: "/proc/self/maps")).readDataToEndOfFile(), as: UTF8.self)
        let path = try XCTUnwrap(maps.split(separator: "\n").lazy.compactMap { line -> String? in
            let fields = line.split(separator: " ", omittingEmptySubsequences: true)
            let range = fields[0].split(separator: "-").compactMap { UInt($0, radix: 16) }
            let at = UInt(bitPattern: loaded)
            return fields.count >= 6 && range.count == 2 && range[0] <= at && at < range[1] ? String(fields[5]) : nil
        }.first)
        let object = try ElfObject(path: path)
        let symbols: [FunctionSymbol] = try object.functionSymbols()
        let retain = try XCTUnwrap(symbols.first { $0.name == "swift_retain" })
        let bias = UInt(bitPattern: loaded) &- UInt(retain.address)
        var failures: [Int] = []
        let whole = RelocatedStubArena().placeEveryRelocatableFunction(of: try object.prologueRelocations(), loadBias: bias) { index, _ in
            failures.append(index)
        }
        let (relocations, asItGoes) = try RelocatedStubArena().analyzeAndPlaceEveryRelocatableFunction(of: object, loadBias: bias, threads: 2) {
            index, _ in failures.append(index)
        }
        XCTAssertEqual(failures, [])
        XCTAssertGreaterThan(relocations.entries.count, 4 * 2048, "enough functions for two threads and many runs")
        XCTAssertGreaterThan(asItGoes.count, 10_000)
        XCTAssertEqual(asItGoes.count, whole.count)
        let relocatable = relocations.entries.compactMap { entry -> PrologueRelocation? in
            guard entry.size >= 5, case let .success(relocation) = entry.verdict else { return nil }
            return relocation.rebased(by: bias)
        }
        XCTAssertEqual(relocatable.count, asItGoes.count)
        var mismatched = 0
        for (k, (a, b)) in zip(asItGoes, whole).enumerated() {
            guard a.address == b.address, a.functionAddress == b.functionAddress, a.original == b.original, a.stubOffsets == b.stubOffsets,
                  a.stub != b.stub, a.functionAddress == relocatable[k].functionAddress else { mismatched += 1; continue }
            let drawn = try relocatable[k].stubBytes(at: a.stub).bytes
            let written = Array(UnsafeRawBufferPointer(start: UnsafeRawPointer(bitPattern: a.stub), count: drawn.count))
            if written != drawn { mismatched += 1 }
        }
        XCTAssertEqual(mismatched, 0)
    }
}
