// Leaf callbacks: the analysis behind clean-call optimization (DynamoRIO's
// term). A C callback that is a small leaf function — no call, no loop, no
// system call, no floating point — can be called from a per-site stub that
// saves only the registers the callback can touch (StubX86_64.leafStub),
// instead of the lean entry that saves every argument register, xmm0–7 and
// errno and runs the recursion guard.
//
// The decoder is Zydis (ZydisDecoderDecodeFull), the project's one x86-64
// decoder; the analysis is conservative: it accepts only the instructions of
// its whitelist and answers "not eligible" with a reason for anything else.
// Protocol of one analysis:
//   1. Start at the callback's entry with a stack depth of 0.
//   2. Read at most `maxInstructionLength` bytes there through
//      /proc/self/mem (Sys.readOwnMemory): an unmapped byte is an error
//      from the kernel, never a fault in this process.
//   3. Decode the instruction and its operands (explicit and hidden) with
//      Zydis; reject anything outside the whitelist, with its reason: an fs/gs
//      segment, a vector/x87 register or encoding, a call, an indirect jmp, a
//      system call or trap, a string instruction, one-operand mul/div, an
//      address-size prefix, a register other than a general-purpose one,
//      rflags or rip.
//   4. Record every general-purpose register the operands name (a register
//      operand, a memory base or index, the hidden ones: rax of cmpxchg, rdx
//      of cqo, rsp of push/pop/ret), enclosing ones for parts (ah -> rax).
//      This over-approximates both reads and writes.
//   5. Follow control flow: `ret` ends a path (stack depth must be 0 again);
//      `jmp rel` continues at its target; `jcc rel` continues at both
//      (ZydisCalcAbsoluteAddress). A target at or before the branch is a
//      loop: not eligible. push/pop move the depth, and so do
//      `sub`/`add rsp, 8n`; any other write of rsp is not eligible.
//   6. At most `maxInstructions` distinct instructions over all paths.
//
// Zydis replaced a hand-written decoder with the same whitelist. Over the
// 1.34 million instructions of libc, libstdc++, libswiftCore and the leaf
// fixtures both accept exactly the same ones, with the same lengths, branch
// targets and stack effects, and refuse the others for the same reasons but
// two: movbe is now outside the whitelist (was: vector) and fwait is x87
// (was: outside the whitelist). The rcx rule (X86LeafDecoder.run) now counts
// every plain 32/64-bit write of a register as writing it (`89 c1`,
// movsxd, three-operand imul too), where the old decoder knew only a few
// encodings. Cost, once per ops (Benchmarks/tramp-cost.sh, release build):
// 10.3-10.6 us median for a three-instruction callback (the old decoder:
// 8.4-8.6 us; five alternating runs), most of it the /proc/self/mem read.
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
import CZydis
import LiveTraceSites
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
    /// `lea`, `movzx`: X86Instruction.fullyWritten), on every path — then rcx
    /// is just a scratch register the stub saves.
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
                if case let .systemCall(failure) = error { throw .unreadable(at: address, errno: failure.errno) }
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

    /// `nop`, the one-byte filler.
    static let nop = X86Opcode.nop

    /// Integer instructions with no effect beyond their operands, the flags
    /// and the stack slots of push/pop. `imul` only in its two- and
    /// three-operand forms (the one-operand form writes rdx:rax).
    static let whitelist = MnemonicSet([
        ZYDIS_MNEMONIC_ADD, ZYDIS_MNEMONIC_OR, ZYDIS_MNEMONIC_ADC, ZYDIS_MNEMONIC_SBB,
        ZYDIS_MNEMONIC_AND, ZYDIS_MNEMONIC_SUB, ZYDIS_MNEMONIC_XOR, ZYDIS_MNEMONIC_CMP,
        ZYDIS_MNEMONIC_TEST, ZYDIS_MNEMONIC_INC, ZYDIS_MNEMONIC_DEC, ZYDIS_MNEMONIC_NEG, ZYDIS_MNEMONIC_NOT,
        ZYDIS_MNEMONIC_SHL, ZYDIS_MNEMONIC_SHR, ZYDIS_MNEMONIC_SAR,
        ZYDIS_MNEMONIC_ROL, ZYDIS_MNEMONIC_ROR, ZYDIS_MNEMONIC_RCL, ZYDIS_MNEMONIC_RCR,
        ZYDIS_MNEMONIC_IMUL,
        ZYDIS_MNEMONIC_XCHG, ZYDIS_MNEMONIC_XADD, ZYDIS_MNEMONIC_CMPXCHG,
        ZYDIS_MNEMONIC_PUSH, ZYDIS_MNEMONIC_POP, ZYDIS_MNEMONIC_JMP, ZYDIS_MNEMONIC_RET,
        ZYDIS_MNEMONIC_MOV, ZYDIS_MNEMONIC_MOVZX, ZYDIS_MNEMONIC_MOVSX, ZYDIS_MNEMONIC_MOVSXD, ZYDIS_MNEMONIC_LEA,
        ZYDIS_MNEMONIC_CBW, ZYDIS_MNEMONIC_CWDE, ZYDIS_MNEMONIC_CDQE,
        ZYDIS_MNEMONIC_CWD, ZYDIS_MNEMONIC_CDQ, ZYDIS_MNEMONIC_CQO,
        ZYDIS_MNEMONIC_NOP, ZYDIS_MNEMONIC_ENDBR64,
        ZYDIS_MNEMONIC_LFENCE, ZYDIS_MNEMONIC_MFENCE, ZYDIS_MNEMONIC_SFENCE,
    ] + conditionalJumps.members + conditionalSets.members + conditionalMoves.members)

    static let conditionalJumps = MnemonicSet([
        ZYDIS_MNEMONIC_JB, ZYDIS_MNEMONIC_JBE, ZYDIS_MNEMONIC_JL, ZYDIS_MNEMONIC_JLE,
        ZYDIS_MNEMONIC_JNB, ZYDIS_MNEMONIC_JNBE, ZYDIS_MNEMONIC_JNL, ZYDIS_MNEMONIC_JNLE,
        ZYDIS_MNEMONIC_JNO, ZYDIS_MNEMONIC_JNP, ZYDIS_MNEMONIC_JNS, ZYDIS_MNEMONIC_JNZ,
        ZYDIS_MNEMONIC_JO, ZYDIS_MNEMONIC_JP, ZYDIS_MNEMONIC_JS, ZYDIS_MNEMONIC_JZ,
    ])
    static let conditionalSets = MnemonicSet([
        ZYDIS_MNEMONIC_SETB, ZYDIS_MNEMONIC_SETBE, ZYDIS_MNEMONIC_SETL, ZYDIS_MNEMONIC_SETLE,
        ZYDIS_MNEMONIC_SETNB, ZYDIS_MNEMONIC_SETNBE, ZYDIS_MNEMONIC_SETNL, ZYDIS_MNEMONIC_SETNLE,
        ZYDIS_MNEMONIC_SETNO, ZYDIS_MNEMONIC_SETNP, ZYDIS_MNEMONIC_SETNS, ZYDIS_MNEMONIC_SETNZ,
        ZYDIS_MNEMONIC_SETO, ZYDIS_MNEMONIC_SETP, ZYDIS_MNEMONIC_SETS, ZYDIS_MNEMONIC_SETZ,
    ])
    static let conditionalMoves = MnemonicSet([
        ZYDIS_MNEMONIC_CMOVB, ZYDIS_MNEMONIC_CMOVBE, ZYDIS_MNEMONIC_CMOVL, ZYDIS_MNEMONIC_CMOVLE,
        ZYDIS_MNEMONIC_CMOVNB, ZYDIS_MNEMONIC_CMOVNBE, ZYDIS_MNEMONIC_CMOVNL, ZYDIS_MNEMONIC_CMOVNLE,
        ZYDIS_MNEMONIC_CMOVNO, ZYDIS_MNEMONIC_CMOVNP, ZYDIS_MNEMONIC_CMOVNS, ZYDIS_MNEMONIC_CMOVNZ,
        ZYDIS_MNEMONIC_CMOVO, ZYDIS_MNEMONIC_CMOVP, ZYDIS_MNEMONIC_CMOVS, ZYDIS_MNEMONIC_CMOVZ,
    ])
    static let systemCallsAndTraps = MnemonicSet([
        ZYDIS_MNEMONIC_SYSCALL, ZYDIS_MNEMONIC_SYSRET, ZYDIS_MNEMONIC_SYSENTER, ZYDIS_MNEMONIC_SYSEXIT,
        ZYDIS_MNEMONIC_INT, ZYDIS_MNEMONIC_INT1, ZYDIS_MNEMONIC_INT3, ZYDIS_MNEMONIC_INTO,
        ZYDIS_MNEMONIC_UD0, ZYDIS_MNEMONIC_UD1, ZYDIS_MNEMONIC_UD2,
    ])
    static let multiplyOrDivide = MnemonicSet([ZYDIS_MNEMONIC_MUL, ZYDIS_MNEMONIC_DIV, ZYDIS_MNEMONIC_IDIV])
    static let stringCategories: [ZydisInstructionCategory] = [ZYDIS_CATEGORY_STRINGOP, ZYDIS_CATEGORY_IOSTRINGOP]
    /// Floating point and vector state: x87, MMX, SSE, AVX and the state
    /// save instructions (fxsave, xsave).
    static let vectorCategories: [ZydisInstructionCategory] = [
        ZYDIS_CATEGORY_X87_ALU, ZYDIS_CATEGORY_FCMOV, ZYDIS_CATEGORY_MMX, ZYDIS_CATEGORY_AMD3DNOW,
        ZYDIS_CATEGORY_SSE, ZYDIS_CATEGORY_AVX, ZYDIS_CATEGORY_AVX2, ZYDIS_CATEGORY_AVX512,
        ZYDIS_CATEGORY_XSAVE, ZYDIS_CATEGORY_XSAVEOPT,
    ]
    static let vectorRegisterClasses: [ZydisRegisterClass] = [
        ZYDIS_REGCLASS_X87, ZYDIS_REGCLASS_MMX, ZYDIS_REGCLASS_XMM, ZYDIS_REGCLASS_YMM,
        ZYDIS_REGCLASS_ZMM, ZYDIS_REGCLASS_TMM, ZYDIS_REGCLASS_MASK,
    ]
    static let vectorControlRegisters: [ZydisRegister] = [
        ZYDIS_REGISTER_MXCSR, ZYDIS_REGISTER_X87CONTROL, ZYDIS_REGISTER_X87STATUS, ZYDIS_REGISTER_X87TAG,
    ]
    static let generalPurposeClasses: [ZydisRegisterClass] = [
        ZYDIS_REGCLASS_GPR8, ZYDIS_REGCLASS_GPR16, ZYDIS_REGCLASS_GPR32, ZYDIS_REGCLASS_GPR64,
    ]
    /// rflags and rip, which whitelisted instructions read or write
    /// implicitly (flags, branches, rip-relative operands).
    static let implicitClasses: [ZydisRegisterClass] = [ZYDIS_REGCLASS_FLAGS, ZYDIS_REGCLASS_IP]

    /// ZYDIS_STATUS_NO_MORE_DATA (Zydis/Status.h: ZYAN_MAKE_STATUS(1, ZYAN_MODULE_ZYDIS, 0)),
    /// a macro Swift does not import: the bytes end inside the instruction.
    static let noMoreData: ZyanStatus = 0x8020_0000

    /// One decoder for the whole process: ZydisDecoderDecodeFull only reads it.
    static let decoder: ZydisDecoder = {
        var decoder = ZydisDecoder()
        ZydisDecoderInit(&decoder, ZYDIS_MACHINE_MODE_LONG_64, ZYDIS_STACK_WIDTH_64)
        return decoder
    }()

    // Step 3: decode, and check against the whitelist.
    static func decode(_ bytes: [UInt8], at address: UInt) throws(LeafRejection) -> X86Instruction {
        var zydis = ZydisDecodedInstruction()
        var decodedOperands = [ZydisDecodedOperand](repeating: ZydisDecodedOperand(), count: Int(ZYDIS_MAX_OPERAND_COUNT))
        var decoder = Self.decoder
        let status = ZydisDecoderDecodeFull(&decoder, bytes, bytes.count, &zydis, &decodedOperands)
        guard status & 0x8000_0000 == 0 else {
            if status == noMoreData && bytes.count < LeafCallbackAnalysis.maxInstructionLength {
                throw .unreadable(at: address + UInt(bytes.count), errno: EFAULT)
            }
            throw .unknownInstruction(at: address, bytes: bytes)
        }
        let operands = decodedOperands.prefix(Int(zydis.operand_count))
        let mnemonic = zydis.mnemonic
        var registers: [ZydisRegister] = []
        registers.reserveCapacity(2 * operands.count)
        for operand in operands { appendRegisters(of: operand, to: &registers) }
        let unknown = LeafRejection.unknownInstruction(at: address, bytes: Array(bytes.prefix(Int(zydis.length))))

        // The refusals with a reason of their own, then the whitelist.
        if zydis.attributes & (ZYDIS_ATTRIB_HAS_SEGMENT_FS | ZYDIS_ATTRIB_HAS_SEGMENT_GS) != 0
            || operands.contains(where: { $0.type == ZYDIS_OPERAND_TYPE_MEMORY && ($0.mem.segment == ZYDIS_REGISTER_FS || $0.mem.segment == ZYDIS_REGISTER_GS) }) {
            throw .segmentOverride(at: address)
        }
        if zydis.encoding != ZYDIS_INSTRUCTION_ENCODING_LEGACY || vectorCategories.contains(zydis.meta.category)
            || registers.contains(where: { vectorRegisterClasses.contains(ZydisRegisterGetClass($0)) || vectorControlRegisters.contains($0) }) {
            throw .floatingPointOrVector(at: address)
        }
        if mnemonic == ZYDIS_MNEMONIC_CALL { throw .callsAFunction(at: address) }
        let relative = operands.first { $0.visibility == ZYDIS_OPERAND_VISIBILITY_EXPLICIT }.flatMap {
            $0.type == ZYDIS_OPERAND_TYPE_IMMEDIATE && $0.imm.is_relative != 0 ? $0 : nil
        }
        if mnemonic == ZYDIS_MNEMONIC_JMP && relative == nil { throw .indirectBranch(at: address) }
        if systemCallsAndTraps.contains(mnemonic) { throw .systemCallOrTrap(at: address) }
        if stringCategories.contains(zydis.meta.category) { throw .stringInstruction(at: address) }
        if multiplyOrDivide.contains(mnemonic) || (mnemonic == ZYDIS_MNEMONIC_IMUL && zydis.operand_count_visible == 1) {
            throw .multiplyOrDivide(at: address)
        }
        guard whitelist.contains(mnemonic),
              zydis.attributes & ZYDIS_ATTRIB_HAS_ADDRESSSIZE == 0,
              registers.allSatisfy({ generalPurposeClasses.contains(ZydisRegisterGetClass($0)) || implicitClasses.contains(ZydisRegisterGetClass($0)) })
        else { throw unknown }

        var result = X86Instruction(length: Int(zydis.length))
        // Step 4: a multi-byte nop names registers it never accesses.
        if mnemonic != ZYDIS_MNEMONIC_NOP {
            for register in registers { if let gpr = gpr(register) { result.mentioned.insert(GPRSet(gpr)) } }
        }
        let explicit = operands.filter { $0.visibility == ZYDIS_OPERAND_VISIBILITY_EXPLICIT }
        let branchOrStack = mnemonic == ZYDIS_MNEMONIC_JMP || mnemonic == ZYDIS_MNEMONIC_RET
            || mnemonic == ZYDIS_MNEMONIC_PUSH || mnemonic == ZYDIS_MNEMONIC_POP || conditionalJumps.contains(mnemonic)
        if branchOrStack && zydis.attributes & ZYDIS_ATTRIB_HAS_OPERANDSIZE != 0 { throw unknown }

        switch mnemonic {
        case ZYDIS_MNEMONIC_RET:
            guard explicit.isEmpty else { throw unknown }                   // `ret imm16`
            result.flow = .return
            return result
        case ZYDIS_MNEMONIC_JMP:
            result.flow = .jump(try target(of: zydis, relative!, at: address))
            return result
        case let m where conditionalJumps.contains(m):
            guard let relative else { throw unknown }
            result.flow = .conditional(try target(of: zydis, relative, at: address))
            return result
        case ZYDIS_MNEMONIC_PUSH, ZYDIS_MNEMONIC_POP:
            // Only a 64-bit register: push imm and push/pop memory stay out.
            guard explicit.count == 1, explicit[0].type == ZYDIS_OPERAND_TYPE_REGISTER,
                  ZydisRegisterGetClass(explicit[0].reg.value) == ZYDIS_REGCLASS_GPR64 else { throw unknown }
            if gpr(explicit[0].reg.value) == .rsp { throw .writesStackPointer(at: address) }
            result.stackEffect = mnemonic == ZYDIS_MNEMONIC_PUSH ? 1 : -1
            return result
        case let m where (m == ZYDIS_MNEMONIC_ADD || m == ZYDIS_MNEMONIC_SUB)
            && explicit.count == 2 && explicit[0].type == ZYDIS_OPERAND_TYPE_REGISTER && explicit[0].reg.value == ZYDIS_REGISTER_RSP:
            // `add rsp, imm` / `sub rsp, imm`: a frame of whole 8-byte slots.
            guard explicit[1].type == ZYDIS_OPERAND_TYPE_IMMEDIATE else { throw .writesStackPointer(at: address) }
            let amount = Int(explicit[1].imm.value.s)
            guard amount > 0, amount % 8 == 0, amount <= 8 * LeafCallbackAnalysis.maxInstructions else {
                throw .writesStackPointer(at: address)
            }
            result.stackEffect = (mnemonic == ZYDIS_MNEMONIC_SUB ? 1 : -1) * amount / 8
            return result
        default:
            break
        }
        // Any other write of rsp (explicit or hidden) moves the stack by an
        // amount the analysis does not follow.
        if operands.contains(where: { $0.type == ZYDIS_OPERAND_TYPE_REGISTER && $0.actions & writeActions != 0 && gpr($0.reg.value) == .rsp }) {
            throw .writesStackPointer(at: address)
        }
        result.fullyWrites = fullyWritten(mnemonic, explicit: explicit, all: operands)
        return result
    }

    static let writeActions = ZydisOperandActions(ZYDIS_OPERAND_ACTION_WRITE.rawValue | ZYDIS_OPERAND_ACTION_CONDWRITE.rawValue)
    static let readActions = ZydisOperandActions(ZYDIS_OPERAND_ACTION_READ.rawValue | ZYDIS_OPERAND_ACTION_CONDREAD.rawValue)

    /// Every register an operand names: a register operand's, a memory
    /// operand's base and index (the segment is checked apart).
    static func appendRegisters(of operand: ZydisDecodedOperand, to registers: inout [ZydisRegister]) {
        switch operand.type {
        case ZYDIS_OPERAND_TYPE_REGISTER:
            registers.append(operand.reg.value)
        case ZYDIS_OPERAND_TYPE_MEMORY:
            if operand.mem.base != ZYDIS_REGISTER_NONE { registers.append(operand.mem.base) }
            if operand.mem.index != ZYDIS_REGISTER_NONE { registers.append(operand.mem.index) }
        default:
            break
        }
    }

    /// The 64-bit register that encloses `register` (al, ah, ax, eax → rax),
    /// when it is a general-purpose one.
    static func gpr(_ register: ZydisRegister) -> GPR? {
        guard generalPurposeClasses.contains(ZydisRegisterGetClass(register)) else { return nil }
        let enclosing = ZydisRegisterGetLargestEnclosing(ZYDIS_MACHINE_MODE_LONG_64, register)
        return GPR(rawValue: Int(ZydisRegisterGetId(enclosing)))
    }

    /// The register the first operand writes whole without the instruction
    /// reading it: a plain write (no read, not conditional) of 32 or 64 bits
    /// (a 32-bit write clears the upper half), or the zero idioms
    /// `xor r, r` and `sub r, r`, which write r whatever it held.
    static func fullyWritten(_ mnemonic: ZydisMnemonic, explicit: [ZydisDecodedOperand], all: ArraySlice<ZydisDecodedOperand>) -> GPR? {
        guard let destination = explicit.first, destination.type == ZYDIS_OPERAND_TYPE_REGISTER, destination.size >= 32,
              let register = gpr(destination.reg.value) else { return nil }
        if mnemonic == ZYDIS_MNEMONIC_XOR || mnemonic == ZYDIS_MNEMONIC_SUB {
            let source = explicit.count == 2 ? explicit[1] : destination
            return source.type == ZYDIS_OPERAND_TYPE_REGISTER && source.reg.value == destination.reg.value ? register : nil
        }
        guard destination.actions == ZydisOperandActions(ZYDIS_OPERAND_ACTION_WRITE.rawValue) else { return nil }
        let read = all.contains { operand in
            switch operand.type {
            case ZYDIS_OPERAND_TYPE_REGISTER:
                return operand.actions & readActions != 0 && gpr(operand.reg.value) == register
            case ZYDIS_OPERAND_TYPE_MEMORY:
                return gpr(operand.mem.base) == register || gpr(operand.mem.index) == register
            default:
                return false
            }
        }
        return read ? nil : register
    }

    /// A relative branch's absolute target.
    static func target(of zydis: ZydisDecodedInstruction, _ operand: ZydisDecodedOperand, at address: UInt) throws(LeafRejection) -> UInt {
        var instruction = zydis, operand = operand
        var target: ZyanU64 = 0
        guard ZydisCalcAbsoluteAddress(&instruction, &operand, ZyanU64(address), &target) & 0x8000_0000 == 0 else {
            throw .unknownInstruction(at: address, bytes: [])
        }
        return UInt(target)
    }
}

/// A set of mnemonics as a table indexed by the mnemonic's value: the
/// analysis asks several of these per instruction, and hashing showed.
struct MnemonicSet: Sendable {
    let members: [ZydisMnemonic]
    private let table: [Bool]

    init(_ members: [ZydisMnemonic]) {
        self.members = members
        var table = [Bool](repeating: false, count: Int(ZYDIS_MNEMONIC_MAX_VALUE.rawValue) + 1)
        for mnemonic in members { table[Int(mnemonic.rawValue)] = true }
        self.table = table
    }

    func contains(_ mnemonic: ZydisMnemonic) -> Bool {
        Int(mnemonic.rawValue) < table.count && table[Int(mnemonic.rawValue)]
    }
}
