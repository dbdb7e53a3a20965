import CLiveTraceShims
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// Site discovery in the running process.
///
/// 1. Enumerate the loaded objects with dl_iterate_phdr: name, load bias,
///    program headers (the executable, every library, and every object
///    dlopen'd since — re-running discovery finds new ones). Only copies are
///    made inside the callback, which runs under the loader's lock.
/// 2. For each object with a file (the executable through /proc/self/exe;
///    the vDSO has none and is skipped, with a note in `failures`), find the
///    sites in the file at link-time addresses (`SiteFinder`), kept in a
///    cache keyed by device, inode, size and mtime so a second discovery
///    reads only new objects. A library the cache across processes
///    (SitelessCache, when enabled) names as siteless is not opened at all
///    (`DiscoveryCache.rememberedSiteless`); steps 3 and 4 have nothing to
///    check for it.
/// 3. Check that the file's PT_LOAD segments are the ones loaded (same
///    addresses, sizes and flags); otherwise the file on disk is not what
///    runs and the object is a failure.
/// 4. Shift by the load bias and compare, for every usable site, the bytes
///    in memory (endbr64 included) with the file's. A site whose memory
///    differs is rejected (`.differsFromFile`), unless `isOwnedByPatcher`
///    says LiveTrace itself has rewritten it. Memory is read only inside a
///    loaded, readable, executable segment of that object.
///
/// The tracer never traces itself: the shared object holding LiveTrace's own
/// code (liblivetrace.so, the LD_PRELOAD shim) is not an object of the table.
/// Nothing in it is compiled with entry sites, and its 46,000 function
/// symbols (the Swift runtime is linked in) were most of the shim's
/// discovery time at start-up. When LiveTrace is linked into the program
/// itself, the program is discovered like any other.
extension SiteTable {
    /// The sites of every object loaded in this process, at run-time addresses.
    ///
    /// - Parameter isOwnedByPatcher: run-time site addresses whose bytes the
    ///   patcher has changed (they are not compared with the file).
    public static func currentProcess(
        options: DiscoveryOptions = DiscoveryOptions(),
        isOwnedByPatcher: (UInt) -> Bool = { _ in false }
    ) throws(DiscoveryError) -> SiteTable {
        let loaded = try LoadedObject.enumerate()
        var objects: [ObjectSites] = []
        var failures: [ObjectFailure] = []
        let tracerFunction: @convention(c) (lt_loaded_object_visitor?, UnsafeMutableRawPointer?) -> Int32 = lt_iterate_loaded_objects
        let tracerCode = UInt(bitPattern: unsafeBitCast(tracerFunction, to: UnsafeRawPointer.self))
        for object in loaded where object.isMainProgram || !object.containsCode(at: tracerCode) {
            guard let path = object.filePath else {
                failures.append(ObjectFailure(path: object.name, error: .unsupported(path: object.name, reason: "no file on disk (vDSO): no sites")))
                continue
            }
            do throws(DiscoveryError) {
                if !object.isMainProgram, let remembered = DiscoveryCache.rememberedSiteless(path, options: options) {
                    objects.append(remembered.relocated(by: object.bias))
                    continue
                }
                let (elf, linkTimeSites) = try DiscoveryCache.shared.sites(of: path, options: options)
                try object.checkMatches(elf)
                var sites = linkTimeSites.relocated(by: object.bias)
                sites.path = path
                for i in sites.sites.indices where sites.sites[i].isUsable && !isOwnedByPatcher(sites.sites[i].address) {
                    sites.sites[i].rejection = object.verifyMemory(of: sites.sites[i], bias: object.bias, file: elf)
                }
                objects.append(sites)
            } catch {
                failures.append(ObjectFailure(path: object.name.isEmpty ? path : object.name, error: error))
            }
        }
        return SiteTable(objects: objects, failures: failures)
    }
}

/// One object as the dynamic loader reports it.
struct LoadedObject {
    struct LoadedSegment {
        var address: UInt64      // link-time p_vaddr
        var memorySize: UInt64
        var fileSize: UInt64
        var isExecutable: Bool
        var isReadable: Bool
    }

    /// As the loader names it: "" for the executable, a path for libraries.
    var name: String
    var bias: UInt
    var segments: [LoadedSegment]
    var isMainProgram: Bool

    /// The file to read: /proc/self/exe's target for the executable; nil for
    /// an object without a file (the vDSO).
    var filePath: String? {
        if isMainProgram { return try? FileSyscalls.readLink("/proc/self/exe") }
        return name.hasPrefix("/") ? name : nil
    }

    static func enumerate() throws(DiscoveryError) -> [LoadedObject] {
        final class Collector { var objects: [LoadedObject] = [] }
        let collector = Collector()
        _ = withExtendedLifetime(collector) {
            lt_iterate_loaded_objects({ info, context in
                guard let info, let context else { return 0 }
                let collector = Unmanaged<Collector>.fromOpaque(context).takeUnretainedValue()
                let name = info.pointee.name.map { String(cString: $0) } ?? ""
                var segments: [LoadedSegment] = []
                if let headers = info.pointee.program_headers {
                    // Elf64_Phdr (56 bytes): type@0 flags@4 vaddr@16 filesz@32 memsz@40.
                    for index in 0..<Int(info.pointee.program_header_count) {
                        let base = index * Int(ElfLayout.programHeaderSize)
                        guard headers.load(fromByteOffset: base, as: UInt32.self) == ElfLayout.segmentLoad else { continue }
                        let flags = headers.load(fromByteOffset: base + 4, as: UInt32.self)
                        segments.append(LoadedSegment(
                            address: headers.load(fromByteOffset: base + 16, as: UInt64.self),
                            memorySize: headers.load(fromByteOffset: base + 40, as: UInt64.self),
                            fileSize: headers.load(fromByteOffset: base + 32, as: UInt64.self),
                            isExecutable: flags & ElfLayout.segmentFlagExecute != 0,
                            isReadable: flags & ElfLayout.segmentFlagRead != 0))
                    }
                }
                // The first object reported is the executable (glibc's order).
                collector.objects.append(LoadedObject(
                    name: name, bias: UInt(info.pointee.load_bias), segments: segments,
                    isMainProgram: collector.objects.isEmpty))
                return 0
            }, Unmanaged.passUnretained(collector).toOpaque())
        }
        guard !collector.objects.isEmpty else {
            throw .processEnumeration(reason: "dl_iterate_phdr reported no objects")
        }
        return collector.objects
    }

    /// Whether run-time address `address` is in one of its executable segments.
    func containsCode(at address: UInt) -> Bool {
        let linkTime = UInt64(address &- bias)
        return segments.contains { $0.isExecutable && linkTime >= $0.address && linkTime - $0.address < $0.memorySize }
    }

    /// Step 3: the file's loadable segments must be the loaded ones.
    func checkMatches(_ file: ElfObject) throws(DiscoveryError) {
        let fromFile = file.segments.map { [$0.address, $0.memorySize, $0.fileSize, $0.isExecutable ? 1 : 0] }
        let fromMemory = segments.map { [$0.address, $0.memorySize, $0.fileSize, $0.isExecutable ? 1 : 0] }
        guard fromFile == fromMemory else {
            throw .unsupported(path: file.path, reason: "the file on disk is not the object loaded in this process (its loadable segments differ)")
        }
    }

    /// Step 4: compares a site's bytes in memory with the file's.
    func verifyMemory(of site: Site, bias: UInt, file: ElfObject) -> SiteRejection? {
        let prefix = site.hasEndbr ? X86.endbr64Length : 0
        let length = prefix + max(site.form.compiledLength, X86.nop5Length)
        let linkTime = UInt64(site.address &- bias) &- UInt64(prefix)
        let insideLoadedCode = segments.contains { segment in
            segment.isExecutable && segment.isReadable && linkTime >= segment.address
                && linkTime - segment.address < segment.memorySize
                && segment.memorySize - (linkTime - segment.address) >= UInt64(length)
        }
        guard insideLoadedCode, let fileWindow = file.codeWindow(at: linkTime), fileWindow.count >= length,
              let runTime = UnsafeRawPointer(bitPattern: UInt(linkTime) &+ bias) else {
            return .outsideExecutableSegment
        }
        let memoryWindow = CodeWindow(base: runTime, count: length)
        let expected = fileWindow.bytes(0..<length), found = memoryWindow.bytes(0..<length)
        return expected == found ? nil : .differsFromFile(file: expected, memory: found)
    }
}

/// Link-time discovery results per file, so that re-running discovery in the
/// live process parses only objects it has not seen. Keyed by path and file
/// identity (device, inode, size, mtime) and by the options. A file found
/// without sites is also remembered on disk for the next processes
/// (SitelessCache).
final class DiscoveryCache: Sendable {
    static let shared = DiscoveryCache()

    private struct Key: Hashable {
        var path: String
        var options: DiscoveryOptions
    }
    private struct Entry {
        var object: ElfObject
        var sites: ObjectSites
    }
    /// Guarded by the mutex; entries are immutable once stored.
    private let entries = Mutex<[Key: Entry]>([:])

    /// A library the cache across processes (SitelessCache) names as
    /// holding no site: its empty site list, from the file's status alone,
    /// without opening or parsing it (a program's start-up under the shim
    /// met libc, libm, libstdc++ and the rest this way, each an open, a
    /// mapping and a header parse). Nothing is verified against the loaded
    /// object: with no site there is nothing to patch, so a file replaced
    /// on disk since it was loaded can only leave functions untraced. nil
    /// when the cache does not name the file (or when functions without
    /// sites are asked for, which the cache does not remember).
    static func rememberedSiteless(_ path: String, options: DiscoveryOptions) -> ObjectSites? {
        guard !options.includeFunctionsWithoutSites, SitelessCache.isSiteless(path: path) else { return nil }
        return ObjectSites(
            path: path, type: .sharedObject, loadBias: 0, addressesAreRunTime: false, sites: [],
            functionsWithoutSites: [], siteSources: [], discardedListEntries: 0, hasSourceLines: false)
    }

    func sites(of path: String, options: DiscoveryOptions) throws(DiscoveryError) -> (ElfObject, ObjectSites) {
        let key = Key(path: path, options: options)
        let object = try ElfObject(path: path)
        if let cached = entries.withLock({ $0[key] }), cached.object.fileIdentity == object.fileIdentity {
            return (cached.object, cached.sites)
        }
        // Across processes, only "no site here" is remembered (SitelessCache).
        let sites: ObjectSites
        if !options.includeFunctionsWithoutSites && SitelessCache.isSiteless(path: path, identity: object.fileIdentity) {
            sites = ObjectSites(
                path: path, type: object.type, loadBias: 0, addressesAreRunTime: false, sites: [],
                functionsWithoutSites: [], siteSources: [], discardedListEntries: 0, hasSourceLines: false)
        } else {
            sites = try object.discoverSites(options: options)
            if !options.includeFunctionsWithoutSites && sites.sites.isEmpty {
                SitelessCache.recordSiteless(path: path, identity: object.fileIdentity)
            }
        }
        entries.withLock { $0[key] = Entry(object: object, sites: sites) }
        return (object, sites)
    }
}
