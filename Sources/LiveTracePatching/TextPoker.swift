#if canImport(Glibc)
import Glibc
#endif
import CLiveTraceShims
import LiveTraceSites
import Synchronization

/// The text poke: changes the 5-byte instruction at many sites at once while
/// other threads run them, without losing or duplicating a call.
///
/// Input state: every site of the batch holds OLD, verified byte for byte
/// against its kind's pattern or against the state recorded by the previous
/// batch, for the whole batch before the first write (nothing is written if
/// a site does not verify: that site fails, the others go on).
///
///   step 1. Publish the in-flight table: for each site A, the semantics of
///           NEW (call T: push A+5, go to T; nop: go to A+5). Publish A in
///           the set of known sites (so a stale trap is recognised later).
///   step 2. Write int3 over A[0] for every site. Serialize every core.
///           (nop1x5 only) Rescue: every running thread whose PC is inside
///           the five 1-byte nops is moved to their end, by its sync handler.
///   step 3. Write NEW[1...] for every site. Serialize.
///   step 4. Write NEW[0] for every site. Serialize.
///   step 5. Retire the in-flight table (free it once no handler reads it).
///
/// A thread reaching A between steps 2 and 4 traps; the SIGTRAP handler
/// (lt_trap.c) finds A in the table and emulates NEW, so the call goes to the
/// new target: never skipped, never to the old one. One serialization per
/// step for the whole batch (the kernel's text_poke_bp_batch).
///
/// One patch lock serializes batches; the trap handler reads the tables
/// without it (see lt_trap.h for the pairing).
public final class TextPoker: Sendable {
    public static let shared = TextPoker()

    public struct Configuration: Sendable {
        /// nil: membarrier when the kernel has it, else signals. The
        /// environment variable LIVETRACE_SERIALIZE=signals forces the
        /// fallback when this is nil.
        public var serialization: CoreSerializer.Mechanism?
        public var writeMethod: CodeWriter.Method
        /// The real-time signal used to reach every thread (the first
        /// batch installs it; if a thread already blocks it or the program
        /// handles it, a free real-time signal is chosen instead).
        public var syncSignal: Int32
        /// The fault-injection seam: nil in production. Tests fail a chosen
        /// write or serialization of the protocol with it (PokeFaultTests).
        public var faults: PokeFaults?

        public init(
            serialization: CoreSerializer.Mechanism? = nil,
            writeMethod: CodeWriter.Method = .mprotect,
            syncSignal: Int32 = lt_sys_sigrtmax() - 2,
            faults: PokeFaults? = nil
        ) {
            self.serialization = serialization
            self.writeMethod = writeMethod
            self.syncSignal = syncSignal
            self.faults = faults
        }
    }

    /// The operations of a batch that can fail: the code writes and
    /// serializations of steps 2-4, and the writes of a rollback.
    public enum Step: String, Sendable, CaseIterable {
        case writeInt3, serializeAfterInt3
        case writeTail, serializeAfterTail
        case writeHead, serializeAfterHead
        case rollbackInt3, rollbackTail, rollbackHead
    }

    /// Injected failures: asked before each operation of a batch; a non-nil
    /// answer is that operation's failure, and the operation does not run
    /// (as a write refused by the kernel or a serialization that could not
    /// be made).
    public struct PokeFaults: Sendable {
        public var fail: @Sendable (Step) -> String?
        public init(fail: @escaping @Sendable (Step) -> String?) { self.fail = fail }
    }

    /// A batch that could neither finish nor roll back: its in-flight table
    /// stays published so every thread reaching its sites is emulated, and
    /// `retryRollback()` may still restore its old bytes.
    struct WedgedBatch {
        var reason: String
        var plan: [PlannedWrite]
        var stepsDone: Int
        var table: UnsafeMutablePointer<lt_inflight_table>
        var rescueMaps: [UnsafeMutablePointer<UInt8>]
    }

    /// What the poker knows about a site it has brought to normal form.
    /// Written only under the patch lock.
    struct SiteRecord {
        var instruction: SiteInstruction
        /// The address is in the published known-site set.
        var known = false
        /// The last byte of the site's own 5-byte nop when it was found as
        /// one (clang writes 0f 1f 44 00 08): turning the site off writes it
        /// back, so an unpatched site is its file's bytes again (`record -p`
        /// detaches to the file's code). 0 for every other site.
        var nopTail: UInt8 = 0
        /// The compiler's bytes a normalization replaced (five 1-byte nops,
        /// `call __fentry__`, its GOT form): `restoreOriginal` writes them
        /// back. nil for a site found in normal form.
        var original: PackedBytes? = nil
    }

    struct State: ~Copyable {
        var configuration: Configuration
        /// Sites in normal form, by address.
        var records = SiteRecords()
        /// Every address ever written, sorted; the trap handler reads the
        /// copy published with `lt_trap_exchange_known_sites`.
        var knownAddresses: [UInt64] = []
        /// Set when a batch could neither finish nor roll back: its table
        /// stays published (threads are still emulated correctly) and no
        /// further batch runs until `retryRollback()` succeeds.
        var wedged: WedgedBatch? = nil
    }

    private let state: Mutex<State>

    /// One poker per process: the trap handler's tables are process-global.
    private init(configuration: Configuration = Configuration()) {
        state = Mutex(State(configuration: configuration))
    }

    /// The configuration of the next batches.
    public var configuration: Configuration {
        get { state.withLock { $0.configuration } }
        set { state.withLock { $0.configuration = newValue } }
    }

    /// The normal-form instruction at the site now, or nil when the site is
    /// not in normal form (not yet normalized, or bytes we do not recognise).
    public func currentInstruction(at site: Site) -> SiteInstruction? {
        state.withLock { state in
            let bytes = CodeWriter.read(site.address, count: X86SiteEncoding.normalLength)
            if let record = state.records[site.address] {
                return X86SiteEncoding.decode(bytes, at: site.address) == record.instruction ? record.instruction : nil
            }
            // Not normalized by us: only a nop5 is already in normal form.
            return Array(bytes[0..<4]) == X86SiteEncoding.nop5Prefix ? .nop : nil
        }
    }

    /// The instruction each address holds by the poker's record: what its
    /// last successful batch wrote there, or found there when normalizing;
    /// nil where it has no record (never normalized, restored, or forgotten).
    /// The one record of what a site holds: the ops registry asks here
    /// instead of keeping a copy.
    public func recordedInstructions(at addresses: [UInt]) -> [SiteInstruction?] {
        state.withLock { state in addresses.map { state.records[$0]?.instruction } }
    }

    /// Brings sites to normal form (a 5-byte nop) in one batch.
    public func normalize(_ sites: [Site]) -> BatchResult {
        state.withLock { state in
            var result = BatchResult()
            guard prepare(&state, &result, sites: { sites }) else { return result }
            var seen = Set<UInt>(minimumCapacity: sites.count)
            var plan: [PlannedWrite] = []
            for i in sites.indices {
                guard admit(sites[i], seen: &seen, result: &result) else { continue }
                planNormalization(of: sites[i], index: i, state: &state, plan: &plan, result: &result)
            }
            run(plan, site: { sites[$0] }, state: &state, result: &result)
            return result
        }
    }

    /// Performs every transition in one batch. Sites not yet in normal form
    /// are first normalized in a batch of their own, except a compiler form
    /// going straight to a call or jump (`fused`).
    public func apply(_ transitions: [SiteTransition]) -> BatchResult {
        state.withLock { state in
            var result = BatchResult()
            guard prepare(&state, &result, sites: { transitions.map(\.site) }) else { return result }
            var seen = Set<UInt>(minimumCapacity: transitions.count)
            var admitted: [Int] = []
            admitted.reserveCapacity(transitions.count)
            for i in transitions.indices where admit(transitions[i].site, seen: &seen, result: &result,
                                                     relocated: transitions[i].site.kind == .none && state.records[transitions[i].site.address] != nil) {
                admitted.append(i)
            }

            // Normalization first, for the sites we have no record of; a
            // compiler form going straight to a call or jump is written in
            // this batch instead (`fused`).
            var normalization: [PlannedWrite] = []
            var normalizationResult = BatchResult()
            var plan: [PlannedWrite] = []
            plan.reserveCapacity(admitted.count)
            // One lookup per site: its record, or nil until normalized.
            var recorded: [(index: Int, record: SiteRecord?)] = []
            recorded.reserveCapacity(admitted.count)
            for i in admitted {
                let record = state.records[transitions[i].site.address]
                if record == nil {
                    let planned = normalization.count
                    planNormalization(of: transitions[i].site, index: i, state: &state, plan: &normalization, result: &normalizationResult)
                    if normalization.count > planned, let direct = Self.fused(normalization[planned], to: transitions[i].to) {
                        normalization.removeLast()
                        plan.append(direct)
                        continue
                    }
                }
                recorded.append((i, record))
            }
            run(normalization, site: { transitions[$0].site }, state: &state, result: &normalizationResult)
            result.failed += normalizationResult.failed
            result.serializations += normalizationResult.serializations
            result.threadsRescued += normalizationResult.threadsRescued
            let failedAddresses = Set(normalizationResult.failed.map(\.site.address))

            for (i, known) in recorded where failedAddresses.isEmpty || !failedAddresses.contains(transitions[i].site.address) {
                let address = transitions[i].site.address
                let to = transitions[i].to
                guard let record = known ?? state.records[address] else {
                    result.failed.append(SiteOutcome(site: transitions[i].site, problem: .protocolFailed("site is not in normal form")))
                    continue
                }
                let found = CodeWriter.readPacked(address, count: X86SiteEncoding.normalLength)
                guard X86SiteEncoding.decodePacked(found, at: address) == record.instruction else {
                    let expected = X86SiteEncoding.encode(record.instruction, at: address)!
                    result.failed.append(SiteOutcome(site: transitions[i].site, problem: .bytesMismatch(
                        expected: "\(record.instruction) (\(hex(expected)))", found: found.array)))
                    continue
                }
                if record.instruction == to {
                    result.unchanged.append(transitions[i].site)
                    continue
                }
                guard var new = X86SiteEncoding.encodePacked(to, at: address) else {
                    if let target = to.target {
                        result.failed.append(SiteOutcome(site: transitions[i].site, problem: .targetOutOfRange(target: target)))
                    }
                    continue
                }
                if to == .nop { new.bits |= UInt64(record.nopTail) << 32 }
                plan.append(PlannedWrite(siteIndex: i, address: address, old: found, new: new, becomes: to,
                                         next: address + UInt(X86SiteEncoding.normalLength), rescue: false,
                                         known: record.known))
            }
            run(plan, site: { transitions[$0].site }, state: &state, result: &result)
            return result
        }
    }

    /// A normalization of a compiler form (five 1-byte nops, a `call
    /// __fentry__`, the 6-byte `call *__fentry__@GOTPCREL(%rip)`) fused with
    /// the transition that follows it: OLD is the compiler's bytes, NEW the
    /// call or jump (and, for the 6-byte form, the `nop` of its normal form
    /// after it). The protocol is the normalization's (int3 over OLD[0], the
    /// rescue of threads inside the five nops, NEW[1...], NEW[0]), and a
    /// thread that traps in flight is emulated as NEW, as in any enabling
    /// batch. For the 6-byte form that is safe because a call emulated there
    /// returns to the seventh byte (`next`) and the stubs resume there too
    /// (OpsRegistry's `resumeAddress`): the sixth byte, the old
    /// displacement's last until NEW[1...] is written, is never executed. It
    /// spares one whole batch per site: at the attach (gcc's nops are given
    /// back at every detach), and at the start of a program built with
    /// Debian's gcc `-pg -mfentry` (a PIE: the GOT form). nil for a site that
    /// stays off (its normalization is the whole change).
    static func fused(_ normalization: PlannedWrite, to instruction: SiteInstruction) -> PlannedWrite? {
        guard instruction != .nop, normalization.new == nop5Packed || normalization.new == nop6Packed,
              var new = X86SiteEncoding.encodePacked(instruction, at: normalization.address) else { return nil }
        if normalization.new.count == nop6Packed.count {
            new = PackedBytes(bits: new.bits | UInt64(X86SiteEncoding.nop1) << (8 * UInt64(new.count)), count: new.count + 1)
        }
        var write = normalization
        write.new = new
        write.becomes = instruction
        return write
    }

    /// Makes relocated prologues sites in normal form, off (`jmp stub`; byte
    /// layouts in RelocatedEntry.swift), in one batch: steps 1-5 above, where
    /// NEW is `jmp stub` and the rescue of step 2 moves every thread whose PC
    /// is strictly inside the moved bytes to the same instruction in the
    /// stub. The bytes must be the original ones, verified. The patched
    /// entries are counted, not listed (`BatchResult.patchedUnlisted`).
    public func relocate(_ entries: [RelocatedEntry]) -> BatchResult {
        state.withLock { state in
            var result = BatchResult()
            guard prepare(&state, &result, sites: { entries.map(\.site) }) else { return result }
            let unique = Self.ascending(entries)
            var seen = Set<UInt>(minimumCapacity: unique ? 0 : entries.count)
            var plan: [PlannedWrite] = []
            plan.reserveCapacity(entries.count)
            // By index: an entry is read in place, never copied (its site's names).
            for i in entries.indices {
                let a = entries[i].address
                // A relocated entry is never rejected and is of kind none: only a duplicate is skipped.
                if !unique && !seen.insert(a).inserted {
                    result.skipped.append(SiteOutcome(site: entries[i].site, problem: .duplicateInBatch))
                    continue
                }
                if let record = state.records[a] {
                    if record.instruction == .jump(entries[i].stub) {
                        result.unchanged.append(entries[i].site)
                    } else {
                        result.failed.append(SiteOutcome(site: entries[i].site, problem: .protocolFailed("the entry is already a site in normal form (\(record.instruction))")))
                    }
                    continue
                }
                // Up to 19 bytes: beyond CodeWriter.read's 8.
                let code = UnsafeRawPointer(bitPattern: a)!
                let original = entries[i].original
                let same = original.withUnsafeBytes { memcmp(code, $0.baseAddress!, $0.count) == 0 }
                guard same, original.count >= X86SiteEncoding.normalLength else {
                    let found = Array(UnsafeRawBufferPointer(start: code, count: original.count))
                    result.failed.append(SiteOutcome(site: entries[i].site, problem: .bytesMismatch(expected: hex(Array(original)), found: found)))
                    continue
                }
                let stub = entries[i].stub
                guard let new = X86SiteEncoding.encodePacked(.jump(stub), at: a) else {
                    result.failed.append(SiteOutcome(site: entries[i].site, problem: .targetOutOfRange(target: stub)))
                    continue
                }
                plan.append(PlannedWrite(siteIndex: i, address: a, old: CodeWriter.readPacked(a, count: X86SiteEncoding.normalLength),
                                         new: new, becomes: .jump(stub), next: a + UInt(X86SiteEncoding.normalLength),
                                         rescue: true, relocated: true))
            }
            run(plan, site: { entries[$0].site }, rescueMap: { (entries[$0].stubOffsets, entries[$0].stub) }, state: &state, result: &result,
                listPatched: false)
            return result
        }
    }

    /// Whether the entries' addresses strictly ascend (then none repeats).
    private static func ascending(_ entries: [RelocatedEntry]) -> Bool {
        entries.indices.dropFirst().allSatisfy { entries[$0 - 1].address < entries[$0].address }
    }

    /// Gives relocated prologues their original bytes back, in one batch:
    /// each must be off (`jmp stub`). While in flight a trapping thread is
    /// sent to the stub, which is equivalent. No thread can be strictly
    /// inside the 5-byte jmp, so there is nothing to rescue. The caller frees
    /// the stub only after quiescence (no thread's PC inside it). The
    /// restored entries are counted, not listed (`BatchResult.patchedUnlisted`).
    public func restore(_ entries: [RelocatedEntry]) -> BatchResult {
        state.withLock { state in
            var result = BatchResult()
            guard prepare(&state, &result, sites: { entries.map(\.site) }) else { return result }
            let unique = Self.ascending(entries)
            var seen = Set<UInt>(minimumCapacity: unique ? 0 : entries.count)
            var plan: [PlannedWrite] = []
            plan.reserveCapacity(entries.count)
            for i in entries.indices {
                let a = entries[i].address
                if !unique && !seen.insert(a).inserted {
                    result.skipped.append(SiteOutcome(site: entries[i].site, problem: .duplicateInBatch))
                    continue
                }
                guard let record = state.records[a], record.instruction == .jump(entries[i].stub) else {
                    result.failed.append(SiteOutcome(site: entries[i].site, problem: .protocolFailed("the relocated entry is not off (jmp to its stub)")))
                    continue
                }
                let found = CodeWriter.readPacked(a, count: X86SiteEncoding.normalLength)
                guard X86SiteEncoding.decodePacked(found, at: a) == record.instruction else {
                    result.failed.append(SiteOutcome(site: entries[i].site, problem: .bytesMismatch(expected: "\(record.instruction)", found: found.array)))
                    continue
                }
                plan.append(PlannedWrite(siteIndex: i, address: a, old: found, new: PackedBytes(entries[i].original.prefix(X86SiteEncoding.normalLength)),
                                         becomes: .jump(entries[i].stub), next: a + UInt(X86SiteEncoding.normalLength),
                                         rescue: false, known: true, forget: true))
            }
            run(plan, site: { entries[$0].site }, state: &state, result: &result, listPatched: false)
            return result
        }
    }

    /// Gives sites that are off (a nop) and were normalized from the
    /// compiler's bytes those bytes back, in one batch, and forgets them: the
    /// code is the file's again (`record -p`'s detach), and a later batch
    /// normalizes them anew. Sites found in normal form have nothing to
    /// give back (a clang nop5 is its own bytes again when off: `nopTail`)
    /// and are `unchanged`. While in flight a trapping thread is emulated
    /// as the compiler's instruction: five nops go to the site's end; a
    /// `call __fentry__` (direct, `addr32`, or through the GOT, whose slot
    /// is read now) calls its target with the return address after it. No
    /// thread can be inside the one nop being replaced: no rescue.
    public func restoreOriginal(_ sites: [Site]) -> BatchResult {
        state.withLock { state in
            var result = BatchResult()
            guard prepare(&state, &result, sites: { sites }) else { return result }
            var seen = Set<UInt>(minimumCapacity: sites.count)
            var plan: [PlannedWrite] = []
            for (i, site) in sites.enumerated() {
                let a = site.address
                guard admit(site, seen: &seen, result: &result) else { continue }
                guard let record = state.records[a], let original = record.original else {
                    result.unchanged.append(site)
                    continue
                }
                guard record.instruction == .nop else {
                    result.failed.append(SiteOutcome(site: site, problem: .protocolFailed("the site is not off (\(record.instruction))")))
                    continue
                }
                let found = CodeWriter.readPacked(a, count: original.count)
                let nop = X86SiteEncoding.nop5 + (original.count > X86SiteEncoding.normalLength ? [X86SiteEncoding.nop1] : [])
                guard found.array == nop else {
                    result.failed.append(SiteOutcome(site: site, problem: .bytesMismatch(expected: hex(nop), found: found.array)))
                    continue
                }
                let bytes = original.array
                let next = a + UInt(bytes.count)
                var becomes = SiteInstruction.nop
                if bytes[0] == X86SiteEncoding.callRel32Opcode || Array(bytes[0..<2]) == X86SiteEncoding.callAddr32Rel32 {
                    let displacement = bytes.suffix(4).withUnsafeBytes { $0.loadUnaligned(as: Int32.self) }
                    becomes = .call(UInt(bitPattern: Int(bitPattern: next) + Int(displacement)))
                } else if Array(bytes[0..<2]) == X86SiteEncoding.callIndirectRipRelative {
                    let displacement = bytes.suffix(4).withUnsafeBytes { $0.loadUnaligned(as: Int32.self) }
                    let slot = UInt(bitPattern: Int(bitPattern: next) + Int(displacement))
                    becomes = .call(UInt(UnsafeRawPointer(bitPattern: slot)!.loadUnaligned(as: UInt64.self)))
                }
                plan.append(PlannedWrite(siteIndex: i, address: a, old: found, new: original, becomes: becomes, next: next,
                                         rescue: false, known: record.known, forget: true))
            }
            run(plan, site: { sites[$0] }, state: &state, result: &result)
            return result
        }
    }

    /// Counters of the trap and sync handlers since the process started.
    public var trapCounters: lt_trap_counters {
        var c = lt_trap_counters()
        lt_trap_read_counters(&c)
        return c
    }

    // MARK: - Planning

    /// One site's writes: OLD is what was verified, NEW what it becomes.
    ///
    /// Held in 56 bytes (a batch of 60,000 relocated prologues plans 60,000
    /// of these, twice: in 148 bytes they were 2,300 fresh pages, a page
    /// fault each, per batch): the byte strings as their bits and one count
    /// each, the instruction as its target and a kind, `next` as its
    /// distance from the address, the booleans as flag bits. A relocated
    /// prologue's rescue map is not copied here: `run` asks the caller for it
    /// by `siteIndex` (`rescueMap`).
    struct PlannedWrite {
        var address: UInt
        private var target: UInt = 0
        private var oldBits: UInt64, newBits: UInt64, originalBits: UInt64 = 0
        private var index: Int32
        private var oldCount: UInt8, newCount: UInt8
        /// 0xff: no original.
        private var originalCount: UInt8 = 0xff
        private var nextDistance: UInt8
        private var flags: UInt8 = 0

        private static let nopKind: UInt8 = 0, callKind: UInt8 = 1, jumpKind: UInt8 = 2, kindMask: UInt8 = 3
        private static let rescueFlag: UInt8 = 4, knownFlag: UInt8 = 8, forgetFlag: UInt8 = 16, relocatedFlag: UInt8 = 32

        /// `relocated`: a prologue being relocated; for each offset in its
        /// moved bytes the caller's `rescueMap` gives the offset in the stub
        /// of the instruction starting there, and threads strictly inside
        /// move to their copy. `forget`: the site leaves normal form (a
        /// relocated prologue restored), its record goes once written.
        /// `original`: a normalization's compiler bytes (SiteRecord.original).
        init(siteIndex: Int, address: UInt, old: PackedBytes, new: PackedBytes, becomes: SiteInstruction, next: UInt,
             rescue: Bool, known: Bool = false, relocated: Bool = false, forget: Bool = false, original: PackedBytes? = nil) {
            precondition(siteIndex <= Int(Int32.max) && next >= address && next - address < 0x100, "a planned write out of its packed range")
            self.address = address
            self.index = Int32(siteIndex)
            oldBits = old.bits
            oldCount = UInt8(old.count)
            newBits = new.bits
            newCount = UInt8(new.count)
            nextDistance = UInt8(next - address)
            if let original {
                originalBits = original.bits
                originalCount = UInt8(original.count)
            }
            flags = (rescue ? Self.rescueFlag : 0) | (known ? Self.knownFlag : 0) | (forget ? Self.forgetFlag : 0)
                | (relocated ? Self.relocatedFlag : 0)
            self.becomes = becomes
        }

        /// Index of the site in the caller's request (for the result).
        var siteIndex: Int { Int(index) }
        var old: PackedBytes { PackedBytes(bits: oldBits, count: Int(oldCount)) }
        var new: PackedBytes {
            get { PackedBytes(bits: newBits, count: Int(newCount)) }
            set {
                newBits = newValue.bits
                newCount = UInt8(newValue.count)
            }
        }
        var becomes: SiteInstruction {
            get {
                switch flags & Self.kindMask {
                case Self.callKind: return .call(target)
                case Self.jumpKind: return .jump(target)
                default: return .nop
                }
            }
            set {
                let kind: UInt8
                switch newValue {
                case .nop: kind = Self.nopKind; target = 0
                case let .call(to): kind = Self.callKind; target = to
                case let .jump(to): kind = Self.jumpKind; target = to
                }
                flags = flags & ~Self.kindMask | kind
            }
        }
        /// The address after NEW, where an emulated nop resumes and an
        /// emulated call returns (A+5, or A+6 for a GOT call site).
        var next: UInt { address + UInt(nextDistance) }
        /// Five 1-byte nops: threads inside them must be moved first.
        var rescue: Bool { flags & Self.rescueFlag != 0 }
        /// The address is already in the published known-site set.
        var known: Bool { flags & Self.knownFlag != 0 }
        var forget: Bool { flags & Self.forgetFlag != 0 }
        var relocated: Bool { flags & Self.relocatedFlag != 0 }
        var original: PackedBytes? { originalCount == 0xff ? nil : PackedBytes(bits: originalBits, count: Int(originalCount)) }
    }

    /// Installs or reinstalls the handlers; false (all sites failed) when
    /// the protocol cannot run.
    private func prepare(_ state: inout State, _ result: inout BatchResult, sites: () -> [Site]) -> Bool {
        var problem: PatchProblem? = nil
        if let wedged = state.wedged {
            problem = .protocolFailed("an earlier batch could not complete: \(wedged.reason)")
        } else if lt_trap_is_installed() == 0 {
            let r = lt_trap_install(CoreSerializer.chooseSyncSignal(preferred: state.configuration.syncSignal))
            if r < 0 { problem = .protocolFailed("installing the SIGTRAP handler: \(SystemCallError(call: "sigaction", errno: Int32(-r)))") }
        } else {
            let r = lt_trap_reinstall_if_replaced()
            if r < 0 {
                problem = .protocolFailed("checking the SIGTRAP handler: \(SystemCallError(call: "sigaction", errno: Int32(-r)))")
            } else if r > 0 {
                result.handlerReinstalled = true
            }
        }
        if let problem {
            result.failed = sites().map { SiteOutcome(site: $0, problem: problem) }
            return false
        }
        return true
    }

    /// Sorts out sites the request itself rules out.
    /// `relocated`: a kind-`none` site whose prologue this poker relocated
    /// (`relocate`): in normal form like any other.
    private func admit(_ site: Site, seen: inout Set<UInt>, result: inout BatchResult, relocated: Bool = false) -> Bool {
        if let rejection = site.rejection {
            result.skipped.append(SiteOutcome(site: site, problem: .rejectedSite(rejection)))
            return false
        }
        if site.kind == .none && !relocated {
            result.skipped.append(SiteOutcome(site: site, problem: .unsupportedKind(.none)))
            return false
        }
        if !seen.insert(site.address).inserted {
            result.skipped.append(SiteOutcome(site: site, problem: .duplicateInBatch))
            return false
        }
        return true
    }

    /// Verifies a site's bytes against its kind and plans its normalization:
    ///
    ///     nop5 / patchable (clang)  0f 1f 44 00 xx      already normal
    ///     nop1x5 / patchable (gcc)  90 90 90 90 90    → 0f 1f 44 00 00  (rescue)
    ///     callFentry                e8 r0 r1 r2 r3    → 0f 1f 44 00 00
    ///     callFentryGOT             ff 15 r0 r1 r2 r3 → 0f 1f 44 00 00 90
    ///                            or 67 e8 r0 r1 r2 r3 → 0f 1f 44 00 00 90
    private func planNormalization(of site: Site, index: Int, state: inout State, plan: inout [PlannedWrite], result: inout BatchResult) {
        let a = site.address
        if let record = state.records[a] {
            let found = CodeWriter.read(a, count: X86SiteEncoding.normalLength)
            if X86SiteEncoding.decode(found, at: a) == record.instruction {
                result.unchanged.append(site)
            } else {
                result.failed.append(SiteOutcome(site: site, problem: .bytesMismatch(expected: "\(record.instruction)", found: found)))
            }
            return
        }
        let length = max(site.kind.compiledLength, X86SiteEncoding.normalLength)
        // Compared packed (no array per site); arrays only for a message.
        let found = CodeWriter.readPacked(a, count: length)
        let head = PackedBytes(bits: found.bits, count: X86SiteEncoding.normalLength)
        let isNop5 = PackedBytes(bits: found.bits, count: 4) == Self.nop5PrefixPacked
        let fiveNext = a + UInt(X86SiteEncoding.normalLength)
        switch site.kind {
        case .nop5, .patchable, .nop1x5:
            if isNop5 {
                state.records[a] = SiteRecord(instruction: .nop, nopTail: found[4])
                result.unchanged.append(site)
            } else if head == Self.nop1x5Packed {
                plan.append(PlannedWrite(siteIndex: index, address: a, old: head, new: Self.nop5Packed, becomes: .nop, next: fiveNext, rescue: true,
                                         original: head))
            } else {
                result.failed.append(SiteOutcome(site: site, problem: .bytesMismatch(expected: "a 5-byte nop or five 1-byte nops", found: found.array)))
            }
        case .callFentry:
            if found[0] == X86SiteEncoding.callRel32Opcode {
                plan.append(PlannedWrite(siteIndex: index, address: a, old: head, new: Self.nop5Packed, becomes: .nop, next: fiveNext, rescue: false,
                                         original: head))
            } else if isNop5 {
                state.records[a] = SiteRecord(instruction: .nop, nopTail: found[4])
                result.unchanged.append(site)
            } else {
                result.failed.append(SiteOutcome(site: site, problem: .bytesMismatch(expected: "call rel32 (e8)", found: found.array)))
            }
        case .callFentryGOT:
            let opcode = [found[0], found[1]]
            if opcode == X86SiteEncoding.callIndirectRipRelative || opcode == X86SiteEncoding.callAddr32Rel32 {
                plan.append(PlannedWrite(siteIndex: index, address: a, old: found, new: Self.nop6Packed,
                                         becomes: .nop, next: a + UInt(found.count), rescue: false, original: found))
            } else if isNop5 && found[5] == X86SiteEncoding.nop1 {
                state.records[a] = SiteRecord(instruction: .nop)
                result.unchanged.append(site)
            } else {
                result.failed.append(SiteOutcome(site: site, problem: .bytesMismatch(expected: "call *rel32(%rip) (ff 15) or addr32 call (67 e8)", found: found.array)))
            }
        case .none:
            result.skipped.append(SiteOutcome(site: site, problem: .unsupportedKind(.none)))
        }
    }

    static let nop5PrefixPacked = PackedBytes(X86SiteEncoding.nop5Prefix)
    static let nop1x5Packed = PackedBytes(X86SiteEncoding.nop1x5)
    /// The normal form of a 6-byte GOT site, off: nop5 then nop1.
    static let nop6Packed = PackedBytes(X86SiteEncoding.nop5 + [X86SiteEncoding.nop1])
    static let nop5Packed = PackedBytes(X86SiteEncoding.nop5)

    // MARK: - The protocol

    private func serialization(_ state: borrowing State) -> CoreSerializer.Mechanism {
        if let forced = state.configuration.serialization { return forced }
        if let env = getenv("LIVETRACE_SERIALIZE"), String(cString: env) == "signals" { return .signalEveryThread }
        return CoreSerializer.preferredMechanism
    }

    /// Runs steps 1-5 for a verified plan, recording the outcome.
    /// `listPatched`: append each patched site to `result.patched` (else
    /// count it in `patchedUnlisted`).
    /// `rescueMap`: for a relocated write's site index, its rescue map and
    /// stub (PlannedWrite's `relocated`).
    private func run(_ unsorted: [PlannedWrite], site: (Int) -> Site,
                     rescueMap: (Int) -> (offsets: PrologueRelocation.ShortBytes, stub: UInt) = { _ in (PrologueRelocation.ShortBytes(), 0) },
                     state: inout State, result: inout BatchResult, listPatched: Bool = true) {
        if unsorted.isEmpty { return }
        // Callers usually pass sites in address order: sort only if not.
        let inOrder = zip(unsorted, unsorted.dropFirst()).allSatisfy { $0.address < $1.address }
        // A PlannedWrite is large: the sort moves indices, then one gather.
        let plan = inOrder ? unsorted : unsorted.indices.sorted { unsorted[$0].address < unsorted[$1].address }.map { unsorted[$0] }
        let mechanism = serialization(state)
        result.serializationMechanism = mechanism
        let writer = CodeWriter(method: state.configuration.writeMethod)
        let faults = state.configuration.faults
        let mappings: [ProcessMapping]
        do throws(SystemCallError) {
            mappings = try ProcessMaps.read()
        } catch {
            fail(plan, site, .codeAccessFailed(error.description), &result)
            return
        }

        // Step 1: publish the known sites, then the in-flight table.
        publishKnown(plan.lazy.filter { !$0.known }.map { UInt64($0.address) }, state: &state)
        let entries = UnsafeMutablePointer<lt_inflight_entry>.allocate(capacity: plan.count)
        // The relocation maps live as long as the table (left allocated if
        // the table must stay published), back to back in one buffer.
        var maps: [UnsafeMutablePointer<UInt8>] = []
        var keepMaps = false
        defer { if !keepMaps { maps.forEach { $0.deallocate() } } }
        let mapBytes = plan.reduce(0) { $0 + ($1.relocated ? rescueMap($1.siteIndex).offsets.count : 0) }
        var nextMap: UnsafeMutablePointer<UInt8>? = nil
        if mapBytes > 0 {
            nextMap = UnsafeMutablePointer<UInt8>.allocate(capacity: mapBytes)
            maps.append(nextMap!)
        }
        for (i, w) in plan.enumerated() {
            let emulate: Int
            switch w.becomes {
            case .nop: emulate = LT_EMULATE_NOP
            case .call: emulate = LT_EMULATE_CALL
            case .jump: emulate = LT_EMULATE_JUMP
            }
            var map: UnsafeMutablePointer<UInt8>? = nil
            var rescueLength = w.rescue ? UInt32(X86SiteEncoding.normalLength) : 0
            var rescueBase: UInt = 0
            if w.relocated, let buffer = nextMap {
                let relocation = rescueMap(w.siteIndex)
                _ = UnsafeMutableBufferPointer(start: buffer, count: relocation.offsets.count).initialize(from: relocation.offsets)
                map = buffer
                nextMap = buffer + relocation.offsets.count
                rescueLength = UInt32(relocation.offsets.count)
                rescueBase = relocation.stub
            }
            entries[i] = lt_inflight_entry(
                address: UInt64(w.address), target: UInt64(w.becomes.target ?? 0), next: UInt64(w.next),
                emulate: UInt32(emulate), rescue_length: rescueLength, rescue_base: UInt64(rescueBase), rescue_offsets: map)
        }
        let table = UnsafeMutablePointer<lt_inflight_table>.allocate(capacity: 1)
        table.initialize(to: lt_inflight_table(count: UInt64(plan.count), entries: entries))
        _ = lt_trap_exchange_inflight(table)

        var serializations = 0
        func serialize(_ step: Step) throws(PatchProblem) {
            if let injected = faults?.fail(step) { throw .protocolFailed("\(step.rawValue): \(injected)") }
            try CoreSerializer.serializeAllCores(using: mechanism)
            serializations += 1
        }
        // The pages of every site stay writable for steps 2-4 (one mprotect
        // pair per batch, not per step); without that, each step makes its own.
        let writable = writer.unprotect(plan.lazy.map { (address: $0.address, count: max($0.old.count, $0.new.count)) }, mappings: mappings)
        defer { if let writable { writer.reprotect(writable) } }
        func write(_ step: Step, _ make: (PlannedWrite) -> CodeWriter.Write) throws(PatchProblem) {
            if let injected = faults?.fail(step) { throw .codeAccessFailed("\(step.rawValue): \(injected)") }
            if let writable {
                writer.store(plan.count, writable) { make(plan[$0]) }
                return
            }
            do throws(SystemCallError) {
                try writer.perform(plan.map(make), mappings: mappings)
            } catch {
                throw .codeAccessFailed(error.description)
            }
        }

        var stepsDone = 0
        do throws(PatchProblem) {
            // Step 2: int3 over A[0]; serialize; rescue threads from nop1x5.
            let int3 = PackedBytes(bits: UInt64(X86SiteEncoding.int3), count: 1)
            try write(.writeInt3) { CodeWriter.Write(address: $0.address, packed: int3) }
            stepsDone = 2
            try serialize(.serializeAfterInt3)
            if plan.contains(where: \.rescue) {
                let before = trapCounters.rescued
                _ = try CoreSerializer.signalThreadsAndWait(skipThreadsInSystemCalls: true)
                result.threadsRescued += Int(trapCounters.rescued - before)
            }
            // Step 3: NEW[1...]; serialize.
            try write(.writeTail) { CodeWriter.Write(address: $0.address + 1, packed: $0.new.tail) }
            stepsDone = 3
            try serialize(.serializeAfterTail)
            // Step 4: NEW[0]; serialize.
            try write(.writeHead) { CodeWriter.Write(address: $0.address, packed: $0.new.head) }
            stepsDone = 4
            try serialize(.serializeAfterHead)
        } catch {
            result.serializations += serializations
            if stepsDone >= 2 && !rollBack(plan, stepsDone: stepsDone, writer: writer, mappings: mappings, mechanism: mechanism, faults: faults) {
                // The table stays published: every thread that reaches one
                // of these sites is still emulated correctly.
                keepMaps = true
                state.wedged = WedgedBatch(reason: error.description, plan: plan, stepsDone: stepsDone, table: table, rescueMaps: maps)
                fail(plan, site, .protocolFailed("\(error) (sites left in flight, emulated by the trap handler)"), &result)
                return
            }
            retire(table)
            fail(plan, site, error, &result)
            return
        }

        // Step 5: retire the table.
        retire(table)
        result.serializations += serializations
        if listPatched { result.patched.reserveCapacity(result.patched.count + plan.count) }
        // One growth of the records for a batch that adds sites (none for
        // one that removes them: a larger table would be rehashed for nothing).
        if !plan.contains(where: \.forget) { state.records.reserveCapacity(state.records.count + plan.count) }
        for w in plan {
            if w.forget {
                state.records[w.address] = nil
            } else if !state.records.update(w.address, { record in
                // In place: one look-up, the tail and the original kept.
                record.instruction = w.becomes
                record.known = true
                if let original = w.original { record.original = original }
            }) {
                state.records[w.address] = SiteRecord(instruction: w.becomes, known: true, original: w.original)
            }
            if listPatched { result.patched.append(site(w.siteIndex)) } else { result.patchedUnlisted += 1 }
        }
    }

    /// Undoes a batch that failed after its int3 were written: int3 over
    /// A[0] again if step 4 wrote NEW[0] (so OLD[1...] never meets NEW[0]
    /// in one instruction), serialize; OLD[1...] (if step 3 ran), serialize;
    /// OLD[0], serialize; then reads every site back. The published table still emulates NEW meanwhile, which is a
    /// valid behaviour for a site in flight. Returns false unless every
    /// site holds exactly its old bytes again.
    private func rollBack(_ plan: [PlannedWrite], stepsDone: Int, writer: CodeWriter,
                          mappings: [ProcessMapping], mechanism: CoreSerializer.Mechanism, faults: PokeFaults?) -> Bool {
        do throws(SystemCallError) {
            if stepsDone >= 4 {
                if let injected = faults?.fail(.rollbackInt3) { throw SystemCallError(call: "rollback (\(injected))", errno: EIO) }
                try writer.perform(plan.map { CodeWriter.Write(address: $0.address, packed: PackedBytes([X86SiteEncoding.int3])) }, mappings: mappings)
                try? CoreSerializer.serializeAllCores(using: mechanism)
            }
            if stepsDone >= 3 {
                if let injected = faults?.fail(.rollbackTail) { throw SystemCallError(call: "rollback (\(injected))", errno: EIO) }
                try writer.perform(plan.map { CodeWriter.Write(address: $0.address + 1, packed: $0.old.tail) }, mappings: mappings)
                try? CoreSerializer.serializeAllCores(using: mechanism)
            }
            if let injected = faults?.fail(.rollbackHead) { throw SystemCallError(call: "rollback (\(injected))", errno: EIO) }
            try writer.perform(plan.map { CodeWriter.Write(address: $0.address, packed: $0.old.head) }, mappings: mappings)
            try? CoreSerializer.serializeAllCores(using: mechanism)
        } catch {
            return false
        }
        return plan.allSatisfy { CodeWriter.readPacked($0.address, count: $0.old.count) == $0.old }
    }

    /// Retries the rollback of a wedged batch (after the cause went away:
    /// memory pressure, a seccomp filter lifted, a test's injected fault
    /// removed). On success its sites hold their old bytes, its table is
    /// retired and batches run again. False while it still cannot.
    public func retryRollback() -> Bool {
        state.withLock { state in
            guard let wedged = state.wedged else { return true }
            let mappings: [ProcessMapping]
            do throws(SystemCallError) { mappings = try ProcessMaps.read() } catch { return false }
            guard rollBack(wedged.plan, stepsDone: wedged.stepsDone, writer: CodeWriter(method: state.configuration.writeMethod),
                           mappings: mappings, mechanism: serialization(state), faults: state.configuration.faults) else { return false }
            retire(wedged.table)
            wedged.rescueMaps.forEach { $0.deallocate() }
            state.wedged = nil
            return true
        }
    }

    /// The reason no batch runs, when an earlier one is wedged.
    public var wedgedReason: String? { state.withLock { $0.wedged?.reason } }

    private func retire(_ table: UnsafeMutablePointer<lt_inflight_table>) {
        _ = lt_trap_exchange_inflight(nil)
        lt_trap_wait_for_readers()
        UnsafeMutablePointer(mutating: table.pointee.entries)?.deallocate()
        table.deallocate()
    }

    private func fail(_ plan: [PlannedWrite], _ site: (Int) -> Site, _ problem: PatchProblem, _ result: inout BatchResult) {
        result.failed += plan.map { SiteOutcome(site: site($0.siteIndex), problem: problem) }
    }

    /// Forgets the sites in [start, end): dlclose unmapped their object
    /// (lt_unload.h). Their records go and they leave the known-site set, so
    /// bytes of another object mapped there later are a stranger's again.
    public func forgetSites(from start: UInt, to end: UInt) {
        state.withLock { state in
            for address in state.records.addresses.filter({ $0 >= start && $0 < end }) {
                state.records[address] = nil
            }
            let kept = state.knownAddresses.filter { $0 < UInt64(start) || $0 >= UInt64(end) }
            if kept.count != state.knownAddresses.count { replaceKnown(with: kept, state: &state) }
        }
    }

    /// Adds addresses to the published known-site set.
    private func publishKnown<S: Sequence<UInt64>>(_ addresses: S, state: inout State) {
        let fresh = Array(addresses)
        if fresh.isEmpty { return }
        var merged = state.knownAddresses
        merged += fresh
        merged.sort()
        replaceKnown(with: merged, state: &state)
    }

    /// Publishes `merged` (sorted) as the known-site set, replacing the
    /// published copy; the old one is freed once no handler reads it.
    private func replaceKnown(with merged: [UInt64], state: inout State) {
        state.knownAddresses = merged
        let buffer = UnsafeMutablePointer<UInt64>.allocate(capacity: merged.count)
        buffer.initialize(from: merged, count: merged.count)
        let set = UnsafeMutablePointer<lt_address_set>.allocate(capacity: 1)
        set.initialize(to: lt_address_set(count: UInt64(merged.count), addresses: buffer))
        let old = lt_trap_exchange_known_sites(set)
        if let old {
            lt_trap_wait_for_readers()
            UnsafeMutablePointer(mutating: old.pointee.addresses)?.deallocate()
            UnsafeMutablePointer(mutating: old).deallocate()
        }
    }
}

func hex(_ bytes: [UInt8]) -> String {
    bytes.map { String($0, radix: 16).count == 1 ? "0" + String($0, radix: 16) : String($0, radix: 16) }.joined(separator: " ")
}

