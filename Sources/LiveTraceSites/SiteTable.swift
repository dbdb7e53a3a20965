#if canImport(Glibc)
import Glibc
#endif

/// What discovery does beyond finding the sites.
public struct DiscoveryOptions: Sendable, Hashable {
    /// Look up each function's source file and line in DWARF (libdw). Costs
    /// one pass over the line tables per object; off for the live process.
    public var sourceLines: Bool
    /// Demangle Swift and C++ names into `Site.function`.
    public var demangle: Bool
    /// Also report every function that has no site (kind `none`).
    public var includeFunctionsWithoutSites: Bool

    public init(sourceLines: Bool = false, demangle: Bool = true, includeFunctionsWithoutSites: Bool = true) {
        self.sourceLines = sourceLines
        self.demangle = demangle
        self.includeFunctionsWithoutSites = includeFunctionsWithoutSites
    }
}

/// Counts for one object: found, usable, rejected by reason.
public struct SiteSummary: Sendable, Hashable {
    /// Sites found (every kind but `none`), usable or not.
    public var found = 0
    public var usable = 0
    public var rejected = 0
    /// `SiteRejection.code` → how many sites were rejected for it.
    public var rejectedByReason: [String: Int] = [:]
    /// Functions with no entry site (kind `none`).
    public var functionsWithoutSites = 0
}

/// The sites of one ELF object.
public struct ObjectSites: Sendable {
    public var path: String
    public var type: ElfObject.ObjectType
    /// Added to every link-time address to get the run-time one (0 for a file).
    public var loadBias: UInt
    /// True in the live process: addresses are where the code runs. False
    /// for a file read from disk: addresses are link-time (as in `nm`).
    public var addressesAreRunTime: Bool
    /// Sites (kind other than `none`), sorted by address.
    public var sites: [Site]
    /// Functions without a site (kind `none`, rejection `.noEntrySite`), sorted by address.
    public var functionsWithoutSites: [Site]
    /// Where sites were looked for and found: `__patchable_function_entries`,
    /// `__mcount_loc`, and the entry scan for `call __fentry__`.
    public var siteSources: [String]
    /// List entries equal to 0 (functions the linker discarded).
    public var discardedListEntries: Int
    /// DWARF line information was found and used.
    public var hasSourceLines: Bool
    /// Function symbols left out: a name outside the string table, or an
    /// address outside every executable segment.
    public var ignoredSymbols: Int = 0
    /// Relocations naming a symbol index past the end of their symbol table.
    public var ignoredRelocations: Int = 0

    public var summary: SiteSummary {
        var summary = SiteSummary()
        summary.found = sites.count
        for site in sites {
            if let rejection = site.rejection {
                summary.rejected += 1
                summary.rejectedByReason[rejection.code, default: 0] += 1
            } else {
                summary.usable += 1
            }
        }
        summary.functionsWithoutSites = functionsWithoutSites.count
        return summary
    }

    /// Shifts every address by `bias` (link-time → run-time).
    func relocated(by bias: UInt) -> ObjectSites {
        var copy = self
        copy.loadBias = bias
        copy.addressesAreRunTime = true
        for i in copy.sites.indices {
            copy.sites[i].address &+= bias
            copy.sites[i].functionAddress &+= bias
        }
        for i in copy.functionsWithoutSites.indices {
            copy.functionsWithoutSites[i].address &+= bias
            copy.functionsWithoutSites[i].functionAddress &+= bias
        }
        return copy
    }
}

/// An object that could not be read, and why.
public struct ObjectFailure: Sendable {
    public var path: String
    public var error: DiscoveryError
}

extension ElfObject {
    /// The sites of this object at link-time addresses, their bytes verified
    /// against the file.
    public func discoverSites(options: DiscoveryOptions = DiscoveryOptions()) throws(DiscoveryError) -> ObjectSites {
        var finder = try SiteFinder(object: self)
        return try finder.find(options: options)
    }
}

/// The sites of several objects: files read from disk, or every object
/// loaded in the current process (`SiteTable.currentProcess()`).
public struct SiteTable: Sendable {
    public var objects: [ObjectSites]
    /// Objects that could not be read; each is also a reason to distrust a
    /// glob that matched nothing.
    public var failures: [ObjectFailure]

    public init(objects: [ObjectSites], failures: [ObjectFailure] = []) {
        self.objects = objects
        self.failures = failures
    }

    /// Reads the files at `paths` (not running them). A file that cannot be
    /// read becomes an entry of `failures`; the others are still listed.
    public init(files paths: [String], options: DiscoveryOptions = DiscoveryOptions()) {
        var objects: [ObjectSites] = []
        var failures: [ObjectFailure] = []
        for path in paths {
            do throws(DiscoveryError) {
                objects.append(try ElfObject(path: path).discoverSites(options: options))
            } catch {
                failures.append(ObjectFailure(path: path, error: error))
            }
        }
        self.init(objects: objects, failures: failures)
    }

    /// Every site of every object, sorted by address.
    public var sites: [Site] {
        objects.flatMap(\.sites).sorted { $0.address < $1.address }
    }

    /// Every function without a site, of every object.
    public var functionsWithoutSites: [Site] {
        objects.flatMap(\.functionsWithoutSites)
    }

    /// Sites whose function (demangled) or raw symbol matches the
    /// fnmatch(3)-style `glob` (`*`, `?`, `[...]`), usable or not.
    public func sites(matching glob: String) -> [Site] {
        let matcher = Glob(glob)
        return sites.filter { matcher.matches($0.function) || matcher.matches($0.symbol) }
    }

    /// Functions without a site matching `glob`, by the same rule.
    public func functionsWithoutSites(matching glob: String) -> [Site] {
        let matcher = Glob(glob)
        return functionsWithoutSites.filter { matcher.matches($0.function) || matcher.matches($0.symbol) }
    }

    /// The site whose normal-form instruction starts at `address`.
    public func site(at address: UInt) -> Site? {
        for object in objects {
            if let index = object.sites.binarySearch(address: address) { return object.sites[index] }
        }
        return nil
    }

    /// The site of the function that starts at `functionAddress`: at most
    /// endbr64's length after it, so the search starts at the first site at
    /// or after the function.
    public func site(ofFunctionAt functionAddress: UInt) -> Site? {
        for object in objects {
            var index = object.sites.lowerBound(address: functionAddress)
            while index < object.sites.count, object.sites[index].address - functionAddress <= UInt(X86.endbr64Length) {
                if object.sites[index].functionAddress == functionAddress { return object.sites[index] }
                index += 1
            }
        }
        return nil
    }
}

extension Array where Element == Site {
    /// Index of the first site at or after `address`, in an array sorted by address.
    func lowerBound(address: UInt) -> Int {
        var low = 0, high = count
        while low < high {
            let mid = (low + high) / 2
            if self[mid].address < address { low = mid + 1 } else { high = mid }
        }
        return low
    }

    /// Index of the site at `address` in an array sorted by address.
    func binarySearch(address: UInt) -> Int? {
        let index = lowerBound(address: address)
        return index < count && self[index].address == address ? index : nil
    }
}

/// A shell-style pattern, matched with fnmatch(3) (no flags: `*` matches `/`
/// and `.` too, so `*.foo` finds the Swift method `Module.Type.foo`).
public struct Glob: Sendable {
    public let pattern: String
    public init(_ pattern: String) { self.pattern = pattern }
    public func matches(_ name: String) -> Bool { fnmatch(pattern, name, 0) == 0 }
}
