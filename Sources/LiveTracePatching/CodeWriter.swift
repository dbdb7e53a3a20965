#if canImport(Glibc)
import Glibc
#endif
import LiveTraceSites

extension ProcessMaps {
    /// The mapping containing `address` in a sorted list.
    static func find(_ address: UInt, in mappings: [ProcessMapping]) -> ProcessMapping? {
        var lo = 0, hi = mappings.count
        while lo < hi {
            let mid = (lo + hi) / 2
            if mappings[mid].end <= address { lo = mid + 1 } else { hi = mid }
        }
        guard lo < mappings.count, mappings[lo].start <= address else { return nil }
        return mappings[lo]
    }
}

/// Writes bytes into code that other threads may be running.
///
/// Rule: a code page is never made non-executable and never left writable.
///   mprotect method, per step of the protocol:
///     1. group the step's writes into runs of contiguous pages that are
///        r-x now (one mprotect per run, not per write);
///     2. mprotect each run to rwx (executable throughout: threads keep
///        running it);
///     3. store every byte of the step;
///     4. mprotect each run back to r-x (deferred, so it happens on every
///        path out of the step).
///   procSelfMem method: one pwrite to /proc/self/mem per write; the kernel
///   writes through read-only mappings (FOLL_FORCE) and the page protection
///   never changes. ~15x slower per write; used when mprotect is refused.
public struct CodeWriter: Sendable {
    public enum Method: String, Sendable, Hashable {
        case mprotect
        case procSelfMem
    }

    /// Up to 8 bytes to store at an address (held inline: a batch makes
    /// three of these per site, and must not allocate for each).
    public struct Write: Sendable {
        public var address: UInt
        public var packed: PackedBytes

        public init(address: UInt, bytes: [UInt8]) {
            self.address = address
            self.packed = PackedBytes(bytes)
        }

        public init(address: UInt, packed: PackedBytes) {
            self.address = address
            self.packed = packed
        }

        public var bytes: [UInt8] { packed.array }
    }

    public var method: Method
    static let pageSize = UInt(sysconf(Int32(_SC_PAGESIZE)))

    public init(method: Method) { self.method = method }

    /// Reads `count` bytes of code at `address` (any mapped, readable address).
    public static func read(_ address: UInt, count: Int) -> [UInt8] {
        readPacked(address, count: count).array
    }

    /// Reads up to 8 bytes of code at `address`, byte by byte (never past
    /// `address + count`, which may be the end of the mapping).
    public static func readPacked(_ address: UInt, count: Int) -> PackedBytes {
        let p = UnsafeRawPointer(bitPattern: address)!
        var bits: UInt64 = 0
        for i in 0..<count {
            bits |= UInt64(p.load(fromByteOffset: i, as: UInt8.self)) << (8 * UInt64(i))
        }
        return PackedBytes(bits: bits, count: count)
    }

    /// Performs one step's writes. `mappings` tells each page's protection.
    public func perform(_ writes: [Write], mappings: [ProcessMapping]) throws(SystemCallError) {
        switch method {
        case .procSelfMem:
            try writeThroughProcSelfMem(writes)
        case .mprotect:
            do throws(SystemCallError) {
                try writeWithMprotect(writes, mappings: mappings)
            } catch {
                // mprotect refused (sealed mapping, a security module): the
                // bytes already stored are the same as those we store again.
                try writeThroughProcSelfMem(writes)
            }
        }
    }

    /// Pages made writable for a whole batch (`unprotect`), given back their
    /// protection by `reprotect`.
    public struct WritablePages: Sendable {
        fileprivate var runs: [PageRun]
    }

    /// The mprotect method's steps 1-2 once for a whole batch: every page
    /// that holds a byte of `ranges` (start, length) is made rwx until
    /// `reprotect`, so the batch's steps store without a system call each
    /// (steps 3 then need no mprotect pair: three fewer page-table walks
    /// and TLB shootdowns over the whole text per batch). The rule holds: no
    /// page stops being executable, none stays writable after the batch.
    /// nil for the procSelfMem method, or when mprotect is refused (then
    /// `perform` does its own per step, with its fallback).
    public func unprotect(_ ranges: some Sequence<(address: UInt, count: Int)>, mappings: [ProcessMapping]) -> WritablePages? {
        guard method == .mprotect else { return nil }
        do throws(SystemCallError) {
            let runs = try pageRuns(ranges, mappings: mappings)
            var done: [PageRun] = []
            for run in runs {
                do throws(SystemCallError) {
                    try Syscall.mprotect(run.start, Int(run.end - run.start), run.protection | PROT_WRITE | PROT_READ)
                } catch {
                    reprotect(WritablePages(runs: done))
                    throw error
                }
                done.append(run)
            }
            return WritablePages(runs: done)
        } catch {
            return nil
        }
    }

    /// Gives the pages of `unprotect` their protection back.
    public func reprotect(_ pages: WritablePages) {
        for run in pages.runs {
            // Restoring can only fail if the mapping vanished under us.
            try? Syscall.mprotect(run.start, Int(run.end - run.start), run.protection)
        }
    }

    /// Stores `count` writes, each made by `write` for its index, into pages
    /// `unprotect` made writable (every byte must be in its ranges).
    public func store(_ count: Int, _ pages: WritablePages, _ write: (Int) -> Write) {
        for index in 0..<count {
            let w = write(index)
            let p = UnsafeMutableRawPointer(bitPattern: w.address)!
            for i in 0..<w.packed.count {
                p.storeBytes(of: w.packed[i], toByteOffset: i, as: UInt8.self)
            }
        }
    }

    private func writeThroughProcSelfMem(_ writes: [Write]) throws(SystemCallError) {
        let fd = try SystemCall.open("/proc/self/mem", O_RDWR)
        defer { SystemCall.close(fd) }
        for w in writes {
            try Syscall.pwriteAll(fd, w.packed.array, at: w.address)
        }
    }

    /// A run of pages to unprotect, and the protection to restore.
    fileprivate struct PageRun: Sendable {
        var start: UInt
        var end: UInt
        var protection: Int32
    }

    private func writeWithMprotect(_ writes: [Write], mappings: [ProcessMapping]) throws(SystemCallError) {
        let runs = try pageRuns(writes.lazy.map { (address: $0.address, count: $0.packed.count) }, mappings: mappings)
        var unprotected: [PageRun] = []
        defer {
            for run in unprotected {
                // Restoring can only fail if the mapping vanished under us.
                try? Syscall.mprotect(run.start, Int(run.end - run.start), run.protection)
            }
        }
        for run in runs {
            try Syscall.mprotect(run.start, Int(run.end - run.start), run.protection | PROT_WRITE | PROT_READ)
            unprotected.append(run)
        }
        for w in writes {
            let p = UnsafeMutableRawPointer(bitPattern: w.address)!
            for i in 0..<w.packed.count {
                p.storeBytes(of: w.packed[i], toByteOffset: i, as: UInt8.self)
            }
        }
    }

    /// The runs of contiguous pages holding a byte of `ranges` that are not
    /// writable now, each with the protection to restore.
    private func pageRuns(_ ranges: some Sequence<(address: UInt, count: Int)>, mappings: [ProcessMapping]) throws(SystemCallError) -> [PageRun] {
        let page = Self.pageSize
        var pages: [UInt] = []
        pages.reserveCapacity(ranges.underestimatedCount)
        for (address, count) in ranges where count > 0 {
            let first = address & ~(page - 1)
            let last = (address + UInt(count) - 1) & ~(page - 1)
            // Many writes share a page: each page once per run of them.
            if pages.last != first { pages.append(first) }
            if last != first { pages.append(last) }
        }
        // Batches arrive sorted by address; sort only when they are not.
        if zip(pages, pages.dropFirst()).contains(where: { $0 > $1 }) { pages.sort() }
        var runs: [PageRun] = []
        var previous: UInt? = nil
        for p in pages {
            // A page already handled (pages sorted; one mapping lookup each).
            if p == previous { continue }
            previous = p
            guard let m = ProcessMaps.find(p, in: mappings) else {
                throw SystemCallError(call: "mprotect (address 0x\(String(p, radix: 16)) is not mapped)", errno: EFAULT)
            }
            if m.writable { continue }
            let protection = PROT_EXEC | (m.readable ? PROT_READ : 0)
            if var last = runs.last, last.protection == protection, p <= last.end {
                last.end = max(last.end, p + page)
                runs[runs.count - 1] = last
            } else {
                runs.append(PageRun(start: p, end: p + page, protection: protection))
            }
        }
        return runs
    }
}

/// Up to 8 bytes held in an integer, little-endian (byte 0 = lowest bits).
public struct PackedBytes: Sendable, Hashable {
    public var bits: UInt64
    public var count: Int

    public init(bits: UInt64, count: Int) {
        precondition(count >= 0 && count <= 8)
        self.bits = count == 8 ? bits : bits & ((UInt64(1) << (8 * UInt64(count))) - 1)
        self.count = count
    }

    public init(_ bytes: some Collection<UInt8>) {
        var bits: UInt64 = 0
        for (i, b) in bytes.prefix(8).enumerated() { bits |= UInt64(b) << (8 * UInt64(i)) }
        self.init(bits: bits, count: min(bytes.count, 8))
    }

    public subscript(_ i: Int) -> UInt8 { UInt8(truncatingIfNeeded: bits >> (8 * UInt64(i))) }

    public var array: [UInt8] { (0..<count).map { self[$0] } }

    /// The first byte alone, and all but the first byte.
    public var head: PackedBytes { PackedBytes(bits: bits, count: min(count, 1)) }
    public var tail: PackedBytes { PackedBytes(bits: bits >> 8, count: max(count - 1, 0)) }
}
