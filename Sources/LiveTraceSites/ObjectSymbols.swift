/// What recording and reports need of an object besides its sites: its
/// function symbols (the one symbol index, `FunctionIndex`, that discovery
/// uses, so `livetrace list` and a trace name an address alike), its build-id,
/// and whether site discovery could find anything in it at all.
///
/// This is the project's one ELF reader (`ElfObject`); libelf is not used.
/// Measured reason, in docs/ARCHITECTURE.md "Site discovery": reading the
/// function symbols of the toolchain's libswiftCore.so and swift-format
/// took libelf (`gelf_getsym` per entry) longer than this reader's direct
/// view of the mapped table.
public struct FunctionSymbol: Sendable, Hashable {
    public var name: String
    /// Link-time address and size.
    public var address: UInt64
    public var size: UInt64
}

extension ElfObject {
    /// The object's functions, one per address (aliases resolved as
    /// `FunctionIndex` does: binding, then `.symtab` over `.dynsym`, then
    /// the shorter name), sorted by address.
    public func functionSymbols() throws(DiscoveryError) -> [FunctionSymbol] {
        try FunctionIndex(object: self).functions.map { FunctionSymbol(name: $0.symbol, address: $0.address, size: $0.size) }
    }

    /// The GNU build-id note (NT_GNU_BUILD_ID, name "GNU") in lower-case
    /// hex, from the first SHT_NOTE section that has one.
    public var buildId: String? {
        for section in sections where section.type == ElfLayout.sectionNote {
            guard let notes = try? contents(of: section) else { continue }
            var offset = 0
            // Note layout: u32 namesz, u32 descsz, u32 type, name padded to
            // 4 bytes, desc padded to 4 bytes.
            while offset + 12 <= notes.count {
                let nameSize = Int(notes.loadUnaligned(fromByteOffset: offset, as: UInt32.self))
                let descSize = Int(notes.loadUnaligned(fromByteOffset: offset + 4, as: UInt32.self))
                let type = notes.loadUnaligned(fromByteOffset: offset + 8, as: UInt32.self)
                let nameStart = offset + 12
                let descStart = nameStart + (nameSize + 3) & ~3
                let next = descStart + (descSize + 3) & ~3
                guard nameSize <= notes.count, descSize <= notes.count, descStart + descSize <= notes.count else { break }
                if type == ElfLayout.noteGnuBuildId, nameSize == 4,
                   notes[nameStart] == 0x47, notes[nameStart + 1] == 0x4e, notes[nameStart + 2] == 0x55, notes[nameStart + 3] == 0 {
                    return notes[descStart..<descStart + descSize].map { ($0 < 16 ? "0" : "") + String($0, radix: 16) }.joined()
                }
                offset = next
            }
        }
        return nil
    }

    /// Whether site discovery can find a site here: a site list section, or
    /// a symbol named `__fentry__` (called through the PLT or GOT, or
    /// defined). Without either, no event can ever name one of its
    /// functions (SiteFinder, steps 2 and 5).
    public var canHoldEntrySites: Bool {
        if sections.contains(where: { $0.name == "__patchable_function_entries" || $0.name == "__mcount_loc" }) { return true }
        for section in sections where section.type == ElfLayout.sectionSymbolTable || section.type == ElfLayout.sectionDynamicSymbols {
            guard let table = try? SymbolTable(object: self, section: section) else { continue }
            for index in 0..<table.count {
                if let name = table.name(of: table.symbol(at: index)), FentryName.matches(name) { return true }
            }
        }
        return false
    }
}
