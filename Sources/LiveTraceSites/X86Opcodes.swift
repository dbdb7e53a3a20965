/// The x86-64 encodings LiveTrace matches or writes, defined once. Every
/// other file (site patterns, the text poke's encodings, stubs, relocated
/// prologues, the leaf analysis) names these; decoding anything beyond them
/// is Zydis's job. The C side's one x86 fact, int3 (`LT_OPCODE_INT3` in `lt_trap.c`, the
/// trap handler's check of the byte it stopped on), is the trap itself.
///
///     int3                         cc
///     nop                          90
///     nopl 0x0(%rax,%rax,1)        0f 1f 44 00 00        (the 5-byte nop)
///     endbr64                      f3 0f 1e fa
///     call rel32                   e8 r0 r1 r2 r3        target = end + rel32
///     jmp rel32                    e9 r0 r1 r2 r3
///     jcc rel32                    0f 80+cc r0 r1 r2 r3
///     jcc rel8                     70+cc r0
///     jmp rel8                     eb r0
///     loopne/loope/loop/jrcxz rel8 e0-e3 r0
///     xbegin rel32                 c7 f8 r0 r1 r2 r3
///     call *disp32(%rip)           ff 15 d0 d1 d2 d3     (FF /2, ModRM rip-relative)
///     jmp *disp32(%rip)            ff 25 d0 d1 d2 d3     (FF /4, ModRM rip-relative)
///     addr32 call rel32            67 e8 r0 r1 r2 r3     (the linker's relaxation of ff 15)
public enum X86Opcode {
    public static let int3: UInt8 = 0xcc
    public static let nop: UInt8 = 0x90
    public static let callRel32: UInt8 = 0xe8
    public static let jmpRel32: UInt8 = 0xe9
    /// `0f 80+cc`: the two-byte escape and the base of `jcc rel32`.
    public static let twoByteEscape: UInt8 = 0x0f
    public static let jccRel32Base: UInt8 = 0x80
    /// `70+cc`: the base of `jcc rel8`.
    public static let jccRel8Base: UInt8 = 0x70
    public static let jmpRel8: UInt8 = 0xeb
    /// `e0`-`e3`: loopne, loope, loop, jrcxz (rel8).
    public static let loopRel8Base: UInt8 = 0xe0
    /// `c7 f8`: xbegin rel32 (C7 /7 with ModRM f8), its two bytes.
    public static let xbeginOpcode: UInt8 = 0xc7
    public static let xbeginModRM: UInt8 = 0xf8
    /// Opcode FF: group 5 (`inc`/`dec`/`call`/`jmp`/`push` on a memory operand).
    public static let group5: UInt8 = 0xff
    /// ModRM bytes of FF with a rip-relative operand: reg field 2 (call), 4 (jmp).
    public static let callRipRelativeModRM: UInt8 = 0x15
    public static let jmpRipRelativeModRM: UInt8 = 0x25
    public static let callRipIndirect: [UInt8] = [group5, callRipRelativeModRM]
    public static let jmpRipIndirect: [UInt8] = [group5, jmpRipRelativeModRM]
    public static let addressSizePrefix: UInt8 = 0x67
    public static let operandSizePrefix: UInt8 = 0x66
    public static let bndPrefix: UInt8 = 0xf2
    public static let endbr64: [UInt8] = [0xf3, twoByteEscape, 0x1e, 0xfa]
    /// The four fixed bytes of every `nopl 0x0(%rax,%rax,1)`; the fifth is
    /// its displacement (clang writes 08, the text poke 00).
    public static let nop5Prefix: [UInt8] = [twoByteEscape, 0x1f, 0x44, 0x00]
    public static let nop5: [UInt8] = nop5Prefix + [0x00]
    /// Lengths: `call`/`jmp rel32`, `jcc rel32` and `call`/`jmp *disp32(%rip)`.
    public static let rel32Length = 5
    public static let jccRel32Length = 6
    public static let ripIndirectLength = 6
}
