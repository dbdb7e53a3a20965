/// What discovery needs from an object's dynamic relocations:
///
/// 1. `R_X86_64_RELATIVE` relocations that land in a site list: in a PIE or a
///    shared object each 8-byte list entry is such a relocation, and its
///    addend is the entry's link-time value. (GNU ld also writes the value in
///    place; lld may write 0 there, so the addend wins when both exist.)
/// 2. The GOT slots bound to `__fentry__` (`R_X86_64_GLOB_DAT`,
///    `R_X86_64_JUMP_SLOT` or `R_X86_64_64` against that symbol): an entry
///    `call *slot(%rip)` or a call to a PLT stub that jumps through one of
///    them is a call to `__fentry__`, and no other call is.
struct DynamicRelocations {
    enum RelocationType {
        static let direct64: UInt32 = 1       // R_X86_64_64
        static let globalData: UInt32 = 6     // R_X86_64_GLOB_DAT
        static let jumpSlot: UInt32 = 7       // R_X86_64_JUMP_SLOT
        static let relative: UInt32 = 8       // R_X86_64_RELATIVE
    }

    /// Per list range, per 8-byte entry: the entry's value from its RELATIVE
    /// addend, nil when no relocation covers it. (Arrays indexed by entry, not
    /// a dictionary: a PIE with 100k sites has 100k of these.)
    private(set) var relativeValues: [[UInt64?]]
    /// Link-time addresses of GOT slots that hold `__fentry__`.
    private(set) var fentrySlots: Set<UInt64> = []
    /// Relocations naming a symbol index past the end of their symbol table.
    private(set) var bogusSymbolIndices = 0

    /// Reads every SHT_RELA section; keeps RELATIVE relocations whose target
    /// lies in one of `listRanges`.
    init(object: ElfObject, listRanges: [Range<UInt64>]) throws(DiscoveryError) {
        relativeValues = listRanges.map { [UInt64?](repeating: nil, count: Int(($0.upperBound - $0.lowerBound) / 8)) }
        for section in object.sections where section.type == ElfLayout.sectionRela {
            let what = section.name.isEmpty ? "relocation section" : "relocation section \(section.name)"
            guard section.entrySize >= ElfLayout.relaSize, section.entrySize <= ElfLayout.maxEntrySize else {
                throw .malformed(path: object.path, reason: "\(what) has entry size \(section.entrySize), not between 24 and \(ElfLayout.maxEntrySize)")
            }
            let entries = try object.contents(of: section)
            let entrySize = Int(section.entrySize)
            var symbols: SymbolTable?
            if section.link != 0, Int(section.link) < object.sections.count {
                let linked = object.sections[Int(section.link)]
                if linked.type == ElfLayout.sectionDynamicSymbols || linked.type == ElfLayout.sectionSymbolTable {
                    symbols = try SymbolTable(object: object, section: linked)
                }
            }
            for index in 0..<(entries.count / entrySize) {
                let base = index * entrySize
                let offset = entries.loadUnaligned(fromByteOffset: base, as: UInt64.self)
                let info = entries.loadUnaligned(fromByteOffset: base + 8, as: UInt64.self)
                let type = UInt32(truncatingIfNeeded: info)
                switch type {
                case RelocationType.relative:
                    for (range, rangeIndex) in zip(listRanges, listRanges.indices) where range.contains(offset) {
                        let slot = Int((offset - range.lowerBound) / 8)
                        if (offset - range.lowerBound) % 8 == 0, slot < relativeValues[rangeIndex].count {
                            relativeValues[rangeIndex][slot] = UInt64(bitPattern: entries.loadUnaligned(fromByteOffset: base + 16, as: Int64.self))
                        }
                    }
                case RelocationType.globalData, RelocationType.jumpSlot, RelocationType.direct64:
                    let symbolIndex = Int(truncatingIfNeeded: info >> 32)
                    guard let symbols, symbolIndex != 0 else { continue }
                    guard symbolIndex < symbols.count else { bogusSymbolIndices += 1; continue }
                    if let name = symbols.name(of: symbols.symbol(at: symbolIndex)), FentryName.matches(name) {
                        fentrySlots.insert(offset)
                    }
                default:
                    continue
                }
            }
        }
    }
}
