// JIT memory: regions of read-only-executable memory within ±2 GiB of the
// sites that call into them, carved into fixed-size stub slots.
//
// Rules:
//  1. A region is an anonymous private mapping made PROT_READ|PROT_EXEC from
//     the start; it is never writable nor unmapped while the process runs, so
//     no page is ever RWX and no thread ever faults on it.
//  2. Bytes are written through /proc/self/mem (the kernel's FOLL_FORCE
//     write), only into a slot that is free: never published, or retired and
//     proven quiescent (Quiescence.swift). Every write is read back.
//     A change's stubs are staged (`stage`) and written by `flushStaged`
//     before any site can reach them: each stub fills its whole slots (int3
//     after its bytes), so slots staged side by side form one run, written
//     with one pwrite — never a byte of a slot that was not staged.
//  3. Slot 0 of each region is the header: the addresses of lt_tramp_entry,
//     lt_tramp_entry_lean and lt_tramp_entry_graph, which every stub reaches
//     with `jmp [rip+disp]`
//     (x86-64 part in StubX86_64.swift).
//  4. A slot is reachable from a site when every byte of the region is
//     within a signed 32-bit displacement of site+5.
//
// Ownership: a field of OpsRegistry.Engine, inside the registry's Mutex;
// not Sendable, so it cannot be reached from outside it.
import CLiveTraceShims
import Glibc
import LiveTraceSites

/// One stub's slots: `count` contiguous slots from `index` (a leaf stub that
/// does not fit 64 bytes takes two).
struct JITSlot: Hashable, Sendable {
    var region: Int
    var index: Int
    var count = 1
}

final class JITMemory {
    static let regionSize = 256 * 1024
    static let slotSize = 64
    static let slotsPerRegion = regionSize / slotSize
    /// The widest reach of a rel32 displacement, kept a page short of 2 GiB.
    static let reach: Int64 = Int64(Int32.max) - 4096

    struct Region {
        var base: UInt
        var freeSlots: [Int]
    }

    private(set) var regions: [Region] = []
    private var memFD: Int32 = -1
    /// Stubs staged for the next `flushStaged`: whole slots, by address.
    private var staged: [(address: UInt, bytes: [UInt8])] = []
    /// The region of the last allocation, tried first: a batch's stubs fill
    /// one region after another, so the full ones before it are not asked
    /// again for each stub.
    private var lastRegion = 0

    /// Address ranges of every region, for the reclaimer's PC check.
    var ranges: [(UInt, UInt)] { regions.map { ($0.base, $0.base + UInt(Self.regionSize)) } }

    func address(of slot: JITSlot) -> UInt {
        regions[slot.region].base + UInt(slot.index * Self.slotSize)
    }

    /// `count` contiguous free slots reachable by `jmp rel32` from the site
    /// at `site`.
    func allocate(near site: UInt, slots count: Int = 1) throws(TraceError) -> JITSlot {
        if lastRegion < regions.count, Self.reaches(site, regions[lastRegion].base), let slot = take(count, from: lastRegion) {
            return slot
        }
        // By index: an iterator over `regions` would hold its buffer, and
        // `take` would then copy the array and the region's free list.
        for i in regions.indices where Self.reaches(site, regions[i].base) {
            if let slot = take(count, from: i) {
                lastRegion = i
                return slot
            }
        }
        let region = try mapRegion(near: site)
        guard let slot = take(count, from: region) else { throw TraceError.outOfMemory(near: site) }
        lastRegion = region
        return slot
    }

    private func take(_ count: Int, from region: Int) -> JITSlot? {
        if count == 1 {
            guard let index = regions[region].freeSlots.popLast() else { return nil }
            return JITSlot(region: region, index: index)
        }
        // Freed and never-used slots lie in the list as descending runs:
        // look there first, then anywhere.
        let list = regions[region].freeSlots
        var runEnd = 0
        while runEnd < list.count {
            var runStart = runEnd
            while runStart + 1 < list.count, list[runStart + 1] == list[runStart] - 1 { runStart += 1 }
            // list[runEnd...runStart] descends by one: slots list[runStart]...list[runEnd].
            if runStart - runEnd + 1 >= count {
                let first = list[runStart]
                regions[region].freeSlots.removeSubrange((runStart - count + 1)...runStart)
                return JITSlot(region: region, index: first, count: count)
            }
            runEnd = runStart + 1
        }
        let free = Set(list)
        guard let first = free.sorted().first(where: { start in (1..<count).allSatisfy { free.contains(start + $0) } }) else {
            return nil
        }
        regions[region].freeSlots.removeAll { $0 >= first && $0 < first + count }
        return JITSlot(region: region, index: first, count: count)
    }

    /// Returns a slot that is quiescent (or was never published).
    func free(_ slot: JITSlot) {
        regions[slot.region].freeSlots.append(contentsOf: (slot.index..<slot.index + slot.count).reversed())
    }

    var freeSlotCount: Int { regions.reduce(0) { $0 + $1.freeSlots.count } }

    static func reaches(_ site: UInt, _ base: UInt) -> Bool {
        let from = Int64(bitPattern: UInt64(site + 5))
        let low = Int64(bitPattern: UInt64(base)) - from
        let high = low + Int64(regionSize)
        return low >= -reach && high <= reach
    }

    /// Writes `bytes` into free memory of a region and verifies them.
    func write(_ bytes: [UInt8], at address: UInt) throws(TraceError) {
        let failure: TraceError? = bytes.withUnsafeBytes { raw in
            do throws(TraceError) { try write(raw, at: address) } catch { return error }
            return nil
        }
        if let failure { throw failure }
    }

    func write(_ bytes: UnsafeRawBufferPointer, at address: UInt) throws(TraceError) {
        if memFD < 0 { memFD = try Sys.open("/proc/self/mem", O_RDWR) }
        try Sys.pwriteAll(memFD, bytes, at: address)
        let same = bytes.isEmpty || memcmp(UnsafeRawPointer(bitPattern: address)!, bytes.baseAddress!, bytes.count) == 0
        guard same else {
            throw TraceError.patchFailed(site: address, reason: "JIT write did not read back")
        }
    }

    /// Stages a stub for `slot` (its bytes must fit the slot's size); it is
    /// written by `flushStaged`, which must run before the stub is published.
    func stage(_ bytes: [UInt8], in slot: JITSlot) {
        let size = slot.count * Self.slotSize
        precondition(bytes.count <= size, "a stub larger than its slots")
        var filled = bytes
        filled.append(contentsOf: repeatElement(X86Opcode.int3, count: size - bytes.count))
        staged.append((address(of: slot), filled))
    }

    /// Writes every staged stub, one pwrite per run of adjacent slots, and
    /// verifies each run. The stage is empty afterwards, written or not.
    func flushStaged() throws(TraceError) {
        guard !staged.isEmpty else { return }
        var stubs = staged
        staged = []
        stubs.sort { $0.address < $1.address }
        var start = stubs[0].address
        var run: [UInt8] = []
        run.reserveCapacity(stubs.count * Self.slotSize)
        for stub in stubs {
            if start + UInt(run.count) != stub.address {
                try write(run, at: start)
                start = stub.address
                run.removeAll(keepingCapacity: true)
            }
            run.append(contentsOf: stub.bytes)
        }
        try write(run, at: start)
    }

    /// Forgets the staged stubs (their slots are freed by the caller).
    func discardStaged() { staged = [] }

    /// Maps a new region in the nearest free gap of /proc/self/maps.
    private func mapRegion(near site: UInt) throws(TraceError) -> Int {
        let size = UInt(Self.regionSize)
        for candidate in try Self.candidateAddresses(near: site, size: size) {
            let flags = MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE
            let mapped: UInt
            do throws(TraceError) {
                mapped = try Sys.mmap(candidate, Self.regionSize, PROT_READ | PROT_EXEC, flags)
            } catch {
                if case let .systemCall(failure) = error, failure.errno == EEXIST { continue }
                throw error
            }
            if mapped != candidate { Sys.munmap(mapped, Self.regionSize); continue }
            let index = regions.count
            regions.append(Region(base: mapped, freeSlots: Array((1..<Self.slotsPerRegion).reversed())))
            do throws(TraceError) {
                try write(StubX86_64.header(full: lt_tramp_entry_address(), lean: lt_tramp_entry_lean_address(), graph: lt_tramp_entry_graph_address()), at: mapped)
            } catch {
                regions[index].freeSlots = []
                throw error
            }
            return index
        }
        throw TraceError.outOfMemory(near: site)
    }

    /// Page-aligned start addresses of free gaps reachable from `site`,
    /// nearest first.
    static func candidateAddresses(near site: UInt, size: UInt) throws(TraceError) -> [UInt] {
        let maps: [ProcessMapping]
        do {
            maps = try ProcessMaps.read()
        } catch {
            throw TraceError.systemCall(error)
        }
        var mapped = maps.map { ($0.start, $0.end) }
        mapped.sort { $0.0 < $1.0 }
        let page: UInt = 4096
        let lowestUsable: UInt = 0x10000
        let highestUsable: UInt = 0x7fff_ffff_f000
        var gaps: [(UInt, UInt)] = []
        var cursor = lowestUsable
        for (lo, hi) in mapped {
            if lo > cursor { gaps.append((cursor, lo)) }
            cursor = max(cursor, hi)
        }
        if cursor < highestUsable { gaps.append((cursor, highestUsable)) }
        var candidates: [UInt] = []
        for (lo, hi) in gaps where hi - lo >= size + 2 * page {
            // Keep a guard page on each side; try both ends of the gap and the
            // point nearest to the site.
            let first = lo + page
            let last = hi - page - size
            var points = [first, last]
            if site > first && site < last { points.append((site & ~(page - 1))) }
            for p in points where reaches(site, p) { candidates.append(p) }
        }
        return candidates.sorted { distance($0, site) < distance($1, site) }
    }

    private static func distance(_ a: UInt, _ b: UInt) -> UInt { a > b ? a - b : b - a }
}
