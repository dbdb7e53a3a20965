/// Prologue relocation (full-dynamic patching, docs/ARCHITECTURE.md): a
/// function without a compiler-made site gets one by moving the whole
/// instructions that cover at least 5 bytes at its entry (after `endbr64`,
/// which stays in place) into a stub, so that its first 5 bytes can hold the
/// normal-form instruction. This file is the machine-independent part: the
/// verdict, its refusal reasons and the analysis of a whole object. The
/// decoding and the stub's bytes are x86-64 (PrologueRelocationX86_64.swift).
///
/// A function is relocatable when all of these hold (else the typed reason):
///  1. its symbol size is known and covers the patch (`tooShort`);
///  2. every instruction of the relocated bytes decodes (`undecodable`) and
///     can run elsewhere: no call (its return address would point into the
///     stub), no `loop`/`jrcxz`/`xbegin` (`cannotMove`), no `int3` (someone
///     else's breakpoint: `cannotMove`), no system call before the last
///     moved instruction (a thread blocked in it is not moved: `cannotMove`);
///  3. no direct branch or call anywhere in the function's body lands in the
///     relocated bytes (`branchIntoRelocated`), nor on the patched entry
///     itself from inside the body (`branchToEntry`: every iteration of a
///     loop whose head is the entry would count as a call);
///  4. when a byte scan of the body finds a position that could be a
///     direct branch into 0..<end of the relocated bytes (its proof in
///     PrologueRelocationX86_64.swift), the whole body decodes, so that
///     rule 3 saw every branch (`undecodable`); without such a position no
///     decoded branch can break rule 3 and the body is not decoded;
///  5. it is not the tracer's own code (`tracerCode`), nor the program's
///     entry point `_start` (`entryPoint`: no return address on its stack;
///     the file's analysis knows it by address, the header's `e_entry`,
///     without reading 60,000 names for it, the registry by its name).
/// Whether a rip-relative target or a branch target is within reach of the
/// stub is decided when the stub's address is known (`StubError.outOfReach`).
import Glibc
import Synchronization

public struct PrologueRelocation: Sendable, Hashable {
    /// One moved instruction and what must change when it moves.
    public enum Fixup: Sendable, Hashable {
        /// Position-independent: copied as is (`ret` and indirect jumps too).
        case none
        /// A rip-relative memory operand: its disp32 at `dispOffset` must
        /// reach `target` from the new place.
        case ripRelative(dispOffset: Int, target: UInt)
        /// `jmp rel8/rel32`: re-encoded as `jmp rel32` to `target`.
        case jump(target: UInt)
        /// `jcc rel8/rel32` with condition code `condition` (0...15):
        /// re-encoded as `jcc rel32` (0f 80+cc) to `target`.
        case conditionalJump(condition: UInt8, target: UInt)
    }

    public struct Instruction: Sendable, Hashable {
        /// Offset from `patchAddress`.
        public var offset: Int
        public var bytes: InstructionBytes
        public var fixup: Fixup
    }

    /// One instruction's bytes (at most 16; x86 stops at 15) held inline:
    /// the analysis of 60,000 functions makes no allocation per moved
    /// instruction. Bytes past `count` are zero, so equal bytes are equal values.
    public struct InstructionBytes: RandomAccessCollection, Sendable, Hashable, CustomStringConvertible {
        private var low: UInt64 = 0
        private var high: UInt64 = 0
        public private(set) var count: Int = 0

        public init(_ bytes: some Collection<UInt8>) {
            precondition(bytes.count <= 16, "an instruction has at most 15 bytes")
            for byte in bytes { append(byte) }
        }

        init(_ bytes: UnsafeRawBufferPointer) {
            precondition(bytes.count <= 16, "an instruction has at most 15 bytes")
            for byte in bytes { append(byte) }
        }

        private mutating func append(_ byte: UInt8) {
            if count < 8 { low |= UInt64(byte) << UInt64(8 * count) } else { high |= UInt64(byte) << UInt64(8 * (count - 8)) }
            count += 1
        }

        public var startIndex: Int { 0 }
        public var endIndex: Int { count }

        public subscript(position: Int) -> UInt8 {
            precondition(position >= 0 && position < count, "index out of range")
            return UInt8(truncatingIfNeeded: position < 8 ? low >> UInt64(8 * position) : high >> UInt64(8 * (position - 8)))
        }

        public var description: String { Array(self).description }
    }

    /// Up to 24 bytes held inline: the moved bytes of one prologue (at
    /// most 19: an instruction starting before the 5th byte, 15 long) or
    /// its map of offsets into the stub. A batch of 60,000 relocated entries
    /// makes no allocation per entry for them. Bytes past `count` are zero,
    /// so equal bytes are equal values.
    public struct ShortBytes: RandomAccessCollection, MutableCollection, Sendable, Hashable, CustomStringConvertible {
        public static let capacity = 24
        private var words: (UInt64, UInt64, UInt64) = (0, 0, 0)
        private var length: UInt8 = 0
        public var count: Int { Int(length) }

        public init() {}

        public init(repeating byte: UInt8, count: Int) {
            precondition(count >= 0 && count <= Self.capacity, "more than \(Self.capacity) bytes")
            let all = UInt64(byte) &* 0x0101_0101_0101_0101
            func word(_ k: Int) -> UInt64 {
                let bytes = Swift.min(Swift.max(count - 8 * k, 0), 8)
                return bytes == 8 ? all : all & ((UInt64(1) << UInt64(8 * bytes)) &- 1)
            }
            words = (word(0), word(1), word(2))
            length = UInt8(count)
        }

        public init(_ bytes: some Sequence<UInt8>) {
            for byte in bytes { append(byte) }
        }

        public mutating func append(_ byte: UInt8) {
            precondition(count < Self.capacity, "more than \(Self.capacity) bytes")
            length += 1
            self[count - 1] = byte
        }

        public mutating func append(contentsOf bytes: some Sequence<UInt8>) {
            for byte in bytes { append(byte) }
        }

        public var startIndex: Int { 0 }
        public var endIndex: Int { count }

        public subscript(position: Int) -> UInt8 {
            get {
                precondition(position >= 0 && position < count, "index out of range")
                let shift = UInt64(8 * (position & 7))
                switch position >> 3 {
                case 0: return UInt8(truncatingIfNeeded: words.0 >> shift)
                case 1: return UInt8(truncatingIfNeeded: words.1 >> shift)
                default: return UInt8(truncatingIfNeeded: words.2 >> shift)
                }
            }
            set {
                precondition(position >= 0 && position < count, "index out of range")
                let shift = UInt64(8 * (position & 7))
                let mask = ~(UInt64(0xff) << shift), value = UInt64(newValue) << shift
                switch position >> 3 {
                case 0: words.0 = words.0 & mask | value
                case 1: words.1 = words.1 & mask | value
                default: words.2 = words.2 & mask | value
                }
            }
        }

        /// The bytes, contiguous, for `body`'s duration.
        public func withUnsafeBytes<R, E: Error>(_ body: (UnsafeRawBufferPointer) throws(E) -> R) throws(E) -> R {
            var copy = words
            return try Swift.withUnsafeBytes(of: &copy) { bytes throws(E) in try body(UnsafeRawBufferPointer(rebasing: bytes[0..<count])) }
        }

        public static func == (a: ShortBytes, b: ShortBytes) -> Bool {
            a.count == b.count && a.words.0 == b.words.0 && a.words.1 == b.words.1 && a.words.2 == b.words.2
        }

        public func hash(into hasher: inout Hasher) {
            hasher.combine(count)
            hasher.combine(words.0)
            hasher.combine(words.1)
            hasher.combine(words.2)
        }

        public var description: String { Array(self).description }
    }

    /// The function's symbol address.
    public var functionAddress: UInt
    /// Where the 5-byte patch goes: the entry, or the entry + 4 after `endbr64`.
    public var patchAddress: UInt
    public var hasEndbr: Bool
    /// The moved bytes as the function holds them (`relocatedLength` of them).
    public private(set) var movedBytes = ShortBytes()
    /// The moved instructions, held inline (no allocation per function: an
    /// object's analysis and a batch copy 60,000 of these): instruction k
    /// is `slots.k`, packed as
    ///     bits 0-7 offset from `patchAddress`, 8-15 length, 16-23 fixup
    ///     kind (0 none, 1 rip-relative, 2 jmp, 3 jcc), 24-31 its dispOffset
    ///     or condition, 32-63 the target as a signed 32-bit distance from
    ///     the instruction's end (what its rel8/rel32/disp32 encodes, so it
    ///     always fits, and a rebased copy changes no slot).
    /// At most 5: whole instructions of at least one byte that start in the
    /// first 5 bytes.
    private var slots: (UInt64, UInt64, UInt64, UInt64, UInt64) = (0, 0, 0, 0, 0)
    private(set) var slotCount: UInt8 = 0
    public static let maximumInstructions = 5

    /// An empty relocation (instructions appended in order).
    init(functionAddress: UInt, patchAddress: UInt, hasEndbr: Bool) {
        self.functionAddress = functionAddress
        self.patchAddress = patchAddress
        self.hasEndbr = hasEndbr
    }

    /// Appends the next moved instruction (its offset is the current `relocatedLength`).
    mutating func append(bytes: UnsafeRawBufferPointer, fixup: Fixup) {
        precondition(Int(slotCount) < Self.maximumInstructions, "more than 5 moved instructions")
        let offset = movedBytes.count
        let end = patchAddress &+ UInt(offset + bytes.count)
        var kind: UInt64 = 0, aux: UInt64 = 0, target: UInt = end
        switch fixup {
        case .none: break
        case let .ripRelative(dispOffset, to): kind = 1; aux = UInt64(dispOffset); target = to
        case let .jump(to): kind = 2; target = to
        case let .conditionalJump(condition, to): kind = 3; aux = UInt64(condition); target = to
        }
        let distance = Int64(bitPattern: UInt64(target &- end))
        precondition(Int64(Int32(truncatingIfNeeded: distance)) == distance, "a moved instruction's target beyond 32 bits")
        let packed = UInt64(offset) | UInt64(bytes.count) << 8 | kind << 16 | aux << 24
            | UInt64(UInt32(bitPattern: Int32(truncatingIfNeeded: distance))) << 32
        switch slotCount {
        case 0: slots.0 = packed
        case 1: slots.1 = packed
        case 2: slots.2 = packed
        case 3: slots.3 = packed
        default: slots.4 = packed
        }
        slotCount += 1
        movedBytes.append(contentsOf: bytes)
    }

    /// The moved instructions, in order; they cover `relocatedLength` ≥ 5 bytes.
    public var instructions: Instructions { Instructions(relocation: self) }

    /// The moved instructions, decoded from their slots on access.
    public struct Instructions: RandomAccessCollection, Sendable {
        let relocation: PrologueRelocation
        public var startIndex: Int { 0 }
        public var endIndex: Int { Int(relocation.slotCount) }
        public subscript(position: Int) -> Instruction {
            precondition(position >= 0 && position < endIndex, "index out of range")
            return relocation.instruction(at: position)
        }
    }

    /// Instruction `index`'s slot, unpacked: offset, length, fixup.
    func slot(_ index: Int) -> (offset: Int, length: Int, fixup: Fixup) {
        let packed: UInt64
        switch index {
        case 0: packed = slots.0
        case 1: packed = slots.1
        case 2: packed = slots.2
        case 3: packed = slots.3
        default: packed = slots.4
        }
        let offset = Int(packed & 0xff), length = Int(packed >> 8 & 0xff), aux = Int(packed >> 24 & 0xff)
        let end = patchAddress &+ UInt(offset + length)
        let target = end &+ UInt(bitPattern: Int(Int32(truncatingIfNeeded: packed >> 32)))
        switch packed >> 16 & 0xff {
        case 1: return (offset, length, .ripRelative(dispOffset: aux, target: target))
        case 2: return (offset, length, .jump(target: target))
        case 3: return (offset, length, .conditionalJump(condition: UInt8(aux), target: target))
        default: return (offset, length, .none)
        }
    }

    /// The offset from `patchAddress` of moved instruction `index` (< `instructions.count`).
    public func offset(ofInstruction index: Int) -> Int { slot(index).offset }

    private func instruction(at index: Int) -> Instruction {
        let (offset, length, fixup) = slot(index)
        return Instruction(offset: offset, bytes: InstructionBytes(movedBytes[offset..<offset + length]), fixup: fixup)
    }

    public static func == (a: PrologueRelocation, b: PrologueRelocation) -> Bool {
        a.functionAddress == b.functionAddress && a.patchAddress == b.patchAddress && a.hasEndbr == b.hasEndbr
            && a.movedBytes == b.movedBytes && a.slotCount == b.slotCount && a.slots.0 == b.slots.0
            && a.slots.1 == b.slots.1 && a.slots.2 == b.slots.2 && a.slots.3 == b.slots.3 && a.slots.4 == b.slots.4
    }

    public func hash(into hasher: inout Hasher) {
        hasher.combine(functionAddress)
        hasher.combine(patchAddress)
        hasher.combine(movedBytes)
        for index in 0..<Int(slotCount) { hasher.combine(instruction(at: index)) }
    }

    public var relocatedLength: Int { movedBytes.count }
    /// Where the function continues after the moved bytes (the stub's `jmp` back).
    public var resumeAddress: UInt { patchAddress + UInt(relocatedLength) }

    /// The same relocation for its object loaded `bias` bytes away from the
    /// addresses it was analyzed at (the file's link-time addresses): rip-
    /// relative and branch targets are relative to the instruction, so the
    /// analysis of the loaded bytes gives exactly this when they are the
    /// analyzed ones, which the text poke verifies before writing.
    public func rebased(by bias: UInt) -> PrologueRelocation {
        var copy = self
        copy.functionAddress &+= bias
        copy.patchAddress &+= bias
        return copy
    }
}

/// Why a function's prologue is not relocated.
public enum RelocationRefusal: Error, Sendable, Hashable, CustomStringConvertible {
    /// The symbol's size (0: unknown) does not hold the relocated bytes.
    case tooShort(size: Int)
    /// Bytes at this offset from the function that decode to no instruction.
    case undecodable(offset: Int)
    /// An instruction of the relocated bytes that cannot run elsewhere.
    case cannotMove(offset: Int, mnemonic: String)
    /// A direct branch or call at `from` (offset in the function) lands
    /// strictly inside the relocated bytes, at offset `to`.
    case branchIntoRelocated(from: Int, to: Int)
    /// A direct branch inside the body at `from` goes back to the patched entry.
    case branchToEntry(from: Int)
    /// The function belongs to the tracer itself.
    case tracerCode
    /// The program's entry point (`_start`): entered with argc, not a return
    /// address, at [rsp], and already running when the tracer starts.
    case entryPoint

    /// A refusal decided by the name alone.
    public static func refusal(forSymbol symbol: String) -> RelocationRefusal? {
        symbol == "_start" ? .entryPoint : nil
    }

    public var description: String {
        switch self {
        case let .tooShort(size): return size == 0 ? "symbol size unknown" : "only \(size) bytes: shorter than the 5-byte patch"
        case let .undecodable(offset): return "undecodable bytes at +\(offset)"
        case let .cannotMove(offset, mnemonic): return "\(mnemonic) at +\(offset) cannot be moved"
        case let .branchIntoRelocated(from, to): return "branch at +\(from) lands inside the relocated bytes (+\(to))"
        case let .branchToEntry(from): return "branch at +\(from) loops back to the entry"
        case .tracerCode: return "the tracer's own code"
        case .entryPoint: return "the program's entry point (no return address)"
        }
    }

    /// Short stable identifier used in summaries and JSON.
    public var code: String {
        switch self {
        case .tooShort: return "too-short"
        case .undecodable: return "undecodable"
        case .cannotMove: return "cannot-move"
        case .branchIntoRelocated: return "branch-into-relocated"
        case .branchToEntry: return "branch-to-entry"
        case .tracerCode: return "tracer-code"
        case .entryPoint: return "entry-point"
        }
    }
}

/// Functions whose entry is recorded but whose return is never hooked: they
/// leave by tail calls, not through their return address.
public enum EntryOnly {
    /// Swift's mangling (docs/ABI/Mangling.rst of the Swift repository):
    /// `Ya` marks an async function type, `TQ<n>_` and `TY<n>_` an await or
    /// suspend resume partial function, `.resume.<n>` a yield-once
    /// coroutine's continuation, and a reabstraction thunk (`TR`) of an
    /// async function has an implementation function type `I…H…_` (`H`:
    /// async). `async_Main` is the compiler's entry of an async `main`.
    /// A plain identifier may contain these letters too (they are not
    /// escaped): such a function is recorded entry only for nothing (its
    /// exits are lost), never hooked wrongly (the program would abort).
    ///
    /// Asked once per site for each of the function graph's two ops (10,000
    /// sites: 20,000 times at an attach), so the search runs on the UTF-8
    /// bytes: `String.contains(String)` goes through `_StringProcessing`'s
    /// generic searcher, about 2 µs a call.
    public static func isSwiftAsync(_ symbol: String) -> Bool {
        var symbol = symbol
        return symbol.withUTF8 { isSwiftAsync(bytes: $0) }
    }

    /// One pass over the name for every marker (five passes, one per
    /// marker, were 8% of `livetrace record`'s start on swift-format's
    /// 63,000 functions).
    static func isSwiftAsync(bytes: UnsafeBufferPointer<UInt8>) -> Bool {
        if hasPrefix(bytes, "async_Main") { return true }
        let swift = hasPrefix(bytes, "$s") || hasPrefix(bytes, "_$s") || hasPrefix(bytes, "$S") || hasPrefix(bytes, "_$S")
        let dot = UInt8(ascii: "."), t = UInt8(ascii: "T"), y = UInt8(ascii: "Y")
        var reabstractionThunk = false
        var index = 0
        while index + 1 < bytes.count {
            let byte = bytes[index], next = bytes[index + 1]
            if byte == dot {
                if matches(bytes, at: index, ".resume.") { return true }
            } else if swift {
                if byte == y && next == UInt8(ascii: "a") { return true }
                if byte == t {
                    if next == UInt8(ascii: "Q") || next == y { return true }
                    if next == UInt8(ascii: "R") { reabstractionThunk = true }
                }
            }
            index += 1
        }
        return reabstractionThunk && hasAsyncImplementationType(bytes)
    }

    private static func hasPrefix(_ bytes: UnsafeBufferPointer<UInt8>, _ prefix: StaticString) -> Bool {
        matches(bytes, at: 0, prefix)
    }

    private static func matches(_ bytes: UnsafeBufferPointer<UInt8>, at index: Int, _ needle: StaticString) -> Bool {
        let count = needle.utf8CodeUnitCount
        guard index + count <= bytes.count else { return false }
        for offset in 0..<count where bytes[index + offset] != needle.utf8Start[offset] { return false }
        return true
    }

    /// Whether an `I`, then letters, then `_` holds an `H`.
    static func hasAsyncImplementationType<Bytes: Sequence<UInt8>>(_ bytes: Bytes) -> Bool {
        var inType = false, async = false
        for byte in bytes {
            if byte == UInt8(ascii: "I") {
                inType = true
                async = false
            } else if inType {
                if byte == UInt8(ascii: "_") {
                    if async { return true }
                    inType = false
                } else if byte == UInt8(ascii: "H") {
                    async = true
                } else if !(byte >= UInt8(ascii: "a") && byte <= UInt8(ascii: "z")) {
                    inType = false
                }
            }
        }
        return false
    }
}

/// A relocation verdict per function of one object, at link-time addresses.
public struct ObjectRelocations: Sendable {
    /// One function. Its name stays in the object's string table
    /// (`symbol(of:)`): 60,000 Swift names made into strings were 5 MB of
    /// fresh heap, a third of the analysis's page faults, for a batch that
    /// reads none of them.
    public struct Entry: Sendable {
        public var functionAddress: UInt
        public var size: Int
        /// The file offset of the symbol's NUL-terminated name.
        var nameOffset: Int
        public var verdict: Result<PrologueRelocation, RelocationRefusal>
    }

    public var path: String
    public var entries: [Entry]
    /// The file the names are read from (mapped while this lives).
    let object: ElfObject

    /// The symbol name of `entry`, one of `entries`.
    public func symbol(of entry: Entry) -> String {
        let file = object.bytes
        guard entry.nameOffset >= 0, entry.nameOffset < file.count else { return "" }
        let start = file.baseAddress! + entry.nameOffset
        return String(decoding: UnsafeRawBufferPointer(start: start, count: strnlen(start.assumingMemoryBound(to: CChar.self),
                                                                                     file.count - entry.nameOffset)),
                      as: UTF8.self)
    }

    /// Functions of at least `minimumSize` bytes, relocatable ones, and the
    /// refused ones by reason code.
    public func summary(minimumSize: Int = 5) -> (functions: Int, relocatable: Int, refusedByReason: [String: Int]) {
        var functions = 0, relocatable = 0
        var refused: [String: Int] = [:]
        for entry in entries where entry.size >= minimumSize {
            functions += 1
            switch entry.verdict {
            case .success: relocatable += 1
            case let .failure(reason): refused[reason.code, default: 0] += 1
            }
        }
        return (functions, relocatable, refused)
    }
}

extension ElfObject {
    /// The relocation verdict of every function of the object, from the
    /// file's bytes (link-time addresses). `tracer`: the object is the
    /// tracer's own, every function refused.
    /// `only`: the link-time addresses of the functions to analyze (nil:
    /// every function), e.g. those without a site.
    /// `threads`: how many threads share the analysis (each its own run of
    /// functions and its own decoder; the entries come back in address
    /// order whatever the count). More than 1 starts threads in the calling
    /// process: for tools (`livetrace list`, benchmarks), never inside a
    /// traced program.
    /// `fullBodyScan`: decode every body whole, past the byte scan (the
    /// oracle the byte scan is tested against; same verdicts, slower).
    /// `analyzed`: hears of every entry, in address order, in runs (`first`:
    /// the index of the run's first entry, `total`: how many entries there
    /// will be), on the calling thread and as
    /// soon as the run's analysis is done, while the other threads go on
    /// with the rest: a caller that acts on the verdicts (placing stubs)
    /// overlaps the analysis instead of waiting for its end. The calling
    /// thread takes turns: it hands over each run that is ready, in order,
    /// and otherwise analyzes a run itself.
    public func prologueRelocations(tracer: Bool = false, only: Set<UInt>? = nil, threads: Int = 1,
                                    fullBodyScan: Bool = false,
                                    analyzed: ((_ entries: UnsafeBufferPointer<ObjectRelocations.Entry>, _ first: Int, _ total: Int) -> Void)? = nil)
        throws(DiscoveryError) -> ObjectRelocations {
        // No name is read (`ObjectRelocations.symbol(of:)` reads one on demand).
        let index = try FunctionIndex(object: self, names: false)
        let functions = only.map { only in index.functions.filter { only.contains(UInt($0.address)) } } ?? index.functions
        // Below this many functions a thread costs more than it saves.
        let minimumPerThread = 2048
        let count = max(1, min(threads, functions.count / minimumPerThread))
        // The parts initialize the result's own storage (no copy of 60,000
        // entries afterwards); every thread is joined before it is returned.
        let result = [ObjectRelocations.Entry](unsafeUninitializedCapacity: functions.count) { entries, initialized in
            let work = RelocationWork(object: self, functions: functions, tracer: tracer, fullBodyScan: fullBodyScan,
                                      entries: entries)
            var handles: [pthread_t] = []
            for _ in 1..<count {
                let context = Unmanaged.passRetained(work).toOpaque()
                var handle = pthread_t()
                if pthread_create(&handle, nil, { context in
                    Unmanaged<RelocationWork>.fromOpaque(context!).takeRetainedValue().analyzeChunks()
                    return nil
                }, context) == 0 {
                    handles.append(handle)
                } else {
                    Unmanaged<RelocationWork>.fromOpaque(context).release()
                }
            }
            if let analyzed { work.analyzeChunks(handingOver: analyzed) } else { work.analyzeChunks() }
            for handle in handles { pthread_join(handle, nil) }
            initialized = functions.count
        }
        return ObjectRelocations(path: path, entries: result, object: self)
    }
}

/// The shared state of one object's analysis. Threads take chunks of
/// `chunkSize` consecutive functions from `next` until none is left, and
/// chunk `k` fills the entries `k * chunkSize ..< (k + 1) * chunkSize`,
/// touching nothing else, then sets `finished[k]` (release: its entries are
/// whole for whoever reads the flag with acquire). Taken, not split in
/// equal parts beforehand: the functions' sizes vary by orders of magnitude
/// (and so does the body scan), and a static split left one thread idle for
/// a third of the analysis on swift-format (0.9 µs of CPU per function, 0.6
/// of wall on two).
private final class RelocationWork: @unchecked Sendable {
    static let chunkSize = 256

    let object: ElfObject
    let functions: [FunctionIndex.Function]
    let tracer: Bool
    let fullBodyScan: Bool
    let entries: UnsafeMutableBufferPointer<ObjectRelocations.Entry>
    let next = Atomic<Int>(0)
    let entryPoint: UInt64
    let chunkCount: Int
    let finished: UnsafeMutablePointer<Atomic<Bool>>

    init(object: ElfObject, functions: [FunctionIndex.Function], tracer: Bool, fullBodyScan: Bool,
         entries: UnsafeMutableBufferPointer<ObjectRelocations.Entry>) {
        self.object = object
        self.functions = functions
        self.tracer = tracer
        self.fullBodyScan = fullBodyScan
        self.entries = entries
        entryPoint = object.entryPoint
        chunkCount = (functions.count + Self.chunkSize - 1) / Self.chunkSize
        finished = .allocate(capacity: max(chunkCount, 1))
        for k in 0..<chunkCount { (finished + k).initialize(to: Atomic(false)) }
    }

    deinit {
        finished.deinitialize(count: chunkCount)
        finished.deallocate()
    }

    func chunk(_ k: Int) -> Range<Int> { k * Self.chunkSize..<min(functions.count, (k + 1) * Self.chunkSize) }

    /// Analyzes the next chunk nobody has taken; false when none is left.
    func analyzeNextChunk(with analyzer: PrologueAnalyzerX86_64) -> Bool {
        let k = next.wrappingAdd(1, ordering: .relaxed).oldValue
        guard k < chunkCount else { return false }
        analyze(chunk(k), with: analyzer)
        finished[k].store(true, ordering: .releasing)
        return true
    }

    func analyzeChunks() {
        let analyzer = PrologueAnalyzerX86_64()
        while analyzeNextChunk(with: analyzer) {}
    }

    /// The calling thread's share when a caller hears of the entries: each
    /// chunk, in order, as soon as it is finished (by any thread); while the
    /// next one in order is not, a chunk of its own to analyze, or, when
    /// every chunk is taken, a yield until the thread analyzing it is done.
    func analyzeChunks(handingOver analyzed: (UnsafeBufferPointer<ObjectRelocations.Entry>, Int, Int) -> Void) {
        let analyzer = PrologueAnalyzerX86_64()
        var handedOver = 0
        while handedOver < chunkCount {
            if finished[handedOver].load(ordering: .acquiring) {
                let range = chunk(handedOver)
                analyzed(UnsafeBufferPointer(rebasing: entries[range]), range.lowerBound, functions.count)
                handedOver += 1
            } else if !analyzeNextChunk(with: analyzer) {
                sched_yield()
            }
        }
    }

    func analyze(_ range: Range<Int>, with analyzer: PrologueAnalyzerX86_64) {
        for i in range {
            let function = functions[i]
            let verdict: Result<PrologueRelocation, RelocationRefusal>
            if tracer {
                verdict = .failure(.tracerCode)
            } else if function.address == entryPoint && entryPoint != 0 {
                verdict = .failure(.entryPoint)
            } else if let segment = object.executableSegment(containing: function.address) {
                let offset = function.address - segment.address
                let length = Int(min(function.size, segment.fileSize - offset))
                let code = UnsafeRawBufferPointer(start: object.bytes.baseAddress! + Int(segment.fileOffset + offset), count: length)
                verdict = analyzer.analyze(code: code, address: UInt(function.address), size: Int(function.size),
                                           fullBodyScan: fullBodyScan)
            } else {
                verdict = .failure(.undecodable(offset: 0))
            }
            (entries.baseAddress! + i).initialize(to: .init(functionAddress: UInt(function.address), size: Int(function.size),
                                                           nameOffset: object.bytes.baseAddress!.distance(to: UnsafeRawPointer(function.nameStart)),
                                                           verdict: verdict))
        }
    }
}
