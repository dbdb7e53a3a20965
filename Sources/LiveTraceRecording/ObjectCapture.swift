// Captures the memory map of a process and the function symbols and
// build-id of every executable object in it, for objects.json.
//
// Load bias of an object: take an executable mapping of it (start S, file
// offset O) and the PT_LOAD segment whose page-aligned file range holds O;
// then
//   bias = S - (pageDown(p_vaddr) + O - pageDown(p_offset))
// and a run-time address A lies at link-time address A - bias.
//
// Cost: a capture reads /proc/PID/maps and fstat's each executable object;
// the symbols of a file are read once per process (ElfSymbols.cached, keyed
// by device, inode, size and mtime), so capturing again at exit costs only
// the map. The tracer's own library is listed without symbols: none of its
// functions is ever traced, and its 46,000 symbols (the Swift runtime is
// linked in) were most of objects.json and of the capture's time. For
// `livetrace record`, so is every object that cannot hold an entry site (no
// site list, no `__fentry__`): no event can name its functions.
import LiveTraceSites
import Glibc
import Synchronization

public enum ObjectCapture {
    /// Every object of process `pid` with executable mappings. An object
    /// whose file is one of `withoutSymbols` (the tracer's own library) is
    /// listed with its ranges and an empty symbol list; so is, with
    /// `onlyObjectsWithSites`, an object that cannot hold an entry site
    /// (ElfSymbols.read(path:withSymbols:onlyWithSites:)).
    /// `knownSiteless(path)`: the caller knows the file holds no site (site
    /// discovery's cache, LiveTraceSites' SitelessCache): no symbols either.
    /// `earlierMap`: the process's map read before, used when its map can
    /// no longer be read or is empty (it exited meanwhile; a zombie's map
    /// is empty): the files are still there to name its addresses.
    public static func capture(
        pid: Int32, withoutSymbols: [FileIdentity] = [], onlyObjectsWithSites: Bool = false,
        earlierMap: [ProcessMapping]? = nil, knownSiteless: (String) -> Bool = { _ in false }
    ) throws(RecordingError) -> ObjectTable {
        let mapsPath = "/proc/\(pid)/maps"
        var maps: [ProcessMapping]
        do throws(RecordingError) {
            maps = ProcessMaps.parse(try Sys.readFile(mapsPath))
        } catch {
            guard let earlierMap else { throw error }
            maps = earlierMap
        }
        if maps.isEmpty, let earlierMap { maps = earlierMap }
        var byPath: [String: [ProcessMapping]] = [:]
        var order: [String] = []
        for mapping in maps where mapping.isFile {
            if byPath[mapping.path] == nil { order.append(mapping.path) }
            byPath[mapping.path, default: []].append(mapping)
        }
        var objects: [TraceObject] = []
        for path in order {
            let executable = byPath[path]!.filter(\.executable)
            guard !executable.isEmpty else { continue }
            let elf: ElfSymbols
            do throws(RecordingError) {
                let siteless = onlyObjectsWithSites && knownSiteless(path)
                elf = try ElfSymbols.cached(path: path, onlyWithSites: onlyObjectsWithSites) { identity in
                    !siteless && !withoutSymbols.contains { $0.isSameFile(as: identity) }
                }
            } catch {
                // Said in objects.json, not dropped: its addresses stay hex.
                objects.append(TraceObject(
                    path: path, buildId: nil, loadBias: 0, ranges: executable.map { [UInt64($0.start), UInt64($0.end)] }, symbols: [],
                    symbolsError: "\(error)"))
                continue
            }
            // Only executable mappings give the bias: the same file may also
            // be mapped as plain data (a reader of ELF files), or loaded twice
            // (dlmopen); each load is one object.
            var rangesByBias: [UInt64: [[UInt64]]] = [:]
            var biasOrder: [UInt64] = []
            for mapping in executable {
                let bias = elf.loadBias(ofMappingAt: UInt64(mapping.start), fileOffset: mapping.offset) ?? 0
                if rangesByBias[bias] == nil { biasOrder.append(bias) }
                rangesByBias[bias, default: []].append([UInt64(mapping.start), UInt64(mapping.end)])
            }
            for bias in biasOrder {
                objects.append(TraceObject(
                    path: path, buildId: elf.buildId, loadBias: bias, ranges: rangesByBias[bias]!, symbols: elf.symbols))
            }
        }
        return ObjectTable(objects: objects)
    }
}

/// Function symbols, PT_LOAD segments and build-id of one ELF file.
public struct ElfSymbols: Sendable {
    public struct Load: Sendable { public var offset: UInt64; public var vaddr: UInt64; public var fileSize: UInt64 }
    public var symbols: [TraceSymbol]
    public var loads: [Load]
    public var buildId: String?

    static let pageMask = ~UInt64(4095)

    /// The bias of the load whose mapping of file offset `fileOffset` starts
    /// at `start`; nil when no PT_LOAD covers that offset.
    public func loadBias(ofMappingAt start: UInt64, fileOffset: UInt64) -> UInt64? {
        for load in loads {
            let first = load.offset & Self.pageMask
            guard first <= fileOffset, fileOffset < load.offset + max(load.fileSize, 1) else { continue }
            return start &- ((load.vaddr & Self.pageMask) + (fileOffset - first))
        }
        return nil
    }

    private struct CacheKey: Hashable {
        var identity: FileIdentity
        var withSymbols: Bool
        var onlyWithSites: Bool
    }
    /// What was read, per file: entries are immutable once stored.
    private static let cache = Mutex<[CacheKey: ElfSymbols]>([:])

    /// `read(path:)`, once per file identity in this process. `wantsSymbols`
    /// decides from the file's identity whether its symbols are read at all.
    public static func cached(
        path: String, onlyWithSites: Bool = false, wantsSymbols: (FileIdentity) -> Bool = { _ in true }
    ) throws(RecordingError) -> ElfSymbols {
        guard let identity = FileIdentity.of(path: path) else { return try read(path: path, withSymbols: true) }
        let key = CacheKey(identity: identity, withSymbols: wantsSymbols(identity), onlyWithSites: onlyWithSites)
        if let hit = cache.withLock({ $0[key] }) { return hit }
        let result = try read(path: path, withSymbols: key.withSymbols, onlyWithSites: onlyWithSites)
        cache.withLock { $0[key] = result }
        return result
    }

    public static func read(path: String) throws(RecordingError) -> ElfSymbols {
        try read(path: path, withSymbols: true)
    }

    /// The PT_LOAD segments and build-id of the ELF file at `path`, and its
    /// function symbols when `withSymbols` — and then, with `onlyWithSites`,
    /// only when site discovery could find a site in it
    /// (`ElfObject.canHoldEntrySites`): otherwise no event can name one of
    /// its functions. The one ELF reader and symbol index of discovery
    /// (LiveTraceSites) read it, so a trace names an address as
    /// `livetrace list` does.
    static func read(path: String, withSymbols: Bool, onlyWithSites: Bool = false) throws(RecordingError) -> ElfSymbols {
        let object: ElfObject
        do { object = try ElfObject(path: path) } catch { throw .damagedTrace(file: path, reason: error.description) }
        let loads = object.segments.map { Load(offset: $0.fileOffset, vaddr: $0.address, fileSize: $0.fileSize) }
        var symbols: [TraceSymbol] = []
        if withSymbols && (!onlyWithSites || object.canHoldEntrySites) {
            do {
                symbols = try object.functionSymbols().map { TraceSymbol(name: $0.name, address: $0.address, size: $0.size) }
            } catch {
                throw .damagedTrace(file: path, reason: error.description)
            }
        }
        return ElfSymbols(symbols: symbols, loads: loads, buildId: object.buildId)
    }
}

