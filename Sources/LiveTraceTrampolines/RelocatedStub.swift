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
    var offsets: [Int]
    /// The function's names, for the text poke's outcomes.
    var symbol = ""
    var function = ""

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
        // The moved bytes grow by at most 4 per widened branch, plus the 5-byte jmp back.
        let bound = relocation.relocatedLength + 4 * relocation.instructions.count + 5
        let count = (bound + Self.slotSize - 1) / Self.slotSize
        let slot = try allocate(near: relocation.patchAddress, slots: count)
        let address = self.address(of: slot)
        do throws(TraceError) {
            let built: (bytes: [UInt8], offsets: [Int])
            do {
                built = try relocation.stubBytes(at: address)
            } catch {
                guard case let .outOfReach(target) = error else { throw TraceError.outOfMemory(near: relocation.patchAddress) }
                throw TraceError.patchFailed(site: relocation.patchAddress,
                                             reason: "target 0x\(String(target, radix: 16)) out of reach of the relocated stub")
            }
            try write(built.bytes + [UInt8](repeating: StubX86_64.int3, count: count * Self.slotSize - built.bytes.count), at: address)
            return RelocatedStub(slot: slot, address: address, relocation: relocation, offsets: built.offsets)
        } catch {
            free(slot)
            throw error
        }
    }
}

/// Relocated stubs outside the ops registry, for tools and benchmarks that
/// drive `TextPoker.relocate`/`restore` themselves. Its stubs are never
/// freed: without the registry's grace periods nothing proves them quiescent.
public final class RelocatedStubArena: @unchecked Sendable {
    private let jit = JITMemory()

    public init() {}

    /// The entry the text poke relocates, its stub built and written.
    public func place(_ relocation: PrologueRelocation, symbol: String) throws(TraceError) -> RelocatedEntry {
        let stub = try jit.placeRelocatedStub(relocation)
        return RelocatedEntry(relocation: relocation, stub: stub.address, stubOffsets: stub.offsets,
                              site: RelocatedEntry.site(of: relocation, symbol: symbol))
    }
}
