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
import CElfutils
import Glibc
import Synchronization

/// A file's identity for caching what was read from it: device and inode
/// name the file, size and mtime (to the nanosecond) tell a rewritten one.
public struct FileIdentity: Hashable, Sendable {
    public var device: UInt64
    public var inode: UInt64
    public var size: Int64
    public var mtimeSeconds: Int64
    public var mtimeNanoseconds: Int64

    public init(_ status: stat) {
        device = UInt64(status.st_dev)
        inode = UInt64(status.st_ino)
        size = Int64(status.st_size)
        mtimeSeconds = Int64(status.st_mtim.tv_sec)
        mtimeNanoseconds = Int64(status.st_mtim.tv_nsec)
    }

    /// The identity of the file at `path` (following symbolic links); nil
    /// when it cannot be stat'ed.
    public static func of(path: String) -> FileIdentity? {
        var status = stat()
        return stat(path, &status) == 0 ? FileIdentity(status) : nil
    }

    /// Same file, whatever its contents: device and inode.
    public func isSameFile(as other: FileIdentity) -> Bool { device == other.device && inode == other.inode }
}

public enum ObjectCapture {
    /// A file-backed mapping line of /proc/PID/maps.
    struct Mapping {
        var start: UInt64
        var end: UInt64
        var executable: Bool
        var offset: UInt64
        var path: String
    }

    /// Every object of process `pid` with executable mappings. An object
    /// whose file is one of `withoutSymbols` (the tracer's own library) is
    /// listed with its ranges and an empty symbol list; so is, with
    /// `onlyObjectsWithSites`, an object that cannot hold an entry site
    /// (ElfSymbols.read(fd:path:withSymbols:onlyWithSites:)).
    /// `knownSiteless(path)`: the caller knows the file holds no site (site
    /// discovery's cache, LiveTraceSites' SitelessCache): no symbols either.
    public static func capture(
        pid: Int32, withoutSymbols: [FileIdentity] = [], onlyObjectsWithSites: Bool = false,
        knownSiteless: (String) -> Bool = { _ in false }
    ) throws(RecordingError) -> ObjectTable {
        let mapsPath = "/proc/\(pid)/maps"
        let text = String(decoding: try Sys.readFile(mapsPath), as: UTF8.self)
        var byPath: [String: [Mapping]] = [:]
        var order: [String] = []
        for line in text.split(separator: "\n") {
            guard let mapping = parse(line) else { continue }
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
                    path: path, buildId: nil, loadBias: 0, ranges: executable.map { [$0.start, $0.end] }, symbols: [],
                    symbolsError: "\(error)"))
                continue
            }
            // Only executable mappings give the bias: the same file may also
            // be mapped as plain data (a reader of ELF files), or loaded twice
            // (dlmopen); each load is one object.
            var rangesByBias: [UInt64: [[UInt64]]] = [:]
            var biasOrder: [UInt64] = []
            for mapping in executable {
                let bias = elf.loadBias(ofMappingAt: mapping.start, fileOffset: mapping.offset) ?? 0
                if rangesByBias[bias] == nil { biasOrder.append(bias) }
                rangesByBias[bias, default: []].append([mapping.start, mapping.end])
            }
            for bias in biasOrder {
                objects.append(TraceObject(
                    path: path, buildId: elf.buildId, loadBias: bias, ranges: rangesByBias[bias]!, symbols: elf.symbols))
            }
        }
        return ObjectTable(objects: objects)
    }

    static func parse(_ line: Substring) -> Mapping? {
        // start-end perms offset dev inode path
        let fields = line.split(separator: " ", maxSplits: 5, omittingEmptySubsequences: true)
        guard fields.count == 6 else { return nil }
        let path = fields[5].trimmingCharacters(in: " ")
        guard path.hasPrefix("/"), !path.hasSuffix(" (deleted)") else { return nil }
        let bounds = fields[0].split(separator: "-")
        guard bounds.count == 2, let start = UInt64(bounds[0], radix: 16), let end = UInt64(bounds[1], radix: 16),
              let offset = UInt64(fields[2], radix: 16) else { return nil }
        return Mapping(start: start, end: end, executable: fields[1].contains("x"), offset: offset, path: path)
    }
}

extension Substring {
    func trimmingCharacters(in set: Character) -> String {
        var s = self
        while s.first == set { s = s.dropFirst() }
        while s.last == set { s = s.dropLast() }
        return String(s)
    }
}

/// Function symbols, PT_LOAD segments and build-id of one ELF file (libelf).
public struct ElfSymbols: Sendable {
    public struct Load: Sendable { public var offset: UInt64; public var vaddr: UInt64; public var fileSize: UInt64 }
    public var symbols: [TraceSymbol]
    public var loads: [Load]
    public var buildId: String?

    static let symbolTypeMask: UInt8 = 0xf        // ELF64_ST_TYPE(st_info)
    static let symbolTypeFunction: UInt8 = 2      // STT_FUNC
    static let symbolTypeIndirect: UInt8 = 10     // STT_GNU_IFUNC
    static let sectionSymtab: UInt32 = 2          // SHT_SYMTAB
    static let sectionDynsym: UInt32 = 11         // SHT_DYNSYM
    static let sectionNote: UInt32 = 7            // SHT_NOTE
    static let programLoad: UInt32 = 1            // PT_LOAD
    static let noteGnuBuildId: UInt32 = 3         // NT_GNU_BUILD_ID

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
        let fd = try Sys.open(path, O_RDONLY)
        defer { Sys.close(fd) }
        var status = stat()
        guard fstat(fd, &status) == 0 else { return try read(fd: fd, path: path, withSymbols: true) }
        let identity = FileIdentity(status)
        let key = CacheKey(identity: identity, withSymbols: wantsSymbols(identity), onlyWithSites: onlyWithSites)
        if let hit = cache.withLock({ $0[key] }) { return hit }
        let result = try read(fd: fd, path: path, withSymbols: key.withSymbols, onlyWithSites: onlyWithSites)
        cache.withLock { $0[key] = result }
        return result
    }

    public static func read(path: String) throws(RecordingError) -> ElfSymbols {
        let fd = try Sys.open(path, O_RDONLY)
        defer { Sys.close(fd) }
        return try read(fd: fd, path: path, withSymbols: true)
    }

    /// Names of the sections that list entry sites, and of the function an
    /// entry scan looks for (LiveTraceSites' SiteFinder, steps 2 and 5).
    static let siteListSections = ["__patchable_function_entries", "__mcount_loc"]
    static let fentryName = "__fentry__"

    /// The PT_LOAD segments and build-id of the ELF file open on `fd`, and
    /// its function symbols when `withSymbols` — and then, with
    /// `onlyWithSites`, only when the file can hold an entry site at all: a
    /// site list section, or a symbol named `__fentry__` (called or
    /// defined). Without either, site discovery finds no site in it, so no
    /// event can name one of its functions.
    /// Only the sections used are read (a file's code and debug sections
    /// are never loaded).
    static func read(fd: Int32, path: String, withSymbols: Bool, onlyWithSites: Bool = false) throws(RecordingError) -> ElfSymbols {
        _ = elf_version(UInt32(EV_CURRENT))
        guard let elf = elf_begin(fd, ELF_C_READ, nil) else {
            throw .damagedTrace(file: path, reason: "libelf: \(String(cString: elf_errmsg(-1)))")
        }
        defer { elf_end(elf) }
        guard elf_kind(elf) == ELF_K_ELF else { throw .damagedTrace(file: path, reason: "not an ELF file") }

        var loads: [Load] = []
        var phnum = 0
        if elf_getphdrnum(elf, &phnum) == 0 {
            for i in 0..<phnum {
                var phdr = GElf_Phdr()
                guard gelf_getphdr(elf, Int32(i), &phdr) != nil, phdr.p_type == programLoad else { continue }
                loads.append(Load(offset: phdr.p_offset, vaddr: phdr.p_vaddr, fileSize: phdr.p_filesz))
            }
        }

        // The section headers alone first.
        var symbolTables: [(scn: OpaquePointer, header: GElf_Shdr)] = []
        var notes: [OpaquePointer] = []
        var hasSiteList = false
        var namesIndex = 0
        let haveNames = elf_getshdrstrndx(elf, &namesIndex) == 0
        var section = elf_nextscn(elf, nil)
        while let scn = section {
            defer { section = elf_nextscn(elf, scn) }
            var shdr = GElf_Shdr()
            guard gelf_getshdr(scn, &shdr) != nil else { continue }
            switch shdr.sh_type {
            case sectionSymtab, sectionDynsym: symbolTables.append((scn, shdr))
            case sectionNote: notes.append(scn)
            default:
                if haveNames, let name = elf_strptr(elf, namesIndex, Int(shdr.sh_name)),
                   siteListSections.contains(String(cString: name)) {
                    hasSiteList = true
                }
            }
        }

        var readSymbols = withSymbols
        if readSymbols && onlyWithSites && !hasSiteList {
            readSymbols = symbolTables.contains { table in
                guard let data = elf_getdata(table.scn, nil), table.header.sh_entsize > 0 else { return false }
                let count = Int(table.header.sh_size / table.header.sh_entsize)
                for i in 0..<count {
                    var sym = GElf_Sym()
                    guard gelf_getsym(data, Int32(i), &sym) != nil,
                          let name = elf_strptr(elf, Int(table.header.sh_link), Int(sym.st_name)) else { continue }
                    if strcmp(name, fentryName) == 0 { return true }
                }
                return false
            }
        }

        var symtab: [TraceSymbol] = []
        var dynsym: [TraceSymbol] = []
        for (scn, shdr) in symbolTables where readSymbols {
            guard let data = elf_getdata(scn, nil) else { continue }
            let count = shdr.sh_entsize == 0 ? 0 : Int(shdr.sh_size / shdr.sh_entsize)
            var found: [TraceSymbol] = []
            for i in 0..<count {
                var sym = GElf_Sym()
                guard gelf_getsym(data, Int32(i), &sym) != nil else { continue }
                let type = sym.st_info & symbolTypeMask
                guard type == symbolTypeFunction || type == symbolTypeIndirect, sym.st_shndx != 0, sym.st_value != 0,
                      let name = elf_strptr(elf, Int(shdr.sh_link), Int(sym.st_name)) else { continue }
                found.append(TraceSymbol(name: String(cString: name), address: sym.st_value, size: sym.st_size))
            }
            if shdr.sh_type == sectionSymtab { symtab = found } else { dynsym = found }
        }

        var buildId: String?
        for scn in notes where buildId == nil {
            guard let data = elf_getdata(scn, nil) else { continue }
            var offset = 0
            while offset < Int(data.pointee.d_size) {
                var note = GElf_Nhdr()
                var nameOffset = 0, descOffset = 0
                let next = gelf_getnote(data, offset, &note, &nameOffset, &descOffset)
                if next == 0 { break }
                if note.n_type == noteGnuBuildId, note.n_namesz == 4, let base = data.pointee.d_buf {
                    let desc = UnsafeRawBufferPointer(start: base + descOffset, count: Int(note.n_descsz))
                    buildId = desc.map { String($0, radix: 16).leftPadded2 }.joined()
                }
                offset = next
            }
        }
        // .symtab holds every function; .dynsym only the exported ones.
        var symbols = symtab.isEmpty ? dynsym : symtab
        symbols.sort { ($0.address, $0.name) < ($1.address, $1.name) }
        var unique: [TraceSymbol] = []
        unique.reserveCapacity(symbols.count)
        for s in symbols where unique.last?.address != s.address { unique.append(s) }
        return ElfSymbols(symbols: unique, loads: loads, buildId: buildId)
    }
}

extension String {
    var leftPadded2: String { count >= 2 ? self : "0" + self }
}
