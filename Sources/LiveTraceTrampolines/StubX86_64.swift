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
//                                 (a relocated entry: its relocated stub)
//     +40  site (8)               the site itself: the `ip` callbacks get
//     +48  cc ...                 int3 to the slot's end
import CLiveTraceShims
import LiveTraceSites

enum StubX86_64 {
    /// `lea r11, [rip + disp32]`: REX.W+R, LEA, ModRM(r11, rip-relative).
    static let leaR11RipRelative: [UInt8] = [0x4c, 0x8d, 0x1d]
    /// `jmp qword [rip + disp32]`: opcode FF /4, ModRM rip-relative.
    static let jmpRipIndirect = X86Opcode.jmpRipIndirect
    static let int3 = X86Opcode.int3
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

    /// The bytes of a stub at `address` in the region at `regionBase`: one
    /// whole slot, written in place (an attach builds one per traced
    /// function).
    static func stub(
        at address: UInt, regionBase: UInt, function: UInt, ops: UInt, resume: UInt, site: UInt, entry: Entry
    ) -> [UInt8] {
        let jmpEnd = Int64(bitPattern: UInt64(address)) + Int64(leaLength + jmpLength)
        let entrySlot = Int64(bitPattern: UInt64(regionBase)) + Int64(entry.rawValue)
        return [UInt8](unsafeUninitializedCapacity: JITMemory.slotSize) { buffer, count in
            buffer.initialize(repeating: int3)
            let raw = UnsafeMutableRawBufferPointer(buffer)
            for (i, byte) in leaR11RipRelative.enumerated() { raw[i] = byte }
            raw.storeBytes(of: Int32(recordOffset - leaLength).littleEndian, toByteOffset: leaLength - 4, as: Int32.self)
            for (i, byte) in jmpRipIndirect.enumerated() { raw[leaLength + i] = byte }
            raw.storeBytes(of: Int32(entrySlot - jmpEnd).littleEndian, toByteOffset: leaLength + jmpLength - 4, as: Int32.self)
            storeRecord(function: function, ops: ops, resume: resume, site: site, into: raw, at: recordOffset)
            count = JITMemory.slotSize
        }
    }

    /// struct lt_stub_record's bytes at `base`, each field at its offset in
    /// lt_tramp_layout.h (the assembly reads them there).
    private static func storeRecord(function: UInt, ops: UInt, resume: UInt, site: UInt, into raw: UnsafeMutableRawBufferPointer, at base: Int) {
        raw.storeBytes(of: UInt64(function).littleEndian, toByteOffset: base + Int(LT_LAYOUT_RECORD_FUNC), as: UInt64.self)
        raw.storeBytes(of: UInt64(ops).littleEndian, toByteOffset: base + Int(LT_LAYOUT_RECORD_OPS), as: UInt64.self)
        raw.storeBytes(of: UInt64(resume).littleEndian, toByteOffset: base + Int(LT_LAYOUT_RECORD_RESUME), as: UInt64.self)
        raw.storeBytes(of: UInt64(site).littleEndian, toByteOffset: base + Int(LT_LAYOUT_RECORD_SITE), as: UInt64.self)
    }

    static func littleEndian<T: FixedWidthInteger>(_ value: T) -> [UInt8] {
        withUnsafeBytes(of: value.littleEndian) { Array($0) }
    }
}

// The leaf stub: a per-site stub for an ops whose callback is a small leaf
// function (LeafCallbackX86_64.swift). It is entered by the site's
// `jmp rel32` with [rsp] = parent_ip and rsp = 8 mod 16, and calls the
// callback itself: no entry, no lt_regs, no recursion guard, no errno save.
// Why each can go:
//   - lt_regs: the callback provably never reads rcx before writing it;
//   - the recursion guard and E1/E2: the callback calls nothing, so it
//     cannot reach a traced function; the reclaimer sees a thread in it by
//     its PC (Quiescence.swift, rule (c)) or by its CPU time (rule (e));
//   - errno: the callback makes no call and no system call and never uses
//     an fs/gs override, so neither the kernel nor the code can write the
//     thread's errno (a TLS variable);
//   - xmm0–7 and the x87/MXCSR state: it has no vector or x87 instruction.
// Registers it does not mention it cannot change; the callee-saved ones it
// mentions it preserves by the C convention it was compiled with.
//
//   +0   [41] 50+r  ...           push  each caller-saved register the callback
//                                       mentions (rdi rsi rdx rcx rax r8–r11;
//                                       rcx only when written before read)
//        [50+r]                   push  one more caller-saved register the
//                                       callback does not mention, only to make
//                                       the count odd: rsp = 0 mod 16 at the call
//        [48 8d 3d d32]           lea   rdi, [rip + d32]     ip = the site   (rdi mentioned)
//        [48 8b 74 24 d8]         mov   rsi, [rsp + 8*pushes] parent_ip      (rsi mentioned)
//        [48 ba imm64]            movabs rdx, ops                             (rdx mentioned)
//        e8 d32                   call  callback              (within ±2 GiB)
//     or ff 15 d32                call  [rip + d32] -> the callback literal
//        [59]  [41] 58+r ...      pop   in reverse order
//        e9 d32                   jmp   site + 5
//        cc ...                   int3 to an 8-byte boundary
//        [callback (8)]           the literal of the indirect call
//        cc ...                   int3 to the end of its slot(s)
//
// Stack at the call (rsp = 0 mod 16):  [rsp] = the call's return address,
// then the pushed registers, then parent_ip at rsp + 8 + 8*pushes.
// Size: at most 13 + 7 + 5 + 10 + 6 + 13 + 5 = 59 bytes of code, plus 8
// of literal: a stub that does not fit one 64-byte slot takes two
// contiguous ones.
extension StubX86_64 {
    static let pushRegisterBase: UInt8 = 0x50
    static let popRegisterBase: UInt8 = 0x58
    /// REX with B set: the register number in the opcode is r8–r15.
    static let rexB: UInt8 = 0x41
    /// `lea rdi, [rip + disp32]`: REX.W, LEA, ModRM(rdi, rip-relative).
    static let leaRdiRipRelative: [UInt8] = [0x48, 0x8d, 0x3d]
    /// `mov rsi, [rsp + disp8]`: REX.W, MOV Gv,Ev, ModRM(rsi, SIB+disp8), SIB(base rsp).
    static let movRsiFromStackDisp8: [UInt8] = [0x48, 0x8b, 0x74, 0x24]
    /// `movabs rdx, imm64`: REX.W, B8+rdx.
    static let movabsRdx: [UInt8] = [0x48, 0xba]
    static let callRel32 = X86Opcode.callRel32
    /// `call qword [rip + disp32]`: opcode FF /2, ModRM rip-relative.
    static let callRipIndirect = X86Opcode.callRipIndirect
    static let jmpRel32 = X86Opcode.jmpRel32
    static let rel32Length = 5
    /// The order of the pushes: the argument registers first. The
    /// alignment push takes the first one the callback does not mention.
    static let leafSaveOrder: [GPR] = [.rdi, .rsi, .rdx, .rcx, .rax, .r8, .r9, .r10, .r11]

    /// The bytes of a leaf stub at `address` (one or more 64-byte slots:
    /// the caller checks `count` against what it allocated).
    static func leafStub(at address: UInt, site: UInt, resume: UInt, ops: UInt, callback: LeafCallback) -> [UInt8] {
        let saved = leafSaveOrder.filter { callback.saved.contains(GPRSet($0)) }
        var pushes = saved
        if pushes.count % 2 == 0, let spare = leafSaveOrder.first(where: { !saved.contains($0) }) {
            pushes.append(spare)
        }
        var bytes: [UInt8] = []
        func encode(_ base: UInt8, _ register: GPR) {
            if register.rawValue >= 8 { bytes.append(rexB) }
            bytes.append(base + UInt8(register.rawValue & 7))
        }
        /// A rel32 whose instruction ends `end` bytes after the stub start.
        func rel32(to target: UInt, endingAt end: Int) -> Int64 {
            Int64(bitPattern: UInt64(target)) - (Int64(bitPattern: UInt64(address)) + Int64(end))
        }
        for register in pushes { encode(pushRegisterBase, register) }
        if callback.mentioned.contains(GPRSet(.rdi)) {
            bytes += leaRdiRipRelative
            bytes += littleEndian(Int32(truncatingIfNeeded: rel32(to: site, endingAt: bytes.count + 4)))
        }
        if callback.mentioned.contains(GPRSet(.rsi)) {
            bytes += movRsiFromStackDisp8 + [UInt8(8 * pushes.count)]
        }
        if callback.mentioned.contains(GPRSet(.rdx)) {
            bytes += movabsRdx + littleEndian(UInt64(ops))
        }
        let direct = rel32(to: callback.entry, endingAt: bytes.count + rel32Length)
        var literalFixup: Int?
        if direct >= Int64(Int32.min) && direct <= Int64(Int32.max) {
            bytes += [callRel32] + littleEndian(Int32(direct))
        } else {
            bytes += callRipIndirect
            literalFixup = bytes.count
            bytes += [0, 0, 0, 0]
        }
        for register in pushes.reversed() { encode(popRegisterBase, register) }
        bytes += [jmpRel32] + littleEndian(Int32(truncatingIfNeeded: rel32(to: resume, endingAt: bytes.count + rel32Length)))
        if let fixup = literalFixup {
            while bytes.count % 8 != 0 { bytes.append(int3) }
            let literal = bytes.count
            bytes += littleEndian(UInt64(callback.entry))
            bytes.replaceSubrange(fixup..<fixup + 4, with: littleEndian(Int32(literal - (fixup + 4))))
        }
        let slots = (bytes.count + JITMemory.slotSize - 1) / JITMemory.slotSize
        bytes += [UInt8](repeating: int3, count: slots * JITMemory.slotSize - bytes.count)
        return bytes
    }
}
