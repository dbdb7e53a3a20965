// The x86-64 encoding of JIT stubs (layout drawn in lt_tramp.h).
//
//   header slot (region + 0):
//     +0   address of lt_tramp_entry (8 bytes)
//     +8   address of lt_tramp_entry_lean (8 bytes)
//     +16  address of lt_tramp_entry_graph (8 bytes), then int3 to the slot's end
//   stub slot (64 bytes, one per site and target, immutable once published):
//     +0   4c 8d 1d 09 00 00 00   lea  r11, [rip + 0x9]    -> stub + 16 (record)
//     +7   ff 25 d0 d1 d2 d3      jmp  qword [rip + disp32] -> header +0, +8 or +16
//     +13  cc cc cc               int3 (never executed)
//     +16  func (8)               the lt_func the entry calls
//     +24  ops (8)                its `ops` argument
//     +32  resume (8)             the site + 5: where the function's body starts
//     +40  cc ...                 int3 to the slot's end
enum StubX86_64 {
    /// `lea r11, [rip + disp32]`: REX.W+R, LEA, ModRM(r11, rip-relative).
    static let leaR11RipRelative: [UInt8] = [0x4c, 0x8d, 0x1d]
    /// `jmp qword [rip + disp32]`: opcode FF /4, ModRM rip-relative.
    static let jmpRipIndirect: [UInt8] = [0xff, 0x25]
    static let int3: UInt8 = 0xcc
    static let leaLength = 7
    static let jmpLength = 6
    static let recordOffset = 16
    /// The permanent entries a stub can jump to, by their header slot.
    enum Entry: Int {
        case full = 0, lean = 8, graph = 16
    }

    static func header(full: UInt, lean: UInt, graph: UInt) -> [UInt8] {
        littleEndian(UInt64(full)) + littleEndian(UInt64(lean)) + littleEndian(UInt64(graph))
            + [UInt8](repeating: int3, count: JITMemory.slotSize - 24)
    }

    /// The bytes of a stub at `address` in the region at `regionBase`.
    static func stub(
        at address: UInt, regionBase: UInt, function: UInt, ops: UInt, resume: UInt, entry: Entry
    ) -> [UInt8] {
        var bytes = leaR11RipRelative + littleEndian(Int32(recordOffset - leaLength))
        let jmpEnd = Int64(bitPattern: UInt64(address)) + Int64(leaLength + jmpLength)
        let entrySlot = Int64(bitPattern: UInt64(regionBase)) + Int64(entry.rawValue)
        bytes += jmpRipIndirect + littleEndian(Int32(entrySlot - jmpEnd))
        bytes += [UInt8](repeating: int3, count: recordOffset - bytes.count)
        bytes += littleEndian(UInt64(function)) + littleEndian(UInt64(ops)) + littleEndian(UInt64(resume))
        bytes += [UInt8](repeating: int3, count: JITMemory.slotSize - bytes.count)
        return bytes
    }

    static func littleEndian<T: FixedWidthInteger>(_ value: T) -> [UInt8] {
        withUnsafeBytes(of: value.littleEndian) { Array($0) }
    }
}
