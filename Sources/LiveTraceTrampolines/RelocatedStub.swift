// Relocated prologues in JIT memory (full-dynamic patching; the bytes are
// drawn in LiveTraceSites/PrologueRelocationX86_64.swift). A relocated stub
// takes one or two slots of a region within reach of the function, holds the
// moved instructions then `jmp` back to the function, and is padded with
// int3. Like every slot (JITMemory.swift), it is immutable once published
// and freed only after quiescence.
import LiveTracePatching
import LiveTraceSites

struct RelocatedStub {
    var slot: JITSlot
    var address: UInt
    var relocation: PrologueRelocation
    /// Offset in the stub of each moved instruction (same order).
    var offsets: PrologueRelocation.ShortBytes

    /// The stub address equivalent to `pc`, an address strictly inside the
    /// moved bytes on one of their instruction boundaries; nil otherwise.
    func equivalent(of pc: UInt) -> UInt? {
        guard pc > relocation.patchAddress, pc < relocation.resumeAddress else { return nil }
        let offset = Int(pc - relocation.patchAddress)
        guard let index = relocation.instructions.firstIndex(where: { $0.offset == offset }) else { return nil }
        return address + UInt(offsets[index])
    }

    /// What the text poke relocates with this stub.
    var entry: RelocatedEntry { RelocatedEntry(relocation: relocation, stub: address, stubOffsets: offsets) }
}

extension JITMemory {
    /// Builds and writes the relocated stub of `relocation` in a slot within
    /// reach of the function; every rip-relative and branch target must be
    /// within reach of the stub too.
    func placeRelocatedStub(_ relocation: PrologueRelocation) throws(TraceError) -> RelocatedStub {
        var failure: TraceError? = nil
        let placed = placeRelocatedStubs(CollectionOfOne(relocation), { $0 }) { _, error in failure = error }
        if let failure { throw failure }
        return placed[0]
    }

    /// The stubs of `relocations` that could be placed, each given to `make`
    /// for the value kept, in request order; `failed` hears of each other
    /// request (its index, why), and its slots are free again. A batch of
    /// 60,000 keeps one array of what it patches, not one of results too.
    func placeRelocatedStubs<Placed>(_ relocations: some Collection<PrologueRelocation>, _ make: (RelocatedStub) -> Placed,
                                     failed: (_ index: Int, _ error: TraceError) -> Void) -> [Placed] {
        var batch = RelocatedStubBatch<Placed>(jit: self, expected: relocations.count)
        for relocation in relocations { batch.add(relocation, make, failed: failed) }
        return batch.finish(failed: failed)
    }

    private static let int3Slot = [UInt8](repeating: StubX86_64.int3, count: slotSize)

    /// A stub's slots, its bytes (padded with int3 to whole slots) appended
    /// to `buffer`, not written yet. On error `buffer` may hold part of them.
    fileprivate func buildRelocatedStub(_ relocation: PrologueRelocation, into buffer: inout [UInt8]) throws(TraceError) -> RelocatedStub {
        let count = (relocation.stubLength + Self.slotSize - 1) / Self.slotSize
        let slot = try allocate(near: relocation.patchAddress, slots: count)
        let address = self.address(of: slot)
        let start = buffer.count
        // Whole slots of int3 first, then the stub's bytes over their start
        // (a slot at a time from a slot of int3: appending a repeated
        // element goes a byte at a time, 1.5% of a 63,000-stub batch).
        for _ in 0..<count { buffer.append(contentsOf: Self.int3Slot) }
        let written: Result<PrologueRelocation.ShortBytes, PrologueRelocation.StubError> = buffer.withUnsafeMutableBytes { bytes in
            do throws(PrologueRelocation.StubError) {
                return .success(try relocation.writeStub(at: address, into: UnsafeMutableRawBufferPointer(rebasing: bytes[start...])))
            } catch {
                return .failure(error)
            }
        }
        let offsets: PrologueRelocation.ShortBytes
        do {
            offsets = try written.get()
        } catch {
            free(slot)
            guard case let .outOfReach(target) = error else { throw TraceError.outOfMemory(near: relocation.patchAddress) }
            throw TraceError.patchFailed(site: relocation.patchAddress,
                                         reason: "target 0x\(String(target, radix: 16)) out of reach of the relocated stub")
        }
        return RelocatedStub(slot: slot, address: address, relocation: relocation, offsets: offsets)
    }
}

/// Stubs placed one request at a time (`add`, in request order), kept as
/// `Placed` values, until `finish`. Stubs in adjacent slots are written with
/// one write (one system call per run instead of one per stub). The bytes
/// are built in a scratch buffer of at most `flushBytes` (plus one stub),
/// written out whenever it fills: 60,000 stubs are 4 MB, and a buffer that
/// size is a thousand fresh pages, a page fault each (about 3 us here),
/// where one of 64 KiB is reused.
struct RelocatedStubBatch<Placed> {
    static var flushBytes: Int { 64 * 1024 }
    let jit: JITMemory
    private(set) var placed: [Placed] = []
    private var requests = 0
    /// The buffered stubs' bytes, in request order, back to back.
    private var scratch: [UInt8] = []
    /// The buffered stubs, the last of `placed`.
    private var pending: [(address: UInt, start: Int, request: Int, slot: JITSlot)] = []

    init(jit: JITMemory, expected: Int) {
        self.jit = jit
        placed.reserveCapacity(expected)
        scratch.reserveCapacity(Self.flushBytes + 2 * JITMemory.slotSize)
        pending.reserveCapacity(Self.flushBytes / JITMemory.slotSize + 2)
    }

    /// Room for `count` placed values in all.
    mutating func reserve(_ count: Int) { placed.reserveCapacity(count) }

    /// The next request: its stub built and buffered, or `failed` told (with
    /// the request's index) and its slots free again.
    mutating func add(_ relocation: PrologueRelocation, _ make: (RelocatedStub) -> Placed,
                      failed: (_ index: Int, _ error: TraceError) -> Void) {
        let request = requests
        requests += 1
        let start = scratch.count
        do throws(TraceError) {
            let stub = try jit.buildRelocatedStub(relocation, into: &scratch)
            pending.append((stub.address, start, request, stub.slot))
            placed.append(make(stub))
        } catch {
            scratch.removeSubrange(start...)
            failed(request, error)
        }
        if scratch.count >= Self.flushBytes { flush(failed: failed) }
    }

    /// Every stub written; what could be placed, in request order.
    mutating func finish(failed: (_ index: Int, _ error: TraceError) -> Void) -> [Placed] {
        flush(failed: failed)
        return placed
    }

    /// A run: stubs next to each other both in `scratch` and in memory,
    /// written with one write. A run whose write fails is taken back out of
    /// `placed`, its slots freed and its requests failed.
    private mutating func flush(failed: (_ index: Int, _ error: TraceError) -> Void) {
        let firstPlaced = placed.count - pending.count
        var unwritten: [Int] = []
        var runStart = 0
        while runStart < pending.count {
            var runEnd = runStart + 1
            while runEnd < pending.count,
                  pending[runEnd].address == pending[runEnd - 1].address + UInt(pending[runEnd].start - pending[runEnd - 1].start) {
                runEnd += 1
            }
            let end = runEnd < pending.count ? pending[runEnd].start : scratch.count
            let (first, address) = (pending[runStart].start, pending[runStart].address)
            let failure: TraceError? = scratch.withUnsafeBytes { bytes in
                do throws(TraceError) { try jit.write(UnsafeRawBufferPointer(rebasing: bytes[first..<end]), at: address) } catch { return error }
                return nil
            }
            if let error = failure {
                for k in runStart..<runEnd {
                    jit.free(pending[k].slot)
                    failed(pending[k].request, error)
                    unwritten.append(firstPlaced + k)
                }
            }
            runStart = runEnd
        }
        for index in unwritten.reversed() { placed.remove(at: index) }
        scratch.removeAll(keepingCapacity: true)
        pending.removeAll(keepingCapacity: true)
    }
}

/// Relocated stubs outside the ops registry, for tools and benchmarks that
/// drive `TextPoker.relocate`/`restore` themselves. Its stubs are never
/// freed: without the registry's grace periods nothing proves them quiescent.
public final class RelocatedStubArena: @unchecked Sendable {
    private let jit = JITMemory()

    public init() {}

    /// The entries the text poke relocates, their stubs built and written,
    /// for every relocatable function of `object` (of at least 5 bytes)
    /// loaded at `loadBias`, rebased on the fly: a batch of 60,000 copies no
    /// second array of relocations. `failed` hears of the others by their
    /// index among the relocatable ones.
    public func placeEveryRelocatableFunction(of object: ObjectRelocations, loadBias: UInt,
                                              failed: (_ index: Int, _ error: TraceError) -> Void) -> [RelocatedEntry] {
        var batch = RelocatedStubBatch<RelocatedEntry>(jit: jit, expected: object.entries.count)
        object.entries.withUnsafeBufferPointer { entries in Self.place(entries, loadBias: loadBias, into: &batch, failed: failed) }
        return batch.finish(failed: failed)
    }

    /// The analysis of `object` (as `ElfObject.prologueRelocations` with
    /// `threads`) and `placeEveryRelocatableFunction` of its verdicts at
    /// `loadBias`, overlapped: the calling thread places the stubs of each
    /// run of verdicts as soon as it is analyzed, while the other threads
    /// analyze the rest.
    public func analyzeAndPlaceEveryRelocatableFunction(of object: ElfObject, loadBias: UInt, threads: Int,
                                                        failed: (_ index: Int, _ error: TraceError) -> Void)
        throws(DiscoveryError) -> (relocations: ObjectRelocations, entries: [RelocatedEntry]) {
        var batch = RelocatedStubBatch<RelocatedEntry>(jit: jit, expected: 0)
        let relocations = try withoutActuallyEscaping(failed) { failed throws(DiscoveryError) in
            try object.prologueRelocations(threads: threads) { entries, first, total in
                if first == 0 { batch.reserve(total) }
                Self.place(entries, loadBias: loadBias, into: &batch, failed: failed)
            }
        }
        return (relocations, batch.finish(failed: failed))
    }

    private static func place(_ entries: UnsafeBufferPointer<ObjectRelocations.Entry>, loadBias: UInt,
                              into batch: inout RelocatedStubBatch<RelocatedEntry>,
                              failed: (_ index: Int, _ error: TraceError) -> Void) {
        for entry in entries {
            guard entry.size >= 5, case let .success(relocation) = entry.verdict else { continue }
            batch.add(relocation.rebased(by: loadBias), \.entry, failed: failed)
        }
    }
}
