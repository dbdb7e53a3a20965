// Leaf callbacks: the analysis behind clean-call optimization (DynamoRIO's
// term). A C callback that is a small leaf function — no call, no loop, no
// system call, no floating point — can be called from a per-site stub that
// saves only the registers the callback can touch (StubX86_64.leafStub),
// instead of the lean entry that saves every argument register, xmm0–7 and
// errno and runs the recursion guard.
//
// The decoder is conservative: it accepts only the instructions it decodes
// exactly (the whitelist below) and answers "not eligible" with a reason for
// anything else. Protocol of one analysis:
//   1. Start at the callback's entry with a stack depth of 0.
//   2. Read at most `maxInstructionLength` bytes there through
//      /proc/self/mem (Sys.readOwnMemory): an unmapped byte is an error
//      from the kernel, never a fault in this process.
//   3. Decode prefixes (legacy, then REX), the opcode, ModRM/SIB/disp and the
//      immediate; reject anything outside the whitelist, with its reason.
//   4. Record every general-purpose register the instruction MENTIONS: the
//      ModRM reg field, rm or base/index, a register in the opcode, and the
//      implicit ones (rax of cmpxchg, rdx of cqo, cl of `d3` shifts). This
//      over-approximates both reads and writes.
//   5. Follow control flow: `ret` ends a path (stack depth must be 0 again);
//      `jmp rel` continues at its target; `jcc rel` continues at both. A
//      target at or before the branch is a loop: not eligible. push/pop move
//      the depth, and so do `sub`/`add rsp, 8n`; any other write of rsp is
//      not eligible.
//   6. At most `maxInstructions` distinct instructions over all paths.
//
// Why the whitelist is enough for the stub's promises:
//   - no call, no indirect jump: the callback runs only its own decoded code,
//     so it cannot reach a traced function (no recursion guard needed) nor
//     block (no system call); it ends in a bounded number of instructions;
//   - no SSE/AVX/x87: xmm0–7, MXCSR and the x87 state are untouched, and no
//     instruction needs a 16-byte aligned stack;
//   - no system call and no fs/gs segment override: errno (a TLS variable
//     reached through fs) is neither written by the kernel nor by the code;
//   - registers: the stub saves the caller-saved ones it mentions; the
//     callee-saved ones (rbx rbp r12–r15) the callback preserves by the C
//     convention it was compiled with.
import Glibc

/// A set of x86-64 general-purpose registers, by hardware number.
public struct GPRSet: OptionSet, Sendable, Hashable, CustomStringConvertible {
    public let rawValue: UInt16
    public init(rawValue: UInt16) { self.rawValue = rawValue }
    public init(_ register: GPR) { rawValue = 1 << register.rawValue }

    public var registers: [GPR] { GPR.allCases.filter { contains(GPRSet($0)) } }
    public var description: String { "{" + registers.map(\.name).joined(separator: " ") + "}" }

    /// Caller-saved registers that may be live at a function's entry in the
    /// C and Swift conventions (arguments, rax, the static chain r10) plus
    /// r11: what a leaf stub saves when the callback mentions them.
    public static let callerSaved: GPRSet = [.init(.rax), .init(.rcx), .init(.rdx), .init(.rsi), .init(.rdi),
                                             .init(.r8), .init(.r9), .init(.r10), .init(.r11)]
}

/// x86-64 general-purpose registers, numbered as the encoding numbers them.
public enum GPR: Int, CaseIterable, Sendable {
    case rax, rcx, rdx, rbx, rsp, rbp, rsi, rdi, r8, r9, r10, r11, r12, r13, r14, r15

    public var name: String { "\(self)" }
}

/// Why a callback cannot take the leaf path.
public enum LeafRejection: Error, Sendable, Equatable, CustomStringConvertible {
    case callsAFunction(at: UInt)
    case indirectBranch(at: UInt)
    case backwardBranch(at: UInt)
    case systemCallOrTrap(at: UInt)
    case floatingPointOrVector(at: UInt)
    case segmentOverride(at: UInt)
    case multiplyOrDivide(at: UInt)
    case stringInstruction(at: UInt)
    case writesStackPointer(at: UInt)
    case unbalancedStack(at: UInt)
    case readsRegisters
    case tooManyInstructions(limit: Int)
    case unreadable(at: UInt, errno: Int32)
    case unknownInstruction(at: UInt, bytes: [UInt8])

    public var description: String {
        func hex(_ a: UInt) -> String { "0x" + String(a, radix: 16) }
        switch self {
        case let .callsAFunction(a): return "calls a function (call at \(hex(a)))"
        case let .indirectBranch(a): return "indirect branch at \(hex(a))"
        case let .backwardBranch(a): return "backward branch (a loop) at \(hex(a))"
        case let .systemCallOrTrap(a): return "system call or trap at \(hex(a))"
        case let .floatingPointOrVector(a): return "floating point or vector instruction (SSE/AVX/x87) at \(hex(a))"
        case let .segmentOverride(a): return "fs/gs segment override (thread-local storage) at \(hex(a))"
        case let .multiplyOrDivide(a): return "one-operand mul/div at \(hex(a))"
        case let .stringInstruction(a): return "string instruction at \(hex(a))"
        case let .writesStackPointer(a): return "writes rsp at \(hex(a))"
        case let .unbalancedStack(a): return "unbalanced push/pop at \(hex(a))"
        case .readsRegisters: return "reads rcx (the regs parameter: a leaf stub builds no lt_regs)"
        case let .tooManyInstructions(limit): return "more than \(limit) instructions"
        case let .unreadable(a, e): return "code unreadable at \(hex(a)) (errno \(e))"
        case let .unknownInstruction(a, bytes):
            return "instruction outside the whitelist at \(hex(a)): " + bytes.map { String($0, radix: 16) }.joined(separator: " ")
        }
    }
}

/// An eligible leaf callback: what the stub must save and where its code is.
public struct LeafCallback: Sendable, Equatable {
    public var entry: UInt
    /// Every register the code mentions (over-approximates reads and writes).
    public var mentioned: GPRSet
    /// The decoded code, as merged [start, end) byte ranges.
    public var codeRanges: [ClosedRange<UInt>]
    public var instructionCount: Int

    /// The caller-saved registers the stub saves around the call.
    public var saved: GPRSet { mentioned.intersection(.callerSaved) }
}

public enum LeafCallbackAnalysis {
    public static let maxInstructions = 64
    static let maxInstructionLength = 15

    /// The verdict on the code at `entry` (a C function of this process).
    public static func analyze(_ entry: UInt) -> Result<LeafCallback, LeafRejection> {
        var decoder = X86LeafDecoder()
        do throws(LeafRejection) {
            return .success(try decoder.run(from: entry))
        } catch {
            return .failure(error)
        }
    }
}

/// Steps 1–6 of the file's protocol.
struct X86LeafDecoder {
    private var mentioned = GPRSet()
    /// Instruction start -> (end, stack depth on entry).
    private var decoded: [UInt: (end: UInt, depth: Int)] = [:]
    /// (instruction, rcx written on the way there) pairs already followed.
    private var followed: Set<FollowKey> = []
    private var code = CodeWindow()

    struct FollowKey: Hashable { var address: UInt; var rcxWritten: Bool }

    /// rcx holds the `regs` parameter, which a leaf stub does not build: a
    /// callback may mention rcx only after an instruction that writes all of
    /// it without reading it (`xor ecx, ecx`, `mov ecx, imm`, `mov rcx, m`,
    /// `lea`, `movzx`), on every path — then rcx is just a scratch register
    /// the stub saves.
    mutating func run(from entry: UInt) throws(LeafRejection) -> LeafCallback {
        var work: [(address: UInt, depth: Int, rcxWritten: Bool)] = [(entry, 0, false)]   // step 1
        while let (address, depth, rcxWritten) = work.popLast() {
            if let seen = decoded[address], seen.depth != depth { throw .unbalancedStack(at: address) }
            guard followed.insert(FollowKey(address: address, rcxWritten: rcxWritten)).inserted else { continue }
            if decoded[address] == nil && decoded.count >= LeafCallbackAnalysis.maxInstructions {   // step 6
                throw .tooManyInstructions(limit: LeafCallbackAnalysis.maxInstructions)
            }
            let bytes = try code.bytes(at: address)                                  // step 2
            let instruction = try X86Instruction.decode(bytes, at: address)          // step 3
            mentioned.formUnion(instruction.mentioned)                               // step 4
            var rcxNowWritten = rcxWritten
            if instruction.mentioned.contains(GPRSet(.rcx)) {
                if instruction.fullyWrites == .rcx {
                    rcxNowWritten = true
                } else if !rcxWritten {
                    throw .readsRegisters
                }
            }
            decoded[address] = (address + UInt(instruction.length), depth)
            let next = address + UInt(instruction.length)
            let newDepth = depth + instruction.stackEffect
            if newDepth < 0 { throw .unbalancedStack(at: address) }
            switch instruction.flow {                                                // step 5
            case .next:
                work.append((next, newDepth, rcxNowWritten))
            case .return:
                if depth != 0 { throw .unbalancedStack(at: address) }
            case let .jump(target):
                guard target > address else { throw .backwardBranch(at: address) }
                work.append((target, newDepth, rcxNowWritten))
            case let .conditional(target):
                guard target > address else { throw .backwardBranch(at: address) }
                work.append((next, newDepth, rcxNowWritten))
                work.append((target, newDepth, rcxNowWritten))
            }
        }
        return LeafCallback(entry: entry, mentioned: mentioned, codeRanges: mergedRanges(), instructionCount: decoded.count)
    }

    private func mergedRanges() -> [ClosedRange<UInt>] {
        var ranges: [ClosedRange<UInt>] = []
        for (start, value) in decoded.sorted(by: { $0.key < $1.key }) {
            let range = start...(value.end - 1)
            if let last = ranges.last, range.lowerBound <= last.upperBound + 1 {
                ranges[ranges.count - 1] = last.lowerBound...max(last.upperBound, range.upperBound)
            } else {
                ranges.append(range)
            }
        }
        return ranges
    }
}

/// The callback's bytes, read through /proc/self/mem a window at a time
/// (one read serves every instruction of a small function, instead of one
/// read per instruction).
struct CodeWindow {
    static let size = 1024
    private var start: UInt = 0
    private var window: [UInt8] = []
    /// The read stopped short: the mapping ends at the window's end.
    private var endsMapping = false

    /// Up to `maxInstructionLength` bytes at `address`: fewer when the
    /// mapping ends before.
    mutating func bytes(at address: UInt) throws(LeafRejection) -> [UInt8] {
        let length = LeafCallbackAnalysis.maxInstructionLength
        let end = start + UInt(window.count)
        let covered = address >= start && address < end && (address + UInt(length) <= end || endsMapping)
        if !covered {
            do throws(TraceError) {
                window = try Sys.readOwnMemory(at: address, count: Self.size)
            } catch {
                if case let .systemCall(_, e) = error { throw .unreadable(at: address, errno: e) }
                throw .unreadable(at: address, errno: EIO)
            }
            if window.isEmpty { throw .unreadable(at: address, errno: EFAULT) }
            start = address
            endsMapping = window.count < Self.size
        }
        let offset = Int(address - start)
        return Array(window[offset..<min(offset + length, window.count)])
    }
}

/// One decoded instruction of the whitelist.
struct X86Instruction {
    enum Flow: Equatable {
        case next
        case `return`
        case jump(UInt)
        case conditional(UInt)
    }

    var length: Int
    var mentioned = GPRSet()
    var flow = Flow.next
    /// +1 for a push, -1 for a pop, ±n for `sub`/`add rsp, 8n` (8-byte slots).
    var stackEffect = 0
    /// A register the instruction writes entirely (32 or 64 bits) without
    /// reading it.
    var fullyWrites: GPR?

    // Prefixes (legacy, then an optional REX just before the opcode).
    static let lockPrefix: UInt8 = 0xf0
    static let repnePrefix: UInt8 = 0xf2
    static let repPrefix: UInt8 = 0xf3
    static let operandSizePrefix: UInt8 = 0x66
    static let addressSizePrefix: UInt8 = 0x67
    /// es, cs, ss, ds: ignored in 64-bit mode (cs/ds are also branch hints).
    static let ignoredSegmentPrefixes: Set<UInt8> = [0x26, 0x2e, 0x36, 0x3e]
    /// fs, gs: thread-local storage.
    static let tlsSegmentPrefixes: Set<UInt8> = [0x64, 0x65]
    static let rexRange: ClosedRange<UInt8> = 0x40...0x4f
    static let vexOrEvex: Set<UInt8> = [0xc4, 0xc5, 0x62]
    static let twoByteEscape: UInt8 = 0x0f

    // One-byte opcodes.
    /// add or adc sbb and sub xor cmp: base + 0..5 (Eb,Gb Ev,Gv Gb,Eb Gv,Ev AL,Ib eAX,Iz).
    static let aluBases: [UInt8] = [0x00, 0x08, 0x10, 0x18, 0x20, 0x28, 0x30, 0x38]
    static let cmpBase: UInt8 = 0x38
    static let subBase: UInt8 = 0x28
    static let xorBase: UInt8 = 0x30
    static let pushRegister: ClosedRange<UInt8> = 0x50...0x57
    static let popRegister: ClosedRange<UInt8> = 0x58...0x5f
    static let movsxd: UInt8 = 0x63
    static let imulGvEvIz: UInt8 = 0x69
    static let imulGvEvIb: UInt8 = 0x6b
    static let jccRel8: ClosedRange<UInt8> = 0x70...0x7f
    static let group1EbIb: UInt8 = 0x80
    static let group1EvIz: UInt8 = 0x81
    static let group1EvIb: UInt8 = 0x83
    /// ModRM of `add rsp, imm` (mod 11, /0, rsp) and `sub rsp, imm` (mod 11, /5, rsp).
    static let addRspModRM: UInt8 = 0xc4
    static let subRspModRM: UInt8 = 0xec
    static let testEbGb: UInt8 = 0x84
    static let testEvGv: UInt8 = 0x85
    static let xchgEbGb: UInt8 = 0x86
    static let xchgEvGv: UInt8 = 0x87
    static let movEbGb: UInt8 = 0x88
    static let movEvGv: UInt8 = 0x89
    static let movGbEb: UInt8 = 0x8a
    static let movGvEv: UInt8 = 0x8b
    static let lea: UInt8 = 0x8d
    static let nop: UInt8 = 0x90
    static let xchgRaxRegister: ClosedRange<UInt8> = 0x91...0x97
    static let signExtendRax: UInt8 = 0x98       // cbw/cwde/cdqe
    static let signExtendRaxToRdx: UInt8 = 0x99  // cwd/cdq/cqo
    static let movAccumulatorMoffs: ClosedRange<UInt8> = 0xa0...0xa3
    static let stringInstructions: Set<UInt8> = [0xa4, 0xa5, 0xa6, 0xa7, 0xaa, 0xab, 0xac, 0xad, 0xae, 0xaf, 0x6c, 0x6d, 0x6e, 0x6f]
    static let testAlIb: UInt8 = 0xa8
    static let testEaxIz: UInt8 = 0xa9
    static let movRegister8Imm8: ClosedRange<UInt8> = 0xb0...0xb7
    static let movRegisterImm: ClosedRange<UInt8> = 0xb8...0xbf
    static let shiftEbIb: UInt8 = 0xc0
    static let shiftEvIb: UInt8 = 0xc1
    static let ret: UInt8 = 0xc3
    static let movEbIb: UInt8 = 0xc6
    static let movEvIz: UInt8 = 0xc7
    static let shiftEb1: UInt8 = 0xd0
    static let shiftEv1: UInt8 = 0xd1
    static let shiftEbCl: UInt8 = 0xd2
    static let shiftEvCl: UInt8 = 0xd3
    static let x87: ClosedRange<UInt8> = 0xd8...0xdf
    static let callRel32: UInt8 = 0xe8
    static let jmpRel32: UInt8 = 0xe9
    static let jmpRel8: UInt8 = 0xeb
    static let traps: Set<UInt8> = [0xcc, 0xcd, 0xce, 0xf1]
    static let group3Eb: UInt8 = 0xf6
    static let group3Ev: UInt8 = 0xf7
    static let group4Eb: UInt8 = 0xfe
    static let group5Ev: UInt8 = 0xff

    // Two-byte opcodes (after 0f).
    static let syscallOpcodes: Set<UInt8> = [0x05, 0x07, 0x0b, 0x34, 0x35]  // syscall sysret ud2 sysenter sysexit
    static let hintNop: UInt8 = 0x1f                                         // nop Ev
    static let endbrGroup: UInt8 = 0x1e                                      // f3 0f 1e fa = endbr64
    static let endbr64ModRM: UInt8 = 0xfa
    static let cmovcc: ClosedRange<UInt8> = 0x40...0x4f
    static let jccRel32: ClosedRange<UInt8> = 0x80...0x8f
    static let setcc: ClosedRange<UInt8> = 0x90...0x9f
    static let fenceGroup: UInt8 = 0xae                                      // mod=11: lfence /5, mfence /6, sfence /7
    static let imulGvEv: UInt8 = 0xaf
    static let cmpxchgEbGb: UInt8 = 0xb0
    static let cmpxchgEvGv: UInt8 = 0xb1
    static let movzxGvEb: UInt8 = 0xb6
    static let movzxGvEw: UInt8 = 0xb7
    static let movsxGvEb: UInt8 = 0xbe
    static let movsxGvEw: UInt8 = 0xbf
    static let xaddEbGb: UInt8 = 0xc0
    static let xaddEvGv: UInt8 = 0xc1
    /// SSE/AVX opcode ranges of the two-byte map (and the 0f 38 / 0f 3a escapes).
    static func isVectorTwoByte(_ op: UInt8) -> Bool {
        (0x10...0x17).contains(op) || (0x28...0x2f).contains(op) || (0x50...0x7f).contains(op)
            || (0xc2...0xc6).contains(op) || (0xd0...0xff).contains(op) || op == 0x38 || op == 0x3a
            || op == 0x77 || op == 0xae
    }

    // Step 3: decode.
    static func decode(_ bytes: [UInt8], at address: UInt) throws(LeafRejection) -> X86Instruction {
        var cursor = InstructionCursor(bytes: bytes, address: address)
        var operandSize16 = false
        var hasRep = false
        var hasRepne = false
        while let byte = cursor.peek() {
            if byte == lockPrefix || ignoredSegmentPrefixes.contains(byte) {
                cursor.skip()
            } else if byte == operandSizePrefix {
                operandSize16 = true; cursor.skip()
            } else if byte == repPrefix {
                hasRep = true; cursor.skip()
            } else if byte == repnePrefix {
                hasRepne = true; cursor.skip()
            } else if tlsSegmentPrefixes.contains(byte) {
                throw .segmentOverride(at: address)
            } else if byte == addressSizePrefix {
                throw .unknownInstruction(at: address, bytes: bytes)
            } else {
                break
            }
        }
        var rex: UInt8 = 0
        if let byte = cursor.peek(), rexRange.contains(byte) { rex = byte; cursor.skip() }
        let rexW = rex & 0x08 != 0, rexR: Int = rex & 0x04 != 0 ? 8 : 0
        let rexX: Int = rex & 0x02 != 0 ? 8 : 0, rexB: Int = rex & 0x01 != 0 ? 8 : 0
        let hasREX = rex != 0
        guard let opcode = cursor.next() else { throw cursor.truncated() }
        if vexOrEvex.contains(opcode) { throw .floatingPointOrVector(at: address) }
        if (hasRep || hasRepne) && opcode == twoByteEscape, let op = cursor.peek(), isVectorTwoByte(op) {
            throw .floatingPointOrVector(at: address)
        }
        if hasRepne { throw .unknownInstruction(at: address, bytes: bytes) }
        /// Immediate of "z" size: 2 bytes with 66, else 4.
        let izSize = operandSize16 ? 2 : 4
        var result = X86Instruction(length: 0)

        func byteRegister(_ code: Int) -> GPR {
            // Without REX, codes 4–7 of a byte operand are ah ch dh bh.
            if !hasREX && (4...7).contains(code) { return GPR(rawValue: code - 4)! }
            return GPR(rawValue: code)!
        }
        /// Reads ModRM (+SIB, displacement) and mentions its registers.
        /// `regIsRegister`: the reg field names a register (not an opcode
        /// extension). `byteRM`/`byteReg`: 8-bit register operands.
        /// `written`: which operand the instruction may write; rsp there is
        /// not eligible (reading rsp, as `mov rbp, rsp` does, is fine).
        func modRM(regIsRegister: Bool, byteRM: Bool = false, byteReg: Bool = false, written: Written = .both) throws(LeafRejection) -> ModRM {
            guard let m = cursor.next() else { throw cursor.truncated() }
            let mod = Int(m >> 6), regField = Int((m >> 3) & 7), rmField = Int(m & 7)
            var decoded = ModRM(mod: mod, reg: regField, rm: rmField, raw: m)
            if regIsRegister {
                let register = byteReg ? byteRegister(regField + rexR) : GPR(rawValue: regField + rexR)!
                decoded.regRegister = register
                result.mention(register)
                if register == .rsp && (written == .reg || written == .both) { throw .writesStackPointer(at: address) }
            }
            if mod == 3 {
                let register = byteRM ? byteRegister(rmField + rexB) : GPR(rawValue: rmField + rexB)!
                decoded.rmRegisters = GPRSet(register)
                decoded.rmRegister = register
                result.mention(register)
                if register == .rsp && (written == .rm || written == .both) { throw .writesStackPointer(at: address) }
                return decoded
            }
            if rmField == 4 {
                guard let sib = cursor.next() else { throw cursor.truncated() }
                let index = Int((sib >> 3) & 7) + rexX, base = Int(sib & 7)
                if index != GPR.rsp.rawValue { decoded.rmRegisters.insert(GPRSet(GPR(rawValue: index)!)) }
                if base == 5 && mod == 0 {
                    try cursor.skip(4)
                } else {
                    decoded.rmRegisters.insert(GPRSet(GPR(rawValue: base + rexB)!))
                }
            } else if rmField == 5 && mod == 0 {
                try cursor.skip(4)                                   // rip-relative
            } else {
                decoded.rmRegisters.insert(GPRSet(GPR(rawValue: rmField + rexB)!))
            }
            result.mentioned.formUnion(decoded.rmRegisters)
            if mod == 1 { try cursor.skip(1) }
            if mod == 2 { try cursor.skip(4) }
            return decoded
        }
        func relativeTarget(_ size: Int) throws(LeafRejection) -> UInt {
            let displacement = try cursor.signedImmediate(size)
            return UInt(bitPattern: Int(bitPattern: address) &+ cursor.offset &+ displacement)
        }

        /// The two-byte map (after 0f).
        func decodeTwoByte() throws(LeafRejection) {
            guard let op = cursor.next() else { throw cursor.truncated() }
            switch op {
            case let op where syscallOpcodes.contains(op):
                throw .systemCallOrTrap(at: address)
            case hintNop:
                // A multi-byte nop: its operand is never accessed.
                guard let m = cursor.peek(), (m >> 3) & 7 == 0 else { throw .unknownInstruction(at: address, bytes: bytes) }
                let before = result.mentioned
                _ = try modRM(regIsRegister: false)
                result.mentioned = before
            case cmovcc, imulGvEv, cmpxchgEvGv, xaddEvGv:
                _ = try modRM(regIsRegister: true)
                if op == cmpxchgEvGv { result.mention(.rax) }
            case cmpxchgEbGb, xaddEbGb:
                _ = try modRM(regIsRegister: true, byteRM: true, byteReg: true)
                if op == cmpxchgEbGb { result.mention(.rax) }
            case jccRel32:
                if operandSize16 { throw .unknownInstruction(at: address, bytes: bytes) }
                result.flow = .conditional(try relativeTarget(4))
            case setcc:
                _ = try modRM(regIsRegister: false, byteRM: true)
            case movzxGvEb, movsxGvEb:
                let m = try modRM(regIsRegister: true, byteRM: true)
                if !operandSize16 { result.fullyWrites = m.regRegisterNotInRM }
            case movzxGvEw, movsxGvEw:
                let m = try modRM(regIsRegister: true)
                if !operandSize16 { result.fullyWrites = m.regRegisterNotInRM }
            case fenceGroup:
                guard let m = cursor.peek(), m >> 6 == 3, (m >> 3) & 7 >= 5 else {
                    throw .floatingPointOrVector(at: address)
                }
                cursor.skip()
            case let op where isVectorTwoByte(op):
                throw .floatingPointOrVector(at: address)
            default:
                throw .unknownInstruction(at: address, bytes: bytes)
            }
        }

        if hasRep {
            // Only endbr64 and `rep ret` carry f3 in the whitelist.
            if opcode == twoByteEscape, cursor.peek() == endbrGroup {
                cursor.skip()
                guard cursor.next() == endbr64ModRM else { throw .unknownInstruction(at: address, bytes: bytes) }
            } else if opcode == ret, !operandSize16 {
                result.flow = .return
            } else if stringInstructions.contains(opcode) {
                throw .stringInstruction(at: address)
            } else if opcode == twoByteEscape, let op = cursor.peek(), isVectorTwoByte(op) {
                throw .floatingPointOrVector(at: address)
            } else {
                throw .unknownInstruction(at: address, bytes: bytes)
            }
            result.length = cursor.offset
            return result
        }

        switch opcode {
        case let op where aluBases.contains(op & 0xf8) && op & 0x07 <= 5:
            switch op & 0x07 {
            case 0: _ = try modRM(regIsRegister: true, byteRM: true, byteReg: true)
            case 1, 3:
                let m = try modRM(regIsRegister: true, written: op & 0xf8 == cmpBase ? .none : (op & 7 == 1 ? .rm : .reg))
                // The zero idioms `xor r, r` and `sub r, r` write r whatever it held.
                if (op & 0xf8 == xorBase || op & 0xf8 == subBase), !operandSize16, m.mod == 3, m.regRegister == m.rmRegister {
                    result.fullyWrites = m.regRegister
                }
            case 2: _ = try modRM(regIsRegister: true, byteRM: true, byteReg: true)
            case 4: result.mention(.rax); try cursor.skip(1)
            default: result.mention(.rax); try cursor.skip(izSize)
            }
        case pushRegister, popRegister:
            if operandSize16 { throw .unknownInstruction(at: address, bytes: bytes) }
            let register = GPR(rawValue: Int(opcode & 7) + rexB)!
            if register == .rsp { throw .writesStackPointer(at: address) }
            result.mention(register)
            result.stackEffect = pushRegister.contains(opcode) ? 1 : -1
        case movsxd:
            _ = try modRM(regIsRegister: true)
        case imulGvEvIz:
            _ = try modRM(regIsRegister: true); try cursor.skip(izSize)
        case imulGvEvIb:
            _ = try modRM(regIsRegister: true); try cursor.skip(1)
        case jccRel8:
            if operandSize16 { throw .unknownInstruction(at: address, bytes: bytes) }
            result.flow = .conditional(try relativeTarget(1))
        case group1EbIb:
            _ = try modRM(regIsRegister: false, byteRM: true); try cursor.skip(1)
        case group1EvIz, group1EvIb:
            let immediateSize = opcode == group1EvIb ? 1 : izSize
            if rexW, rexB == 0, let m = cursor.peek(), m == addRspModRM || m == subRspModRM {
                // `add rsp, imm` / `sub rsp, imm`: a frame of whole 8-byte slots.
                cursor.skip()
                let amount = try cursor.signedImmediate(immediateSize)
                guard amount > 0, amount % 8 == 0, amount <= 8 * LeafCallbackAnalysis.maxInstructions else {
                    throw .writesStackPointer(at: address)
                }
                result.mention(.rsp)
                result.stackEffect = (m == subRspModRM ? 1 : -1) * amount / 8
            } else {
                _ = try modRM(regIsRegister: false); try cursor.skip(immediateSize)
            }
        case testEbGb, xchgEbGb, movEbGb, movGbEb:
            _ = try modRM(regIsRegister: true, byteRM: true, byteReg: true)
        case testEvGv:
            _ = try modRM(regIsRegister: true, written: .none)
        case movEvGv:
            _ = try modRM(regIsRegister: true, written: .rm)
        case movGvEv:
            let m = try modRM(regIsRegister: true, written: .reg)
            if !operandSize16 { result.fullyWrites = m.regRegisterNotInRM }
        case xchgEvGv:
            _ = try modRM(regIsRegister: true)
        case lea:
            let m = try modRM(regIsRegister: true, written: .reg)
            if m.mod == 3 { throw .unknownInstruction(at: address, bytes: bytes) }
            if !operandSize16 { result.fullyWrites = m.regRegisterNotInRM }
        case nop:
            // 90 is `nop`; with REX.B it is `xchg r8, rax`.
            if rexB != 0 { result.mention(.rax); result.mention(.r8) }
        case xchgRaxRegister:
            let register = GPR(rawValue: Int(opcode & 7) + rexB)!
            if register == .rsp { throw .writesStackPointer(at: address) }
            result.mention(.rax); result.mention(register)
        case signExtendRax:
            result.mention(.rax)
        case signExtendRaxToRdx:
            result.mention(.rax); result.mention(.rdx)
        case movAccumulatorMoffs:
            result.mention(.rax); try cursor.skip(8)
        case testAlIb:
            result.mention(.rax); try cursor.skip(1)
        case testEaxIz:
            result.mention(.rax); try cursor.skip(izSize)
        case movRegister8Imm8:
            let register = byteRegister(Int(opcode & 7) + rexB)
            if register == .rsp { throw .writesStackPointer(at: address) }
            result.mention(register); try cursor.skip(1)
        case movRegisterImm:
            let register = GPR(rawValue: Int(opcode & 7) + rexB)!
            if register == .rsp { throw .writesStackPointer(at: address) }
            result.mention(register)
            if !operandSize16 { result.fullyWrites = register }
            try cursor.skip(rexW ? 8 : izSize)
        case shiftEbIb, shiftEvIb, shiftEb1, shiftEv1, shiftEbCl, shiftEvCl:
            let isByte = opcode == shiftEbIb || opcode == shiftEb1 || opcode == shiftEbCl
            let m = try modRM(regIsRegister: false, byteRM: isByte)
            if m.reg == 6 { throw .unknownInstruction(at: address, bytes: bytes) }
            if opcode == shiftEbIb || opcode == shiftEvIb { try cursor.skip(1) }
            if opcode == shiftEbCl || opcode == shiftEvCl { result.mention(.rcx) }
        case ret:
            if operandSize16 { throw .unknownInstruction(at: address, bytes: bytes) }
            result.flow = .return
        case movEbIb, movEvIz:
            guard let byte = cursor.peek(), (byte >> 3) & 7 == 0 else { throw .unknownInstruction(at: address, bytes: bytes) }
            let m = try modRM(regIsRegister: false, byteRM: opcode == movEbIb)
            if opcode == movEvIz, !operandSize16 { result.fullyWrites = m.rmRegister }
            try cursor.skip(opcode == movEbIb ? 1 : izSize)
        case jmpRel32, jmpRel8:
            if operandSize16 { throw .unknownInstruction(at: address, bytes: bytes) }
            result.flow = .jump(try relativeTarget(opcode == jmpRel8 ? 1 : 4))
        case callRel32:
            throw .callsAFunction(at: address)
        case x87:
            throw .floatingPointOrVector(at: address)
        case let op where traps.contains(op):
            throw .systemCallOrTrap(at: address)
        case let op where stringInstructions.contains(op):
            throw .stringInstruction(at: address)
        case group3Eb, group3Ev:
            guard let m = cursor.peek() else { throw cursor.truncated() }
            switch (m >> 3) & 7 {
            case 0:
                _ = try modRM(regIsRegister: false, byteRM: opcode == group3Eb)
                try cursor.skip(opcode == group3Eb ? 1 : izSize)
            case 2, 3:
                _ = try modRM(regIsRegister: false, byteRM: opcode == group3Eb)
            case 4...7:
                throw .multiplyOrDivide(at: address)
            default:
                throw .unknownInstruction(at: address, bytes: bytes)
            }
        case group4Eb:
            guard let m = cursor.peek(), (m >> 3) & 7 <= 1 else { throw .unknownInstruction(at: address, bytes: bytes) }
            _ = try modRM(regIsRegister: false, byteRM: true)
        case group5Ev:
            guard let m = cursor.peek() else { throw cursor.truncated() }
            switch (m >> 3) & 7 {
            case 0, 1: _ = try modRM(regIsRegister: false)
            case 2, 3: throw .callsAFunction(at: address)
            case 4, 5: throw .indirectBranch(at: address)
            default: throw .unknownInstruction(at: address, bytes: bytes)
            }
        case twoByteEscape:
            try decodeTwoByte()
        default:
            throw .unknownInstruction(at: address, bytes: bytes)
        }
        result.length = cursor.offset
        return result
    }

    mutating func mention(_ register: GPR) { mentioned.insert(GPRSet(register)) }
}

/// The ModRM operands an instruction may write.
enum Written { case none, reg, rm, both }

struct ModRM {
    var mod: Int
    var reg: Int
    var rm: Int
    var raw: UInt8
    /// The register of the reg field, when it names one.
    var regRegister: GPR?
    /// The register of the rm field (mod 11) …
    var rmRegister: GPR?
    /// … or every register the rm operand mentions (base, index).
    var rmRegisters = GPRSet()

    /// The reg register, when the rm operand does not mention it.
    var regRegisterNotInRM: GPR? {
        guard let register = regRegister, !rmRegisters.contains(GPRSet(register)) else { return nil }
        return register
    }
}

/// Reads an instruction's bytes; running out is `unreadable` (the mapping
/// ended) when fewer than 15 bytes were readable, else impossible.
struct InstructionCursor {
    let bytes: [UInt8]
    let address: UInt
    var offset = 0

    func peek() -> UInt8? { offset < bytes.count ? bytes[offset] : nil }
    mutating func skip() { offset += 1 }
    mutating func next() -> UInt8? {
        guard offset < bytes.count else { return nil }
        offset += 1
        return bytes[offset - 1]
    }
    mutating func skip(_ count: Int) throws(LeafRejection) {
        guard offset + count <= bytes.count else { throw truncated() }
        offset += count
    }
    mutating func signedImmediate(_ size: Int) throws(LeafRejection) -> Int {
        guard offset + size <= bytes.count else { throw truncated() }
        var value: UInt64 = 0
        for i in 0..<size { value |= UInt64(bytes[offset + i]) << (8 * UInt64(i)) }
        offset += size
        let shift = UInt64(64 - 8 * size)
        return Int(Int64(bitPattern: value << shift) >> Int64(shift))
    }
    func truncated() -> LeafRejection {
        bytes.count < LeafCallbackAnalysis.maxInstructionLength
            ? .unreadable(at: address + UInt(bytes.count), errno: EFAULT)
            : .unknownInstruction(at: address, bytes: bytes)
    }
}
