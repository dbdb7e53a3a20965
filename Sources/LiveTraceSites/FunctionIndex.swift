import Glibc

/// The functions of one object, from `.symtab` (or `.dynsym` when the object
/// is stripped: `.symtab` already holds every `.dynsym` function), sorted by
/// link-time address once so every lookup is a binary search.
///
/// Several symbols may name one address (aliases, a `.dynsym` copy of a
/// `.symtab` entry): one is kept, chosen by binding (global, then weak, then
/// local), then `.symtab` over `.dynsym`, then the shorter name.
struct FunctionIndex {
    struct Function {
        var address: UInt64
        var size: UInt64
        /// The name; "" when the index was built without names.
        var symbol: String
        /// The name's first byte in the object's string table, where it is
        /// NUL-terminated (valid while the `ElfObject` lives).
        var nameStart: UnsafePointer<CChar>
        /// The name's bytes, found by their terminating NUL.
        var name: UnsafeRawBufferPointer { UnsafeRawBufferPointer(start: nameStart, count: strlen(nameStart)) }
    }

    /// Sorted by address, one entry per address.
    private(set) var functions: [Function] = []
    /// Symbols that name an undefined or bogus location and were left out.
    private(set) var ignoredSymbols = 0

    /// A defined symbol `__fentry__` (statically linked profiling runtime).
    private(set) var fentryDefinition: UInt64?

    /// `names`: make each function's `symbol`; without, a caller that
    /// needs only some names, or makes them on several threads (the
    /// relocation analysis), makes them from `name`, and the index reads no
    /// name (only an alias's, to choose between aliases): it does not look
    /// for `fentryDefinition`, and keeps a function whose name is empty
    /// though not at offset 0 (a malformed table), its name empty. On
    /// swift-format the reads of 70,000 names' first bytes, scattered over
    /// 8 MB of string table, were 2 of the index's 7 ms (cache misses), and
    /// scanning each name for its end, another 0.7.
    init(object: ElfObject, names: Bool = true) throws(DiscoveryError) {
        struct Candidate {
            var address: UInt64
            var size: UInt64
            var nameStart: UnsafePointer<CChar>
            var rank: Int
        }
        var candidates: [Candidate] = []
        // `executableSegment(containing:)`'s rule, on a local copy of the
        // executable segments' spans (112,000 symbols of swift-format).
        let executable = object.segments.filter(\.isExecutable).map { (address: $0.address, fileSize: $0.fileSize) }
        func isExecutable(_ address: UInt64) -> Bool {
            executable.contains { address >= $0.address && address - $0.address < $0.fileSize }
        }
        let hasSymbolTable = object.sections.contains { $0.type == ElfLayout.sectionSymbolTable && $0.size >= ElfLayout.symbolSize }
        let wanted = hasSymbolTable ? ElfLayout.sectionSymbolTable : ElfLayout.sectionDynamicSymbols
        for section in object.sections where section.type == wanted {
            let table = try SymbolTable(object: object, section: section)
            let tableRank = section.type == ElfLayout.sectionSymbolTable ? 0 : 1
            let terminated = table.strings.terminatedCount
            candidates.reserveCapacity(candidates.count + table.count)
            for index in 0..<table.count {
                let symbol = table.symbol(at: index)
                guard symbol.isFunction, symbol.isDefined else { continue }
                guard symbol.nameOffset != 0,
                      let nameStart = table.strings.start(at: UInt64(symbol.nameOffset), terminatedCount: terminated),
                      !names || nameStart.pointee != 0 else { ignoredSymbols += 1; continue }
                guard isExecutable(symbol.value) else { ignoredSymbols += 1; continue }
                if names, fentryDefinition == nil, FentryName.matches(nameStart, terminatedBefore: terminated - Int(symbol.nameOffset)) {
                    fentryDefinition = symbol.value
                }
                let bindingRank: Int
                switch symbol.binding {
                case ElfLayout.bindingGlobal: bindingRank = 0
                case ElfLayout.bindingWeak: bindingRank = 1
                default: bindingRank = 2
                }
                candidates.append(Candidate(address: symbol.value, size: symbol.size, nameStart: nameStart, rank: bindingRank * 2 + tableRank))
            }
        }
        func precedes(_ a: Candidate, _ b: Candidate) -> Bool {
            if a.address != b.address { return a.address < b.address }
            if a.rank != b.rank { return a.rank < b.rank }
            return strlen(a.nameStart) < strlen(b.nameStart)
        }
        // The candidates in that order, by index. Linkers usually emit
        // symbols in address order: then nothing moves. Otherwise (a
        // symbol table lists locals first) the indices are sorted as one
        // integer each, address above index, when both fit; aliases, the
        // only ties on address, are ordered by `precedes` afterwards. On
        // swift-format's 70,000 candidates that takes half the time of
        // sorting the 40-byte candidates with `precedes` (a merge sort),
        // and a radix sort of the integers a fifth of `sort()`'s.
        var order = Array(candidates.indices)
        let ordered = candidates.indices.dropFirst().allSatisfy { !precedes(candidates[$0], candidates[$0 - 1]) }
        if !ordered {
            let indexBits = UInt64(max(1, Int.bitWidth - (candidates.count - 1).leadingZeroBitCount))
            if candidates.allSatisfy({ $0.address >> (64 - indexBits) == 0 }) {
                var keys = candidates.indices.map { candidates[$0].address << indexBits | UInt64($0) }
                let highest = keys.max() ?? 0
                Self.radixSort(&keys, significantBits: UInt64.bitWidth - highest.leadingZeroBitCount)
                let mask = (UInt64(1) << indexBits) - 1
                order = keys.map { Int($0 & mask) }
                var start = 0
                while start < order.count {
                    var end = start + 1
                    while end < order.count, candidates[order[end]].address == candidates[order[start]].address { end += 1 }
                    if end - start > 1 { order[start..<end].sort { precedes(candidates[$0], candidates[$1]) } }
                    start = end
                }
            } else {
                order.sort { precedes(candidates[$0], candidates[$1]) }
            }
        }
        functions.reserveCapacity(candidates.count)
        for index in order {
            let candidate = candidates[index]
            if let last = functions.last, last.address == candidate.address {
                // An alias: keep the first (best ranked), but a size it lacks.
                if functions[functions.count - 1].size == 0 { functions[functions.count - 1].size = candidate.size }
                continue
            }
            functions.append(Function(address: candidate.address, size: candidate.size,
                                      symbol: names ? String(cString: candidate.nameStart) : "", nameStart: candidate.nameStart))
        }
    }

    /// Sorts `keys`, whose bits above `significantBits` are zero, least
    /// significant digit first, 11 bits a pass, between `keys` and one
    /// scratch array. Why not `sort()`: on swift-format's 63,640 keys (41
    /// bits: addresses and indices) it took 2.3 ms, half of the index's
    /// time; four counting passes take 0.4 ms.
    static func radixSort(_ keys: inout [UInt64], significantBits: Int) {
        let digitBits = 11, buckets = 1 << 11
        var scratch = [UInt64](repeating: 0, count: keys.count)
        var counts = [Int](repeating: 0, count: buckets)
        var shift = 0
        while shift < significantBits {
            for k in counts.indices { counts[k] = 0 }
            keys.withUnsafeBufferPointer { source in
                scratch.withUnsafeMutableBufferPointer { target in
                    counts.withUnsafeMutableBufferPointer { counts in
                        let mask = UInt64(buckets - 1), by = UInt64(shift)
                        for key in source { counts[Int((key >> by) & mask)] += 1 }
                        var total = 0
                        for k in 0..<buckets { (counts[k], total) = (total, total + counts[k]) }
                        for key in source {
                            let digit = Int((key >> by) & mask)
                            target[counts[digit]] = key
                            counts[digit] += 1
                        }
                    }
                }
            }
            swap(&keys, &scratch)
            shift += digitBits
        }
    }

    /// Index of the last function starting at or before `address`.
    func indexOfLast(atOrBefore address: UInt64) -> Int? {
        var low = 0, high = functions.count
        while low < high {
            let mid = (low + high) / 2
            if functions[mid].address <= address { low = mid + 1 } else { high = mid }
        }
        return low == 0 ? nil : low - 1
    }

    /// The function whose [address, address + size) holds `address` (a
    /// symbol of size 0 holds only its own address).
    func indexOfFunction(containing address: UInt64) -> Int? {
        guard let index = indexOfLast(atOrBefore: address) else { return nil }
        let function = functions[index]
        let offset = address - function.address
        return offset == 0 || offset < function.size ? index : nil
    }

    /// The first function starting after `address`, if it starts within `limit` bytes.
    func indexOfNextFunction(after address: UInt64, within limit: UInt64) -> Int? {
        let next = (indexOfLast(atOrBefore: address) ?? -1) + 1
        guard next < functions.count, functions[next].address - address <= limit else { return nil }
        return next
    }
}

/// The name of the profiling hook that `-pg -mfentry` calls.
enum FentryName {
    static let name = "__fentry__"
    static let bytes = Array(name.utf8)
    static func matches(_ bytes: UnsafeRawBufferPointer) -> Bool {
        bytes.count == Self.bytes.count && memcmp(bytes.baseAddress!, Self.bytes, bytes.count) == 0
    }

    /// Whether the NUL-terminated name at `start` is this one, reading at
    /// most `available` bytes (the name and its NUL lie within them).
    static func matches(_ start: UnsafePointer<CChar>, terminatedBefore available: Int) -> Bool {
        available > Self.bytes.count && memcmp(start, Self.bytes, Self.bytes.count) == 0 && start[Self.bytes.count] == 0
    }
}

/// One symbol table section and its string table, both checked to lie in the file.
struct SymbolTable {
    struct Symbol {
        var nameOffset: UInt32
        var info: UInt8
        var sectionIndex: UInt16
        var value: UInt64
        var size: UInt64
        var binding: UInt8 { info >> 4 }
        var type: UInt8 { info & 0xf }
        var isFunction: Bool { type == ElfLayout.symbolTypeFunction || type == ElfLayout.symbolTypeIndirectFunction }
        var isDefined: Bool { sectionIndex != 0 && value != 0 }
    }

    let entries: UnsafeRawBufferPointer
    let entrySize: Int
    let count: Int
    let strings: StringTable

    init(object: ElfObject, section: ElfObject.Section) throws(DiscoveryError) {
        let what = section.name.isEmpty ? "symbol table" : "symbol table \(section.name)"
        guard section.entrySize >= ElfLayout.symbolSize, section.entrySize <= ElfLayout.maxEntrySize else {
            throw .malformed(path: object.path, reason: "\(what) has entry size \(section.entrySize), not between 24 and \(ElfLayout.maxEntrySize)")
        }
        entries = try object.contents(of: section)
        entrySize = Int(section.entrySize)
        count = entries.count / entrySize
        guard Int(section.link) < object.sections.count, section.link != 0 else {
            throw .malformed(path: object.path, reason: "\(what) links to string table section \(section.link), which does not exist (\(object.sections.count) sections)")
        }
        strings = StringTable(bytes: try object.contents(of: object.sections[Int(section.link)]))
    }

    func symbol(at index: Int) -> Symbol {
        let base = index * entrySize
        return Symbol(
            nameOffset: entries.loadUnaligned(fromByteOffset: base, as: UInt32.self),
            info: entries[base + 4],
            sectionIndex: entries.loadUnaligned(fromByteOffset: base + 6, as: UInt16.self),
            value: entries.loadUnaligned(fromByteOffset: base + 8, as: UInt64.self),
            size: entries.loadUnaligned(fromByteOffset: base + 16, as: UInt64.self))
    }

    /// The symbol's name; nil when its offset is outside the string table.
    func name(of symbol: Symbol) -> UnsafeRawBufferPointer? {
        strings.span(at: UInt64(symbol.nameOffset))
    }
}

extension ElfObject {
    /// The link-time address of the defined, global or weak function `name`
    /// in `.dynsym` (what the dynamic linker resolves: `livetrace record -p`
    /// finds `dlopen` in libc and the attach entry in liblivetrace.so this
    /// way); nil when it is not exported.
    public func exportedFunction(named name: String) throws(DiscoveryError) -> UInt64? {
        let wanted = Array(name.utf8)
        for section in sections where section.type == ElfLayout.sectionDynamicSymbols {
            let table = try SymbolTable(object: self, section: section)
            for index in 0..<table.count {
                let symbol = table.symbol(at: index)
                guard symbol.isFunction, symbol.isDefined,
                      symbol.binding == ElfLayout.bindingGlobal || symbol.binding == ElfLayout.bindingWeak,
                      let symbolName = table.name(of: symbol), symbolName.elementsEqual(wanted) else { continue }
                return symbol.value
            }
        }
        return nil
    }
}
