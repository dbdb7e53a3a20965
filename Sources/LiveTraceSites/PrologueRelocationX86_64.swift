// The x86-64 part of prologue relocation (rules in PrologueRelocation.swift),
// decoded with Zydis.
//
// Analysis, for a function of `size` bytes at `address`:
//  1. skip `endbr64` (f3 0f 1e fa): it stays in place, the patch follows it;
//  2. decode whole instructions from the patch until they cover 5 bytes,
//     classifying each (copy, rip-relative, jmp, jcc) or refusing it;
//  3. decode the whole body linearly and refuse when a direct branch or call
//     lands strictly inside the relocated bytes, or a branch from inside the
//     body lands on the patch.
//
// The stub's bytes, at `stub`:
//     for each moved instruction, in order:
//       copy                 the same bytes
//       rip-relative         the same bytes, disp32 recomputed for the stub
//       jmp rel8/rel32       e9 rel32                   (prefixes dropped)
//       jcc rel8/rel32       0f 80+cc rel32             (prefixes dropped)
//     e9 rel32               jmp back to patch + relocatedLength
// Every rel32 and disp32 must reach its target from the stub
// (`StubError.outOfReach`); the map from the moved instructions' offsets to
// the stub's lets the text poke move a thread from one to the other.
import CZydis

struct PrologueAnalyzerX86_64 {
    static let patchLength = 5
    static let endbr64 = X86Opcode.endbr64
    /// Zydis's `ZYDIS_ATTRIB_HAS_MODRM` and `ZYDIS_ATTRIB_IS_RELATIVE`.
    static let attributeHasModRM: UInt64 = 1 << 0
    static let attributeIsRelative: UInt64 = 1 << 7

    /// Whether Zydis decoded a direct branch or call an x86-64 CPU can take:
    /// a relative immediate in the legacy encoding. Zydis also decodes the
    /// VEX-encoded KNC mask branches (jkzd, jknzd: `c5 .. 84/85 rel32`),
    /// which are #UD on every x86-64 CPU: never a branch, in the body scan
    /// as in its byte pre-filter.
    static func isDirectBranch(_ instruction: ZydisDecodedInstruction) -> Bool {
        instruction.attributes & attributeIsRelative != 0 && instruction.raw.imm.0.is_relative != 0
            && instruction.encoding == ZYDIS_INSTRUCTION_ENCODING_LEGACY
    }

    private var decoder = ZydisDecoder()
    /// The body scan's decoder: Zydis's minimal mode (length, mnemonic,
    /// IS_RELATIVE and the raw fields: all the scan reads), about half the
    /// cost of a full decode.
    private var scanDecoder = ZydisDecoder()

    init() {
        ZydisDecoderInit(&decoder, ZYDIS_MACHINE_MODE_LONG_64, ZYDIS_STACK_WIDTH_64)
        ZydisDecoderInit(&scanDecoder, ZYDIS_MACHINE_MODE_LONG_64, ZYDIS_STACK_WIDTH_64)
        ZydisDecoderEnableMode(&scanDecoder, ZYDIS_DECODER_MODE_MINIMAL, 1)
    }

    /// One decoded instruction: its length and what it does to control flow
    /// or rip-relative data.
    struct Decoded {
        enum Kind {
            case plain
            case ripRelative(dispOffset: Int, target: UInt)
            case jump(target: UInt)
            case conditionalJump(condition: UInt8, target: UInt)
            case call(target: UInt?)
            /// loop, jrcxz, xbegin: relative, but with no rel32 form to widen to.
            case otherRelative(target: UInt, mnemonic: String)
            case trap
            /// syscall, sysenter, int n: a thread blocked in it has its PC
            /// right after it.
            case systemCall
        }
        var length: Int
        var kind: Kind
    }

    func decode(_ code: UnsafeRawBufferPointer, at offset: Int, address: UInt) -> Decoded? {
        guard offset < code.count else { return nil }
        var instruction = ZydisDecodedInstruction()
        var context = ZydisDecoderContext()
        let status = withUnsafePointer(to: decoder) { decoder in
            ZydisDecoderDecodeInstruction(decoder, &context, code.baseAddress! + offset, code.count - offset, &instruction)
        }
        guard status & 0x8000_0000 == 0 else { return nil }
        let length = Int(instruction.length)
        let end = address &+ UInt(length)
        let raw = instruction.raw
        if instruction.attributes & Self.attributeIsRelative != 0 {
            let immediate = raw.imm.0
            let target = end &+ UInt(bitPattern: Int(immediate.value.s))
            switch instruction.meta.category {
            case ZYDIS_CATEGORY_CALL:
                return Decoded(length: length, kind: .call(target: immediate.is_relative != 0 ? target : nil))
            case ZYDIS_CATEGORY_UNCOND_BR where immediate.is_relative != 0 && (immediate.size == 8 || immediate.size == 32):
                return Decoded(length: length, kind: .jump(target: target))
            case ZYDIS_CATEGORY_COND_BR where immediate.is_relative != 0 && (immediate.size == 8 || immediate.size == 32):
                let map = instruction.opcode_map
                let opcode = instruction.opcode
                if map == ZYDIS_OPCODE_MAP_DEFAULT, opcode >= 0x70, opcode <= 0x7f {
                    return Decoded(length: length, kind: .conditionalJump(condition: opcode - 0x70, target: target))
                }
                if map == ZYDIS_OPCODE_MAP_0F, opcode >= 0x80, opcode <= 0x8f {
                    return Decoded(length: length, kind: .conditionalJump(condition: opcode - 0x80, target: target))
                }
                return Decoded(length: length, kind: .otherRelative(target: target, mnemonic: Self.name(instruction.mnemonic)))
            default:
                if immediate.is_relative != 0 {
                    return Decoded(length: length, kind: .otherRelative(target: target, mnemonic: Self.name(instruction.mnemonic)))
                }
                // rip-relative memory operand with the relative attribute.
            }
        }
        if instruction.meta.category == ZYDIS_CATEGORY_CALL {
            return Decoded(length: length, kind: .call(target: nil))
        }
        if instruction.mnemonic == ZYDIS_MNEMONIC_INT3 || instruction.mnemonic == ZYDIS_MNEMONIC_INT1 {
            return Decoded(length: length, kind: .trap)
        }
        if instruction.mnemonic == ZYDIS_MNEMONIC_SYSCALL || instruction.mnemonic == ZYDIS_MNEMONIC_SYSENTER
            || instruction.mnemonic == ZYDIS_MNEMONIC_INT {
            return Decoded(length: length, kind: .systemCall)
        }
        // In 64-bit mode ModRM mod=00 rm=101 is always rip + disp32.
        if instruction.attributes & Self.attributeHasModRM != 0, raw.modrm.mod == 0, raw.modrm.rm == 5, raw.disp.size == 32 {
            let target = end &+ UInt(bitPattern: Int(raw.disp.value))
            return Decoded(length: length, kind: .ripRelative(dispOffset: Int(raw.disp.offset), target: target))
        }
        return Decoded(length: length, kind: .plain)
    }

    /// The full decoder's view of the instruction at `code`'s start: the
    /// target offset of its relative immediate, or nil.
    func relativeTarget(_ code: UnsafeRawBufferPointer) -> Int? {
        guard !code.isEmpty else { return nil }
        var instruction = ZydisDecodedInstruction()
        var context = ZydisDecoderContext()
        let status = withUnsafePointer(to: decoder) { decoder in
            ZydisDecoderDecodeInstruction(decoder, &context, code.baseAddress!, code.count, &instruction)
        }
        guard status & 0x8000_0000 == 0, Self.isDirectBranch(instruction) else { return nil }
        return Int(instruction.length) &+ Int(instruction.raw.imm.0.value.s)
    }

    static func name(_ mnemonic: ZydisMnemonic) -> String {
        guard let string = ZydisMnemonicGetString(mnemonic) else { return "instruction" }
        return String(cString: string)
    }

    /// The verdict for the function whose first `code.count` bytes (at most
    /// its `size`) are in `code`, at `address`.
    /// `fullBodyScan`: decode the whole body even when the byte scan finds
    /// no candidate (the oracle the byte scan is tested against).
    func analyze(code: UnsafeRawBufferPointer, address: UInt, size: Int, fullBodyScan: Bool = false) -> Result<PrologueRelocation, RelocationRefusal> {
        let available = min(size, code.count)
        let hasEndbr = available >= 4 && code.prefix(4).elementsEqual(Self.endbr64)
        let start = hasEndbr ? 4 : 0
        guard size >= start + Self.patchLength, available >= start + Self.patchLength else {
            return .failure(.tooShort(size: size))
        }
        let body = UnsafeRawBufferPointer(rebasing: code[0..<available])
        // Step 2: the moved instructions.
        var moved = PrologueRelocation(functionAddress: address, patchAddress: address + UInt(start), hasEndbr: hasEndbr)
        var offset = start
        while offset < start + Self.patchLength {
            guard let decoded = decode(body, at: offset, address: address + UInt(offset)) else {
                return .failure(offset + 1 > available ? .tooShort(size: size) : .undecodable(offset: offset))
            }
            guard offset + decoded.length <= available else { return .failure(.tooShort(size: size)) }
            let fixup: PrologueRelocation.Fixup
            switch decoded.kind {
            case .plain: fixup = .none
            case let .ripRelative(dispOffset, target): fixup = .ripRelative(dispOffset: dispOffset, target: target)
            case let .jump(target): fixup = .jump(target: target)
            case let .conditionalJump(condition, target): fixup = .conditionalJump(condition: condition, target: target)
            case .call: return .failure(.cannotMove(offset: offset, mnemonic: "call"))
            case let .otherRelative(_, mnemonic): return .failure(.cannotMove(offset: offset, mnemonic: mnemonic))
            case .trap: return .failure(.cannotMove(offset: offset, mnemonic: "int3"))
            case .systemCall:
                // A thread blocked in it would sit strictly inside the moved
                // bytes, where the rescue does not reach it (the text poke does
                // not interrupt system calls); last, it returns to the resume address.
                if offset + decoded.length < start + Self.patchLength {
                    return .failure(.cannotMove(offset: offset, mnemonic: "system call"))
                }
                fixup = .none
            }
            moved.append(bytes: UnsafeRawBufferPointer(rebasing: body[offset..<offset + decoded.length]), fixup: fixup)
            offset += decoded.length
        }
        let relocatedEnd = offset
        // Step 3: every direct branch of the body. The byte scan first: when
        // no byte position can be a branch into 0..<relocatedEnd, no decoded
        // branch can either (proof at `mayBranch`), and the verdict is made.
        if !fullBodyScan && !Self.mayBranch(into: relocatedEnd, code: body) {
            return .success(moved)
        }
        // One instruction and context serve the whole scan (Zydis fills what
        // minimal mode reads).
        var instruction = ZydisDecodedInstruction()
        var context = ZydisDecoderContext()
        let base = body.baseAddress!
        offset = 0
        let refusal: RelocationRefusal? = withUnsafePointer(to: scanDecoder) { decoder in
            while offset < available {
                let status = ZydisDecoderDecodeInstruction(decoder, &context, base + offset, available - offset, &instruction)
                guard status & 0x8000_0000 == 0 else { return .undecodable(offset: offset) }
                let length = Int(instruction.length)
                if Self.isDirectBranch(instruction) {
                    let to = offset &+ length &+ Int(instruction.raw.imm.0.value.s)
                    if to > start, to < relocatedEnd {
                        return .branchIntoRelocated(from: offset, to: to)
                    }
                    if (to == start || (hasEndbr && to == 0)) && instruction.mnemonic != ZYDIS_MNEMONIC_CALL {
                        return .branchToEntry(from: offset)
                    }
                }
                offset += length
            }
            return nil
        }
        if let refusal { return .failure(refusal) }
        return .success(moved)
    }
}

extension PrologueAnalyzerX86_64 {
    /// Whether some byte position of `code` could start a direct branch or
    /// call whose target offset (from `code`'s start) is in 0..<`end`: a
    /// superset of what the linear decode of step 3 finds, so that "no" makes
    /// that decode needless.
    ///
    /// Proof. The instructions Zydis (64-bit mode, neither KNC nor AMD
    /// branches) decodes with a relative immediate in the legacy encoding
    /// (`isDirectBranch`: the VEX-encoded KNC jkzd/jknzd it also decodes
    /// are #UD on x86-64) are exactly these, the
    /// immediate last, right after the opcode (and ModRM for xbegin); their
    /// target is the instruction's end plus the immediate:
    ///
    ///     70-7f ib (jcc), eb ib (jmp), e0-e3 ib (loop*, jrcxz)   end = q+2
    ///     e8/e9 id (call, jmp)                 end = q+5 (q+3 with imm16)
    ///     0f 80-8f id (jcc)                    end = q+6 (q+4 with imm16)
    ///     c7 f8 id (xbegin)                    end = q+6 (q+4 with imm16)
    ///
    /// where q is the opcode's position; prefixes (66, 67, f2, f3, REX)
    /// come before q and do not move the end relative to q. Every
    /// instruction the linear decode meets has its opcode at some position
    /// q of `code`, so computing each form's target at every position,
    /// both immediate widths, visits every target the decode can compute
    /// (and more: positions inside other instructions, and data). A form
    /// whose immediate runs past `code` is not a whole instruction of it:
    /// the decode refuses it as undecodable, with or without a candidate.
    /// RelocationScanTests checks the table against Zydis over the whole
    /// one- and two-byte opcode space with every prefix, and the verdicts
    /// against the full decode on every function of libswiftCore,
    /// Foundation and swift-format.
    ///
    /// A function with no candidate is not decoded beyond its moved
    /// instructions: bytes that do not decode after them (data, padding)
    /// cannot hide a branch the scan missed, so they are no reason to refuse.
    ///
    /// Speed. A rel8 form reaches at most 126 bytes back, so from position
    /// `end + 126` on only the rel16/rel32 forms (opcodes e8, e9, 0f, c7)
    /// can reach 0..<end; there the scan skips 16 bytes at a time that hold
    /// none of those four (one vector compare, which also names the next
    /// position to check). The body scan was a quarter
    /// of the analysis, about 1.2 ns a byte over swift-format's 12.7 MB.
    static func mayBranch(into end: Int, code: UnsafeRawBufferPointer) -> Bool {
        guard end > 0 else { return false }
        let limit = UInt(end)
        let n = code.count
        let bytes = code.baseAddress!
        let near = min(n, end + 126)
        // A negative target wraps far above `limit`.
        let visit = { (target: Int) in UInt(bitPattern: target) < limit }
        var q = 0
        while q < near {
            if candidateTargets(at: q, in: bytes, count: n, visit) { return true }
            q += 1
        }
        let opcodes = (e8: SIMD16<UInt8>(repeating: X86Opcode.callRel32), e9: SIMD16<UInt8>(repeating: X86Opcode.jmpRel32),
                       escape: SIMD16<UInt8>(repeating: X86Opcode.twoByteEscape), xbegin: SIMD16<UInt8>(repeating: X86Opcode.xbeginOpcode))
        while q < n {
            if q + 16 <= n {
                let v = bytes.loadUnaligned(fromByteOffset: q, as: SIMD16<UInt8>.self)
                let found = (v .== opcodes.e8) .| (v .== opcodes.e9) .| (v .== opcodes.escape) .| (v .== opcodes.xbegin)
                // Lanes are 0x00 or 0xff: the first set byte is the first position to check.
                let lanes = unsafeBitCast(found, to: SIMD2<UInt64>.self)
                if lanes[0] != 0 {
                    q += lanes[0].trailingZeroBitCount / 8
                } else if lanes[1] != 0 {
                    q += 8 + lanes[1].trailingZeroBitCount / 8
                } else {
                    q += 16
                    continue
                }
            }
            if candidateTargets(at: q, in: bytes, count: n, visit) { return true }
            q += 1
        }
        return false
    }

    /// Visits the target offset of every form of the table above at every
    /// position of `code` until `visit` returns true; returns whether it did.
    static func candidateTargets(in code: UnsafeRawBufferPointer, _ visit: (Int) -> Bool) -> Bool {
        guard let bytes = code.baseAddress else { return false }
        for q in 0..<code.count where candidateTargets(at: q, in: bytes, count: code.count, visit) { return true }
        return false
    }

    /// The forms of the table above whose opcode is at position `q` of the
    /// `n` bytes at `bytes`: visits each one's target offset until `visit`
    /// returns true; returns whether it did.
    @inline(__always)
    static func candidateTargets(at q: Int, in bytes: UnsafeRawPointer, count n: Int, _ visit: (Int) -> Bool) -> Bool {
        @inline(__always) func rel8(_ at: Int) -> Int { Int(Int8(bitPattern: bytes.load(fromByteOffset: at, as: UInt8.self))) }
        @inline(__always) func rel16(_ at: Int) -> Int { Int(Int16(littleEndian: bytes.loadUnaligned(fromByteOffset: at, as: Int16.self))) }
        @inline(__always) func rel32(_ at: Int) -> Int { Int(Int32(littleEndian: bytes.loadUnaligned(fromByteOffset: at, as: Int32.self))) }
        let byte = bytes.load(fromByteOffset: q, as: UInt8.self)
        if byte & 0xf0 == X86Opcode.jccRel8Base || byte & 0xfc == X86Opcode.loopRel8Base || byte == X86Opcode.jmpRel8 {
            return q + 2 <= n && visit(q + 2 + rel8(q + 1))
        }
        if byte == X86Opcode.callRel32 || byte == X86Opcode.jmpRel32 {
            if q + 3 <= n, visit(q + 3 + rel16(q + 1)) { return true }
            return q + 5 <= n && visit(q + 5 + rel32(q + 1))
        }
        guard (byte == X86Opcode.twoByteEscape || byte == X86Opcode.xbeginOpcode) && q + 2 <= n else { return false }
        // 0f 80+cc or c7 f8.
        let next = bytes.load(fromByteOffset: q + 1, as: UInt8.self)
        guard byte == X86Opcode.twoByteEscape ? next & 0xf0 == X86Opcode.jccRel32Base : next == X86Opcode.xbeginModRM else { return false }
        if q + 4 <= n, visit(q + 4 + rel16(q + 2)) { return true }
        return q + 6 <= n && visit(q + 6 + rel32(q + 2))
    }
}

extension PrologueRelocation {
    /// Why a stub cannot be built at the address given.
    public enum StubError: Error, Sendable, Hashable {
        /// A target this far from the stub's instruction is beyond rel32.
        case outOfReach(target: UInt)
    }

    /// The stub's exact length in bytes (its layout above).
    public var stubLength: Int {
        var length = X86Opcode.rel32Length
        for index in 0..<Int(slotCount) {
            let slot = slot(index)
            switch slot.fixup {
            case .none, .ripRelative: length += slot.length
            case .jump: length += X86Opcode.rel32Length
            case .conditionalJump: length += X86Opcode.jccRel32Length
            }
        }
        return length
    }

    /// The stub's bytes at `stub` (layout in PrologueRelocationX86_64.swift)
    /// and, for each moved instruction, its offset in the stub.
    public func stubBytes(at stub: UInt) throws(StubError) -> (bytes: [UInt8], offsets: [Int]) {
        var bytes: [UInt8] = []
        bytes.reserveCapacity(stubLength)
        let offsets = try appendStub(at: stub, to: &bytes)
        return (bytes, offsets.map(Int.init))
    }

    /// Appends the stub's bytes at `stub` to `buffer` (where the stub starts
    /// at `buffer.count`); returns each moved instruction's offset in the stub
    /// (`writeStub`). On error `buffer` may hold part of the stub.
    public func appendStub(at stub: UInt, to buffer: inout [UInt8]) throws(StubError) -> ShortBytes {
        let start = buffer.count
        buffer.append(contentsOf: repeatElement(X86Opcode.int3, count: stubLength))
        let written: Result<ShortBytes, StubError> = buffer.withUnsafeMutableBytes { bytes in
            do throws(StubError) {
                return .success(try writeStub(at: stub, into: UnsafeMutableRawBufferPointer(rebasing: bytes[start...])))
            } catch {
                return .failure(error)
            }
        }
        return try written.get()
    }

    /// Writes the stub's bytes at `stub` to the start of `out`, which holds
    /// at least `stubLength` bytes; returns each moved instruction's offset
    /// in the stub (a stub is shorter than 256 bytes: at most 5 instructions
    /// of at most 15 bytes, widened to at most 6, and a 5-byte jmp). Stores
    /// into memory the caller sized once: a batch of 60,000 stubs appended
    /// byte by byte to an array spent a fifth of its stub phase in the
    /// appends' checks.
    public func writeStub(at stub: UInt, into out: UnsafeMutableRawBufferPointer) throws(StubError) -> ShortBytes {
        precondition(out.count >= stubLength, "a stub's buffer shorter than the stub")
        let base = out.baseAddress!
        var offsets = ShortBytes()
        var length = 0
        /// Stores the rel32 of an instruction ending `after` bytes past
        /// the 4 bytes stored at `length`, to `target`.
        func storeRel32(_ target: UInt, after: Int = 0) throws(StubError) {
            let end = stub + UInt(length + 4 + after)
            let distance = Int64(bitPattern: UInt64(target)) &- Int64(bitPattern: UInt64(end))
            guard let value = Int32(exactly: distance) else { throw .outOfReach(target: target) }
            base.storeBytes(of: value.littleEndian, toByteOffset: length, as: Int32.self)
            length += 4
        }
        func storeByte(_ byte: UInt8) {
            base.storeBytes(of: byte, toByteOffset: length, as: UInt8.self)
            length += 1
        }
        try movedBytes.withUnsafeBytes { moved throws(StubError) in
            func copy(_ range: Range<Int>) {
                (base + length).copyMemory(from: moved.baseAddress! + range.lowerBound, byteCount: range.count)
                length += range.count
            }
            for index in 0..<Int(slotCount) {
                let instruction = slot(index)
                let start = instruction.offset
                offsets.append(UInt8(length))
                switch instruction.fixup {
                case .none:
                    copy(start..<start + instruction.length)
                case let .ripRelative(dispOffset, target):
                    copy(start..<start + dispOffset)
                    // disp32 is relative to the end of the instruction, `tail` bytes after it.
                    let tail = instruction.length - dispOffset - 4
                    try storeRel32(target, after: tail)
                    copy(start + dispOffset + 4..<start + instruction.length)
                case let .jump(target):
                    storeByte(X86Opcode.jmpRel32)
                    try storeRel32(target)
                case let .conditionalJump(condition, target):
                    storeByte(X86Opcode.twoByteEscape)
                    storeByte(X86Opcode.jccRel32Base + condition)
                    try storeRel32(target)
                }
            }
        }
        storeByte(X86Opcode.jmpRel32)
        try storeRel32(resumeAddress)
        return offsets
    }

    /// The analysis of the function at run-time `address` whose `size` bytes
    /// are readable in memory (its symbol's size).
    public static func analyze(functionAt address: UInt, size: Int) -> Result<PrologueRelocation, RelocationRefusal> {
        guard size > 0, let base = UnsafeRawPointer(bitPattern: address) else { return .failure(.tooShort(size: size)) }
        return PrologueAnalyzerX86_64().analyze(code: UnsafeRawBufferPointer(start: base, count: size), address: address, size: size)
    }

    /// Whether some byte position of `code` could start a direct branch or
    /// call (any encoding Zydis decodes with a relative immediate) whose
    /// target offset from `code`'s start is in 0..<`end`: the body scan's
    /// pre-filter (its proof in PrologueRelocationX86_64.swift).
    public static func mayBranch(into end: Int, code: UnsafeRawBufferPointer) -> Bool {
        PrologueAnalyzerX86_64.mayBranch(into: end, code: code)
    }

    /// Every target offset the pre-filter considers in `code`.
    public static func branchCandidates(in code: UnsafeRawBufferPointer) -> Set<Int> {
        var targets = Set<Int>()
        _ = PrologueAnalyzerX86_64.candidateTargets(in: code) { targets.insert($0); return false }
        return targets
    }

    /// The target offset, from `code`'s start, of the instruction at its
    /// start as Zydis decodes it when it has a relative immediate (a direct
    /// branch or call); nil otherwise. The oracle of the pre-filter's tests.
    public static func relativeTarget(ofInstructionIn code: UnsafeRawBufferPointer) -> Int? {
        PrologueAnalyzerX86_64().relativeTarget(code)
    }
}
