/// The x86-64 byte patterns of the site kinds, as compilers emit them, and
/// the decoding discovery needs (nothing more: this is not a disassembler).
///
///     endbr64                       f3 0f 1e fa            (-fcf-protection; precedes the site)
///     nop5   nopl 0x0(%rax,%rax,1)  0f 1f 44 00 dd         (dd: any displacement; clang uses 08)
///     nop1x5 5 × nop                90 90 90 90 90
///     call-fentry  call rel32       e8 r0 r1 r2 r3         target = site + 5 + rel32
///     call-fentry-got  call *rel32(%rip)  ff 15 r0 r1 r2 r3  slot = site + 6 + rel32
///     PLT stub      [endbr64] [bnd] jmp *rel32(%rip)  [f3 0f 1e fa] [f2] ff 25 r0 r1 r2 r3
///     shorter nops  66 90 (2)  0f 1f 00 (3)  0f 1f 40 00 (4)
enum X86 {
    static let endbr64 = X86Opcode.endbr64
    static let endbr64Length = 4
    static let nop1 = X86Opcode.nop
    /// The four fixed bytes of the 5-byte nop; the fifth is a displacement.
    static let nop5Prefix = X86Opcode.nop5Prefix
    static let nop5Length = 5
    static let callRel32Opcode = X86Opcode.callRel32
    static let callRel32Length = 5
    static let indirectOpcode = X86Opcode.group5
    /// ModRM of `call *disp32(%rip)` (reg field 2, rip-relative).
    static let callRipRelativeModRM = X86Opcode.callRipRelativeModRM
    /// ModRM of `jmp *disp32(%rip)` (reg field 4, rip-relative).
    static let jmpRipRelativeModRM = X86Opcode.jmpRipRelativeModRM
    static let callRipRelativeLength = 6
    static let jmpRipRelativeLength = 6
    static let bndPrefix = X86Opcode.bndPrefix
    static let operandSizePrefix = X86Opcode.operandSizePrefix
    static let twoByteEscape = X86Opcode.twoByteEscape
    static let nopGroupOpcode: UInt8 = 0x1f
    /// ModRM bytes of the 3- and 4-byte nops (0f 1f 00, 0f 1f 40 00).
    static let nop3ModRM: UInt8 = 0x00
    static let nop4ModRM: UInt8 = 0x40
    /// Longest run of padding nops accepted before a symbol for
    /// `-fpatchable-function-entry=N,M` (M bytes before the symbol).
    static let maxPatchableBefore: UInt64 = 64

    static func startsWithEndbr64(_ window: CodeWindow, at offset: Int = 0) -> Bool {
        endbr64.indices.allSatisfy { window[offset + $0] == endbr64[$0] } && window.count >= offset + endbr64Length
    }

    /// What the bytes at an entry are, as far as site kinds care.
    enum EntryForm: Equatable {
        case nop5
        /// `run` consecutive 1-byte nops, at least 5.
        case nop1(run: Int)
        /// Valid nops, but fewer than 5 bytes of them.
        case shortNops(length: Int)
        case callRel32(target: UInt64)
        case callRipRelative(slot: UInt64)
        case other
    }

    /// Classifies the bytes at link-time `address` held in `window` from `offset`.
    static func entryForm(_ window: CodeWindow, offset: Int, address: UInt64) -> EntryForm {
        let b0 = window[offset], b1 = window[offset + 1]
        if window.count >= offset + nop5Length, nop5Prefix.indices.allSatisfy({ window[offset + $0] == nop5Prefix[$0] }) {
            return .nop5
        }
        if b0 == nop1 {
            var run = 0
            while offset + run < window.count, window[offset + run] == nop1 { run += 1 }
            return run >= nop5Length ? .nop1(run: run) : .shortNops(length: run)
        }
        if b0 == callRel32Opcode, let rel = window.littleEndian(at: offset + 1, length: 4) {
            let displacement = UInt64(bitPattern: Int64(Int32(truncatingIfNeeded: rel)))
            return .callRel32(target: address &+ UInt64(callRel32Length) &+ displacement)
        }
        if b0 == indirectOpcode, b1 == callRipRelativeModRM, let rel = window.littleEndian(at: offset + 2, length: 4) {
            let displacement = UInt64(bitPattern: Int64(Int32(truncatingIfNeeded: rel)))
            return .callRipRelative(slot: address &+ UInt64(callRipRelativeLength) &+ displacement)
        }
        if b0 == operandSizePrefix, b1 == nop1 { return .shortNops(length: 2) }
        if b0 == twoByteEscape, b1 == nopGroupOpcode {
            if window[offset + 2] == nop3ModRM, window.count >= offset + 3 { return .shortNops(length: 3) }
            if window[offset + 2] == nop4ModRM, window[offset + 3] == 0, window.count >= offset + 4 { return .shortNops(length: 4) }
        }
        return .other
    }

    /// The GOT slot a PLT stub at link-time `address` jumps through:
    /// `[endbr64] [bnd] jmp *disp32(%rip)`; nil for anything else.
    static func pltSlot(_ window: CodeWindow, address: UInt64) -> UInt64? {
        var offset = startsWithEndbr64(window) ? endbr64Length : 0
        if window[offset] == bndPrefix { offset += 1 }
        guard window[offset] == indirectOpcode, window[offset + 1] == jmpRipRelativeModRM,
              let rel = window.littleEndian(at: offset + 2, length: 4) else { return nil }
        let displacement = UInt64(bitPattern: Int64(Int32(truncatingIfNeeded: rel)))
        return address &+ UInt64(offset + jmpRipRelativeLength) &+ displacement
    }
}
