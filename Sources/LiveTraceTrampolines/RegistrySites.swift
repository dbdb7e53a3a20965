// The sites the ops registry resolves filters against, indexed once per
// loaded-objects generation (lt_loaded_objects.h), so that a change costs
// what it changes and not what the process has loaded.
//
// Built from the site provider's list with the rules the registry had
// always applied to it:
//   - a usable site is listed at its address (the last one listed wins);
//   - with full-dynamic patching, a function without a site (kind `none`,
//     with a size) is listed at its patch address — after an endbr64 read in
//     memory — where no usable site is, with its rejection cleared;
//   - an unusable site is kept apart: it is listed only once the registry
//     owns that address (the registry's own SiteState overrides it then, as
//     it overrides every listed site it has patched).
// The override by the registry's site states is applied at each look-up
// (OpsRegistry.site(at:in:)), never stored here, so the index never goes
// stale while sites are patched and unpatched.
//
// Pattern matches are taken from the listed names (raw symbol, demangled
// function, addresses), which do not change within a generation:
//   - `.address` looks up the function and patch addresses (no scan);
//   - a glob without `*`, `?`, `[` or `\` matches exactly the names equal to
//     it (fnmatch(3) without flags), found in a name table built on first use;
//   - any other glob and `.mainExecutable` scan the listed sites once per
//     generation; the result is kept (up to `memoLimit` patterns), so
//     registering the same filter again matches nothing.
// Not Sendable: a field of OpsRegistry.Engine, used only inside its Mutex.
import LiveTraceSites

final class RegistrySites {
    let generation: UInt64
    /// Whether functions without sites are listed (full-dynamic patching).
    let includesDynamic: Bool
    /// Whether the sites' `function` names are demangled (else raw symbols).
    let demangled: Bool
    /// Usable sites and listed functions without sites, by patch address.
    private(set) var listed: [UInt: Site] = [:]
    /// Unusable sites by address: listed only where the registry owns one.
    private(set) var unusable: [UInt: Site] = [:]
    private var byFunction: [UInt: [UInt]]?
    private var byName: [String: [UInt]]?
    private var memo: [FunctionPattern: Set<UInt>] = [:]
    /// How many scanned patterns are remembered per generation.
    static let memoLimit = 256

    init(generation: UInt64, list: [Site], includeDynamic: Bool, demangled: Bool = true) {
        self.generation = generation
        includesDynamic = includeDynamic
        self.demangled = demangled
        listed.reserveCapacity(list.count)
        for site in list {
            if site.isUsable { listed[site.address] = site } else { unusable[site.address] = site }
        }
        guard includeDynamic else { return }
        for var site in list where site.kind == .none && site.functionSize > 0 {
            if site.functionSize >= 4, Self.startsWithEndbr64(site.functionAddress) {
                site.address = site.functionAddress + 4
                site.hasEndbr = true
            }
            site.rejection = nil
            if listed[site.address] == nil { listed[site.address] = site }
        }
    }

    /// Whether the code at `address` begins with endbr64 (read in memory).
    private static func startsWithEndbr64(_ address: UInt) -> Bool {
        guard let code = UnsafePointer<UInt8>(bitPattern: address) else { return false }
        let endbr = X86Opcode.endbr64
        for i in 0..<endbr.count where code[i] != endbr[i] { return false }
        return true
    }

    /// The site listed at `address`, usable or not.
    func anySite(at address: UInt) -> Site? { listed[address] ?? unusable[address] }

    /// Every listed address whose site `pattern` matches (usable or not).
    func addresses(matching pattern: FunctionPattern) -> Set<UInt> {
        switch pattern {
        case let .address(a):
            var found = Set(functionIndex[a] ?? [])
            if anySite(at: a) != nil { found.insert(a) }
            return found
        case let .glob(text) where !Self.hasWildcard(text):
            return Set(nameIndex[text] ?? [])
        case .glob, .mainExecutable:
            if let known = memo[pattern] { return known }
            var found = Set<UInt>()
            for (address, site) in listed where pattern.matches(site) { found.insert(address) }
            for (address, site) in unusable where pattern.matches(site) { found.insert(address) }
            if memo.count >= Self.memoLimit { memo.removeAll(keepingCapacity: true) }
            memo[pattern] = found
            return found
        }
    }

    /// Every listed address, usable or not.
    var allAddresses: Set<UInt> { Set(listed.keys).union(unusable.keys) }

    /// fnmatch(3) treats these (and nothing else, without flags) specially.
    static func hasWildcard(_ glob: String) -> Bool {
        glob.utf8.contains { $0 == UInt8(ascii: "*") || $0 == UInt8(ascii: "?") || $0 == UInt8(ascii: "[") || $0 == UInt8(ascii: "\\") }
    }

    private var functionIndex: [UInt: [UInt]] {
        if let byFunction { return byFunction }
        var index: [UInt: [UInt]] = [:]
        for (address, site) in listed { index[site.functionAddress, default: []].append(address) }
        for (address, site) in unusable { index[site.functionAddress, default: []].append(address) }
        byFunction = index
        return index
    }

    private var nameIndex: [String: [UInt]] {
        if let byName { return byName }
        var index: [String: [UInt]] = [:]
        func add(_ address: UInt, _ site: Site) {
            index[site.function, default: []].append(address)
            if site.symbol != site.function { index[site.symbol, default: []].append(address) }
        }
        for (address, site) in listed { add(address, site) }
        for (address, site) in unusable { add(address, site) }
        byName = index
        return index
    }
}
