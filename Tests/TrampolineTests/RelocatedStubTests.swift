// Relocated stubs (RelocatedStub.swift): a function called through the stub
// of its moved prologue returns what the function itself returns — rip-
// relative loads and addresses, short jcc and jmp widened, a jcc right after
// the moved bytes, endbr64 left behind — and the thread-move map points every
// boundary strictly inside the moved bytes to its copy.
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
        let sizes = Dictionary(try ElfObject(path: path).prologueRelocations().entries.map { ($0.symbol, $0.size) },
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
}
