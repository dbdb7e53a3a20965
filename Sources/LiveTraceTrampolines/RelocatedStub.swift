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
}

extension JITMemory {
    /// Builds and writes the relocated stub of `relocation` in a slot within
    /// reach of the function; every rip-relative and branch target must be
    /// within reach of the stub too.
    func placeRelocatedStub(_ relocation: PrologueRelocation) throws(TraceError) -> RelocatedStub {
        try placeRelocatedStubs([relocation])[0].get()
    }

    /// The stubs of `relocations`, each built as `placeRelocatedStub` does;
    /// stubs in adjacent slots are written with one write (one system call
    /// per run instead of one per stub). A failed stub's slots are free again.
    func placeRelocatedStubs(_ relocations: some Collection<PrologueRelocation>) -> [Result<RelocatedStub, TraceError>] {
        placeRelocatedStubs(relocations) { $0 }
    }

    /// `placeRelocatedStubs`, each placed stub given to `make` for the value
    /// kept (a batch of 60,000 builds its entries in one array, not two).
    func placeRelocatedStubs<Placed>(_ relocations: some Collection<PrologueRelocation>,
                                     _ make: (RelocatedStub) -> Placed) -> [Result<Placed, TraceError>] {
        var results: [Result<Placed, TraceError>] = []
        results.reserveCapacity(relocations.count)
        // Every placed stub's bytes, in request order, back to back.
        var scratch: [UInt8] = []
        scratch.reserveCapacity(relocations.count * Self.slotSize)
        var pending: [(address: UInt, start: Int, index: Int, slot: JITSlot)] = []
        pending.reserveCapacity(relocations.count)
        for relocation in relocations {
            let start = scratch.count
            do throws(TraceError) {
                let stub = try buildRelocatedStub(relocation, into: &scratch)
                pending.append((stub.address, start, results.count, stub.slot))
                results.append(.success(make(stub)))
            } catch {
                scratch.removeSubrange(start...)
                results.append(.failure(error))
            }
        }
        // A run: stubs next to each other both in `scratch` and in memory.
        var runStart = 0
        while runStart < pending.count {
            var runEnd = runStart + 1
            while runEnd < pending.count,
                  pending[runEnd].address == pending[runEnd - 1].address + UInt(pending[runEnd].start - pending[runEnd - 1].start) {
                runEnd += 1
            }
            let end = runEnd < pending.count ? pending[runEnd].start : scratch.count
            do throws(TraceError) {
                try write(Array(scratch[pending[runStart].start..<end]), at: pending[runStart].address)
            } catch {
                for item in pending[runStart..<runEnd] {
                    free(item.slot)
                    results[item.index] = .failure(error)
                }
            }
            runStart = runEnd
        }
        return results
    }

    /// A stub's slots, its bytes (padded with int3 to whole slots) appended
    /// to `buffer`, not written yet. On error `buffer` may hold part of them.
    private func buildRelocatedStub(_ relocation: PrologueRelocation, into buffer: inout [UInt8]) throws(TraceError) -> RelocatedStub {
        let count = (relocation.stubLength + Self.slotSize - 1) / Self.slotSize
        let slot = try allocate(near: relocation.patchAddress, slots: count)
        let address = self.address(of: slot)
        let start = buffer.count
        let offsets: PrologueRelocation.ShortBytes
        do {
            offsets = try relocation.appendStub(at: address, to: &buffer)
        } catch {
            free(slot)
            guard case let .outOfReach(target) = error else { throw TraceError.outOfMemory(near: relocation.patchAddress) }
            throw TraceError.patchFailed(site: relocation.patchAddress,
                                         reason: "target 0x\(String(target, radix: 16)) out of reach of the relocated stub")
        }
        buffer.append(contentsOf: repeatElement(StubX86_64.int3, count: start + count * Self.slotSize - buffer.count))
        return RelocatedStub(slot: slot, address: address, relocation: relocation, offsets: offsets)
    }
}

/// Relocated stubs outside the ops registry, for tools and benchmarks that
/// drive `TextPoker.relocate`/`restore` themselves. Its stubs are never
/// freed: without the registry's grace periods nothing proves them quiescent.
public final class RelocatedStubArena: @unchecked Sendable {
    private let jit = JITMemory()

    public init() {}

    /// The entry the text poke relocates, its stub built and written.
    public func place(_ relocation: PrologueRelocation) throws(TraceError) -> RelocatedEntry {
        let stub = try jit.placeRelocatedStub(relocation)
        return RelocatedEntry(relocation: relocation, stub: stub.address, stubOffsets: stub.offsets)
    }

    /// `place` for many, their stubs written in runs (`placeRelocatedStubs`).
    public func place(_ relocations: [PrologueRelocation]) -> [Result<RelocatedEntry, TraceError>] {
        jit.placeRelocatedStubs(relocations) { RelocatedEntry(relocation: $0.relocation, stub: $0.address, stubOffsets: $0.offsets) }
    }
}
