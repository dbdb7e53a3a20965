import LiveTraceSites

/// x86-64 encodings of everything the text poke writes or expects to find.
/// Byte layouts, before and after normalisation (A = `Site.address`):
///
///     nop5            0f 1f 44 00 xx        nopl 0x0(%rax,%rax,1) (clang: xx = 08)
///     nop1x5          90 90 90 90 90        five `nop` (gcc)
///     callFentry      e8 r0 r1 r2 r3        call __fentry__
///     callFentryGOT   ff 15 r0 r1 r2 r3     call *__fentry__@GOTPCREL(%rip)
///                  or 67 e8 r0 r1 r2 r3     addr32 call __fentry__ (the same call
///                                           after the linker relaxed the GOT load)
///       normal form, off:   0f 1f 44 00 00 [90]
///       normal form, on:    e8 t0 t1 t2 t3 [90]    t = target - (A + 5)
///                       or  e9 t0 t1 t2 t3 [90]    (jmp: the trampolines)
///     ([90]: only for callFentryGOT, a permanent 1-byte nop at A+5 so that
///      the return address A+5 of the new call is an instruction boundary.)
///     During a transition A[0] is int3 (cc) and A[1...4] is either OLD or NEW.
public enum X86SiteEncoding {
    public static let int3 = X86Opcode.int3
    public static let nop1 = X86Opcode.nop
    public static let callRel32Opcode = X86Opcode.callRel32
    public static let jmpRel32Opcode = X86Opcode.jmpRel32
    /// `ff 15`: call through a rip-relative memory operand.
    public static let callIndirectRipRelative = X86Opcode.callRipIndirect
    /// `67 e8`: addr32 call rel32, the linker's relaxation of `ff 15`.
    public static let callAddr32Rel32: [UInt8] = [X86Opcode.addressSizePrefix, X86Opcode.callRel32]
    /// The 4-byte prefix common to every `nopl 0x0(%rax,%rax,1)` form.
    public static let nop5Prefix = X86Opcode.nop5Prefix
    /// The 5-byte nop the text poke writes.
    public static let nop5 = X86Opcode.nop5
    public static let nop1x5: [UInt8] = [UInt8](repeating: X86Opcode.nop, count: 5)
    /// Length of the normal-form instruction.
    public static let normalLength = 5

    /// The 4-byte nop5 prefix as it reads in the low bits of PackedBytes.
    static let nop5PrefixBits = UInt64(0x00_44_1F_0F)

    /// `encode`, packed (the batch path: no allocation).
    public static func encodePacked(_ instruction: SiteInstruction, at address: UInt) -> PackedBytes? {
        switch instruction {
        case .nop:
            return PackedBytes(nop5)
        case let .call(target), let .jump(target):
            guard let rel = rel32(from: address &+ UInt(normalLength), to: target) else { return nil }
            return PackedBytes(bits: UInt64(opcode(of: instruction)) | UInt64(UInt32(bitPattern: rel)) << 8, count: normalLength)
        }
    }

    /// `decode`, packed.
    public static func decodePacked(_ bytes: PackedBytes, at address: UInt) -> SiteInstruction? {
        guard bytes.count >= normalLength else { return nil }
        if bytes.bits & 0xFFFF_FFFF == nop5PrefixBits { return .nop }
        if bytes[0] == callRel32Opcode || bytes[0] == jmpRel32Opcode {
            let rel = Int64(Int32(bitPattern: UInt32(truncatingIfNeeded: bytes.bits >> 8)))
            let target = UInt(bitPattern: Int(Int64(Int(bitPattern: address)) + Int64(normalLength) + rel))
            return bytes[0] == callRel32Opcode ? .call(target) : .jump(target)
        }
        return nil
    }

    /// The bytes of `instruction` at `address`, or nil when a call target is
    /// not reachable with a rel32 displacement.
    public static func encode(_ instruction: SiteInstruction, at address: UInt) -> [UInt8]? {
        switch instruction {
        case .nop:
            return nop5
        case let .call(target), let .jump(target):
            guard let rel = rel32(from: address &+ UInt(normalLength), to: target) else { return nil }
            let bits = UInt32(bitPattern: rel)
            return [opcode(of: instruction)] + (0..<4).map { UInt8(truncatingIfNeeded: bits >> (8 * UInt32($0))) }
        }
    }

    /// The normal-form instruction these bytes hold at `address`, or nil.
    public static func decode(_ bytes: [UInt8], at address: UInt) -> SiteInstruction? {
        guard bytes.count >= normalLength else { return nil }
        if Array(bytes[0..<4]) == nop5Prefix { return .nop }
        if bytes[0] == callRel32Opcode || bytes[0] == jmpRel32Opcode {
            let raw = (1...4).reduce(UInt32(0)) { $0 | UInt32(bytes[$1]) << (8 * UInt32($1 - 1)) }
            let rel = Int64(Int32(bitPattern: raw))
            let target = UInt(bitPattern: Int(Int64(Int(bitPattern: address)) + Int64(normalLength) + rel))
            return bytes[0] == callRel32Opcode ? .call(target) : .jump(target)
        }
        return nil
    }

    /// The rel32 opcode of a call or jump (e8 or e9).
    static func opcode(of instruction: SiteInstruction) -> UInt8 {
        if case .jump = instruction { return jmpRel32Opcode }
        return callRel32Opcode
    }

    /// rel32 displacement from `next` (the address after the instruction)
    /// to `target`, or nil when it does not fit.
    public static func rel32(from next: UInt, to target: UInt) -> Int32? {
        let delta = Int64(bitPattern: UInt64(target) &- UInt64(next))
        return Int32(exactly: delta)
    }
}
