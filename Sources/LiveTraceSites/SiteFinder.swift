/// Finding the sites of one ELF object at link-time addresses, with their
/// bytes verified in the file. (The live process shifts them by the load bias
/// and verifies memory: `ProcessObjects.swift`.)
///
/// Protocol, for one object:
/// 1. Index the function symbols (`FunctionIndex`: `.symtab`, or `.dynsym`
///    when the object is stripped), sorted once.
/// 2. Read the site lists `__patchable_function_entries` and `__mcount_loc`:
///    8-byte link-time addresses; in a PIE or shared object the value of an
///    entry is the addend of its `R_X86_64_RELATIVE` relocation, falling back
///    to the bytes in place (GNU ld writes both; lld may leave 0 in place).
///    Entries that are 0 belong to functions the linker discarded: counted.
/// 3. Place each entry on its function:
///      entry == symbol                     → site at the symbol
///      entry == symbol + 4, endbr64 there  → site after endbr64
///      entry <  symbol by M ≤ 64 bytes     → -fpatchable-function-entry=N,M:
///                                            site at the symbol (+4 after endbr64)
///      anywhere else                       → rejected (not at entry / no function)
/// 4. Check the bytes at the site against the kinds the list allows
///    (`X86.entryForm`): nops for the patchable list; nop5, `call __fentry__`
///    or `call *__fentry__@GOTPCREL` for `__mcount_loc`. A call counts only
///    when its target provably is `__fentry__`.
/// 5. When the object refers to `__fentry__` at all, scan every function
///    entry (after endbr64) for such a call: clang `-pg -mfentry` and gcc
///    without `-mrecord-mcount` leave no list.
/// 6. One site per address (a list entry wins over the scan); every function
///    without a site is reported as kind `none`.
/// 7. Names demangled; source lines from DWARF when asked.
struct SiteFinder {
    let object: ElfObject
    let functions: FunctionIndex
    let relocations: DynamicRelocations
    /// The site list sections, and their address ranges (same order).
    let listSections: [ElfObject.Section]
    let listRanges: [Range<UInt64>]
    /// PLT stub address → whether it jumps through a `__fentry__` slot.
    private var pltVerdicts: [UInt64: Bool] = [:]

    static let patchableListName = "__patchable_function_entries"
    static let mcountListName = "__mcount_loc"
    static let scanSourceName = "entry scan for call __fentry__"

    enum Origin { case patchableList, mcountList, scan }

    init(object: ElfObject) throws(DiscoveryError) {
        self.object = object
        functions = try FunctionIndex(object: object)
        let lists = object.sections.filter {
            ($0.name == Self.patchableListName || $0.name == Self.mcountListName) && $0.size > 0
        }
        for list in lists {
            // In the file before anything is sized from it.
            _ = try object.contents(of: list)
            guard list.address.checkedAdd(list.size) != nil else {
                throw .malformed(path: object.path, reason: "\(list.name) at \(hex(list.address)) with size \(hex(list.size)) wraps around the address space")
            }
        }
        listSections = lists
        listRanges = lists.map { $0.address..<($0.address + $0.size) }
        relocations = try DynamicRelocations(object: object, listRanges: listRanges)
    }

    mutating func find(options: DiscoveryOptions) throws(DiscoveryError) -> ObjectSites {
        // Every candidate site, with its origin rank (list 0, scan 1) and the
        // index of its function (-1: none) in parallel arrays; deduplicated
        // by address in step 6. (Parallel arrays, because a Site is large and
        // 100k of them are copied as little as possible.)
        var sites: [Site] = []
        var ranks: [UInt8] = []
        var owners: [Int] = []
        let listedCount = listSections.reduce(0) { $0 + Int(min($1.size, object.fileSize) / 8) }
        sites.reserveCapacity(listedCount)
        ranks.reserveCapacity(listedCount)
        owners.reserveCapacity(listedCount)
        var nullEntries = 0
        var sources: [String] = []

        // Step 2: the lists.
        for (listIndex, section) in listSections.enumerated() {
            let origin: Origin = section.name == Self.patchableListName ? .patchableList : .mcountList
            guard section.size % 8 == 0 else {
                throw .malformed(path: object.path, reason: "\(section.name) has size \(section.size), not a multiple of 8 (one 8-byte address per site)")
            }
            let contents = try object.contents(of: section)
            if !sources.contains(section.name) { sources.append(section.name) }
            for index in 0..<(contents.count / 8) {
                let value = relocations.relativeValues[listIndex][index]
                    ?? contents.loadUnaligned(fromByteOffset: index * 8, as: UInt64.self)
                guard value != 0 else { nullEntries += 1; continue }
                let (site, functionIndex) = resolveListEntry(value, origin: origin)
                sites.append(site)
                ranks.append(0)
                owners.append(functionIndex ?? -1)
            }
        }

        // Step 5: the scan, only when something calls __fentry__.
        if !relocations.fentrySlots.isEmpty || functions.fentryDefinition != nil {
            sources.append(Self.scanSourceName)
            for index in functions.functions.indices {
                guard let site = scanEntry(ofFunction: index) else { continue }
                sites.append(site)
                ranks.append(1)
                owners.append(index)
            }
        }

        // Step 6: one site per address — the same site in both lists, twice
        // in one, or listed and scanned: a usable one first, then a listed one.
        // Lists are usually sorted already: then nothing moves.
        let strictlyAscending = sites.indices.dropFirst().allSatisfy { sites[$0 - 1].address < sites[$0].address }
        if !strictlyAscending {
            var order = Array(sites.indices)
            order.sort { a, b in
                if sites[a].address != sites[b].address { return sites[a].address < sites[b].address }
                if sites[a].isUsable != sites[b].isUsable { return sites[a].isUsable }
                return ranks[a] < ranks[b]
            }
            var unique: [Int] = []
            for index in order where unique.last.map({ sites[$0].address != sites[index].address }) ?? true {
                unique.append(index)
            }
            sites = unique.map { sites[$0] }
            owners = unique.map { owners[$0] }
        }
        var hasSite = [Bool](repeating: false, count: functions.functions.count)
        for owner in owners where owner >= 0 { hasSite[owner] = true }

        var withoutSites: [Site] = []
        if options.includeFunctionsWithoutSites {
            for (index, function) in functions.functions.enumerated() where !hasSite[index] {
                var site = Site(
                    address: UInt(function.address), kind: .none, functionAddress: UInt(function.address),
                    symbol: function.symbol, function: function.symbol, rejection: .noEntrySite)
                site.functionSize = Int(clamping: function.size)
                withoutSites.append(site)
            }
        }

        // Step 7: names and lines.
        if options.demangle {
            for i in sites.indices where Demangler.isMangled(sites[i].symbol) {
                sites[i].function = Demangler.demangle(sites[i].symbol)
            }
            for i in withoutSites.indices where Demangler.isMangled(withoutSites[i].symbol) {
                withoutSites[i].function = Demangler.demangle(withoutSites[i].symbol)
            }
        }
        var hasLines = false
        if options.sourceLines, let lines = SourceLines(path: object.path) {
            hasLines = lines.hasRows
            for i in sites.indices {
                if let location = lines.location(of: UInt64(sites[i].functionAddress)) {
                    sites[i].sourceFile = location.file
                    sites[i].sourceLine = location.line
                }
            }
            for i in withoutSites.indices {
                if let location = lines.location(of: UInt64(withoutSites[i].functionAddress)) {
                    withoutSites[i].sourceFile = location.file
                    withoutSites[i].sourceLine = location.line
                }
            }
        }

        return ObjectSites(
            path: object.path, type: object.type, loadBias: 0, addressesAreRunTime: false,
            sites: sites, functionsWithoutSites: withoutSites, siteSources: sources,
            discardedListEntries: nullEntries, hasSourceLines: hasLines,
            ignoredSymbols: functions.ignoredSymbols, ignoredRelocations: relocations.bogusSymbolIndices)
    }

    // MARK: Step 3 and 4: one list entry.

    private mutating func resolveListEntry(_ entry: UInt64, origin: Origin) -> (Site, Int?) {
        let listKind: SiteKind = origin == .patchableList ? .patchable : .nop5
        func rejected(_ reason: SiteRejection, at address: UInt64, function: Int?) -> (Site, Int?) {
            let f = function.map { functions.functions[$0] }
            return (Site(address: UInt(address), kind: listKind, functionAddress: UInt(f?.address ?? 0),
                         symbol: f?.symbol ?? "?", function: f?.symbol ?? "?", rejection: reason), function)
        }
        guard object.codeWindow(at: entry) != nil else {
            return rejected(.outsideExecutableSegment, at: entry, function: functions.indexOfFunction(containing: entry))
        }
        // Step 3: geometry.
        var siteAddress = entry
        var before: UInt64 = 0
        var hasEndbr = false
        let functionIndex: Int
        if let index = functions.indexOfFunction(containing: entry) {
            functionIndex = index
            let start = functions.functions[index].address
            if entry != start {
                guard entry - start == UInt64(X86.endbr64Length), let head = object.codeWindow(at: start), X86.startsWithEndbr64(head) else {
                    return rejected(.notAtFunctionEntry(offset: entry - start), at: entry, function: index)
                }
                hasEndbr = true
            }
        } else if origin == .patchableList, let index = functions.indexOfNextFunction(after: entry, within: X86.maxPatchableBefore) {
            functionIndex = index
            siteAddress = functions.functions[index].address
            before = siteAddress - entry
            if let head = object.codeWindow(at: siteAddress), X86.startsWithEndbr64(head) {
                hasEndbr = true
                siteAddress += UInt64(X86.endbr64Length)
            }
        } else {
            return rejected(.noFunction, at: entry, function: nil)
        }
        guard let window = object.codeWindow(at: siteAddress) else {
            return rejected(.outsideExecutableSegment, at: siteAddress, function: functionIndex)
        }
        // Step 4: bytes.
        let function = functions.functions[functionIndex]
        var site = Site(address: UInt(siteAddress), kind: listKind, functionAddress: UInt(function.address),
                        symbol: function.symbol, function: function.symbol, hasEndbr: hasEndbr)
        let form = X86.entryForm(window, offset: 0, address: siteAddress)
        switch origin {
        case .patchableList:
            let after: Int
            switch form {
            case .nop5: site.form = .nop5; after = X86.nop5Length
            case let .nop1(run): site.form = .nop1x5; after = run
            case let .shortNops(length):
                site.rejection = .tooFewBytes(length)
                return (site, functionIndex)
            default:
                site.rejection = .bytesMismatch(expected: "a 5-byte nop (0f 1f 44 00 xx) or five 1-byte nops (90)", found: window.bytes(0..<X86.nop5Length))
                return (site, functionIndex)
            }
            site.patchableBefore = Int(before)
            site.patchableTotal = Int(before) + after
            site.kind = before == 0 && after == X86.nop5Length ? site.form : .patchable
        case .mcountList:
            switch form {
            case .nop5: site.kind = .nop5
            case let .callRel32(target):
                site.kind = .callFentry
                if !isFentry(callTarget: target) { site.rejection = .callNotToFentry }
            case let .callRipRelative(slot):
                site.kind = .callFentryGOT
                if !relocations.fentrySlots.contains(slot) { site.rejection = .callNotToFentry }
            default:
                site.rejection = .bytesMismatch(expected: "nop5, call __fentry__ or call *__fentry__@GOTPCREL(%rip)", found: window.bytes(0..<X86.callRipRelativeLength))
            }
            site.form = site.kind
        case .scan:
            break
        }
        return (site, functionIndex)
    }

    // MARK: Step 5: one function entry.

    private mutating func scanEntry(ofFunction index: Int) -> Site? {
        let function = functions.functions[index]
        guard var window = object.codeWindow(at: function.address) else { return nil }
        var address = function.address
        let hasEndbr = X86.startsWithEndbr64(window)
        if hasEndbr {
            address += UInt64(X86.endbr64Length)
            guard let next = object.codeWindow(at: address) else { return nil }
            window = next
        }
        let kind: SiteKind
        switch X86.entryForm(window, offset: 0, address: address) {
        case let .callRel32(target) where isFentry(callTarget: target): kind = .callFentry
        case let .callRipRelative(slot) where relocations.fentrySlots.contains(slot): kind = .callFentryGOT
        default: return nil
        }
        return Site(address: UInt(address), kind: kind, functionAddress: UInt(function.address),
                    symbol: function.symbol, function: function.symbol, hasEndbr: hasEndbr)
    }

    /// A `call rel32` target is `__fentry__` when it is the object's own
    /// definition of it, or a PLT stub jumping through a `__fentry__` GOT slot.
    private mutating func isFentry(callTarget target: UInt64) -> Bool {
        if let definition = functions.fentryDefinition, definition == target { return true }
        if let verdict = pltVerdicts[target] { return verdict }
        var verdict = false
        if let window = object.codeWindow(at: target), let slot = X86.pltSlot(window, address: target) {
            verdict = relocations.fentrySlots.contains(slot)
        }
        pltVerdicts[target] = verdict
        return verdict
    }
}
