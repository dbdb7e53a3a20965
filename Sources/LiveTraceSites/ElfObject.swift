#if canImport(Glibc)
import Glibc
#endif

/// A read-only, bounds-checked view of one ELF64 little-endian x86-64 object
/// file (executable, PIE or shared object).
///
/// Nothing read from the file is trusted: every offset, size, count and index
/// is checked against the file size (with overflow-checked arithmetic) before
/// it is used, so a truncated or corrupted object gives `DiscoveryError`,
/// never a crash or an unbounded loop. Loops run over counts already proven
/// to fit in the file.
///
/// Layouts read (ELF64, System V gABI; offsets in bytes):
///
///     Elf64_Ehdr (64): ident[16] type@16 machine@18 phoff@32 shoff@40
///                      phentsize@54 phnum@56 shentsize@58 shnum@60 shstrndx@62
///     Elf64_Phdr (56): type@0 flags@4 offset@8 vaddr@16 filesz@32 memsz@40
///     Elf64_Shdr (64): name@0 type@4 flags@8 addr@16 offset@24 size@32 link@40 entsize@56
///     Elf64_Sym  (24): name@0 info@4 shndx@6 value@8 size@16
///     Elf64_Rela (24): offset@0 info@8 (sym = info >> 32, type = info & 0xffffffff) addend@16
public final class ElfObject: @unchecked Sendable {
    // Immutable after init; the mapping lives as long as the object.

    public enum ObjectType: String, Sendable {
        case executable = "executable"
        case pieExecutable = "pie-executable"
        case sharedObject = "shared-object"
    }

    public struct Segment: Sendable, Hashable {
        public var fileOffset: UInt64
        public var address: UInt64
        public var fileSize: UInt64
        public var memorySize: UInt64
        public var isExecutable: Bool
        public var isReadable: Bool
    }

    public struct Section: Sendable {
        public var name: String
        public var type: UInt32
        public var flags: UInt64
        public var address: UInt64
        public var fileOffset: UInt64
        public var size: UInt64
        public var link: UInt32
        public var entrySize: UInt64
    }

    public let path: String
    public let type: ObjectType
    /// PT_LOAD segments, in file order.
    public let segments: [Segment]
    public let sections: [Section]
    /// Bytes of the file, mapped read-only.
    let bytes: UnsafeRawBufferPointer
    /// Device and inode, to recognise the same file again.
    public let fileIdentity: FileIdentity

    /// Opens, maps and checks the headers of the object at `path`.
    public init(path: String) throws(DiscoveryError) {
        self.path = path
        let fd = try FileSyscalls.open(path)
        defer { FileSyscalls.close(fd) }
        let info = try FileSyscalls.fstat(fd, path: path)
        if (info.st_mode & S_IFMT) == S_IFDIR { throw .isDirectory(path: path) }
        guard (info.st_mode & S_IFMT) == S_IFREG else {
            throw .unsupported(path: path, reason: "not a regular file")
        }
        fileIdentity = FileIdentity(info)
        guard info.st_size >= ElfLayout.identSize else {
            if info.st_size >= 4 {
                // Short, but maybe still an ELF prefix: say which.
                let probe = try FileSyscalls.mapReadOnly(fd, size: Int(info.st_size), path: path)
                defer { FileSyscalls.unmap(probe) }
                if probe.load(as: UInt32.self) == ElfLayout.magic {
                    throw .malformed(path: path, reason: "file is \(info.st_size) bytes, shorter than an ELF header (64)")
                }
            }
            throw .notELF(path: path)
        }
        let mapped = try FileSyscalls.mapReadOnly(fd, size: Int(info.st_size), path: path)
        do {
            let header = try ElfHeaderReader(bytes: mapped, path: path)
            let (loadable, hasInterpreter) = try header.readSegments()
            type = header.type == .sharedObject && hasInterpreter ? .pieExecutable : header.type
            segments = loadable
            sections = try header.readSections()
            bytes = mapped
        } catch {
            FileSyscalls.unmap(mapped)
            throw error
        }
    }

    deinit { FileSyscalls.unmap(bytes) }

    public var fileSize: UInt64 { UInt64(bytes.count) }

    /// The header's `e_entry`: where a program starts (`_start`), entered
    /// with the arguments, not a return address, at the stack pointer.
    public var entryPoint: UInt64 { bytes.loadUnaligned(fromByteOffset: 24, as: UInt64.self) }

    /// The first section called `name`.
    public func section(named name: String) -> Section? {
        sections.first { $0.name == name }
    }

    /// The executable segment that holds `count` bytes at link-time `address`
    /// in the file (not in the zero-filled tail).
    func executableSegment(containing address: UInt64, count: UInt64 = 1) -> Segment? {
        segments.first { segment in
            guard segment.isExecutable, address >= segment.address else { return false }
            let offset = address - segment.address
            return offset < segment.fileSize && segment.fileSize - offset >= count
        }
    }

    /// Up to `CodeWindow.capacity` bytes at link-time `address`, from the
    /// file, limited to the executable segment that holds the address; nil
    /// when no executable segment holds it.
    func codeWindow(at address: UInt64) -> CodeWindow? {
        guard let segment = executableSegment(containing: address) else { return nil }
        let offset = address - segment.address
        let available = min(UInt64(CodeWindow.capacity), segment.fileSize - offset)
        let fileOffset = segment.fileOffset + offset
        guard fileOffset <= fileSize, fileSize - fileOffset >= available else { return nil }
        return CodeWindow(base: bytes.baseAddress! + Int(fileOffset), count: Int(available))
    }

    /// The contents of `section` (empty for SHT_NOBITS), checked to lie in the file.
    func contents(of section: Section) throws(DiscoveryError) -> UnsafeRawBufferPointer {
        if section.type == ElfLayout.sectionNoBits { return UnsafeRawBufferPointer(start: nil, count: 0) }
        guard let end = section.fileOffset.checkedAdd(section.size), end <= fileSize else {
            throw .malformed(path: path, reason: "section \(section.name.isEmpty ? "(unnamed)" : section.name) (offset \(hex(section.fileOffset)), size \(hex(section.size))) extends past the end of the file (size \(hex(fileSize)))")
        }
        return UnsafeRawBufferPointer(rebasing: bytes[Int(section.fileOffset)..<Int(end)])
    }
}

/// Constants of the ELF64 format used by the reader.
enum ElfLayout {
    static let magic: UInt32 = 0x464c_457f          // "\x7fELF" little-endian
    static let identSize = 16
    static let classELF32: UInt8 = 1
    static let classELF64: UInt8 = 2
    static let dataLittleEndian: UInt8 = 1
    static let machineX86_64: UInt16 = 62
    static let typeRelocatable: UInt16 = 1
    static let typeExecutable: UInt16 = 2
    static let typeShared: UInt16 = 3
    static let typeCore: UInt16 = 4
    static let headerSize: UInt64 = 64
    static let programHeaderSize: UInt64 = 56
    static let sectionHeaderSize: UInt64 = 64
    static let symbolSize: UInt64 = 24
    static let relaSize: UInt64 = 24
    static let segmentLoad: UInt32 = 1
    static let segmentInterpreter: UInt32 = 3
    static let segmentFlagExecute: UInt32 = 1
    static let segmentFlagRead: UInt32 = 4
    static let sectionNoBits: UInt32 = 8
    static let sectionSymbolTable: UInt32 = 2
    static let sectionDynamicSymbols: UInt32 = 11
    static let sectionNote: UInt32 = 7
    static let noteGnuBuildId: UInt32 = 3
    static let sectionRela: UInt32 = 4
    static let sectionFlagAlloc: UInt64 = 2
    static let sectionIndexExtended: UInt16 = 0xffff
    static let sectionIndexReserveLow: UInt16 = 0xff00
    static let symbolTypeFunction: UInt8 = 2
    static let symbolTypeIndirectFunction: UInt8 = 10
    static let bindingLocal: UInt8 = 0
    static let bindingGlobal: UInt8 = 1
    static let bindingWeak: UInt8 = 2
    /// Largest table entry size accepted: real ones are 24 (symbols,
    /// relocations); anything near this is corruption, and bounding it keeps
    /// index arithmetic far from overflow.
    static let maxEntrySize: UInt64 = 4096
    /// Limit on the number of program headers accepted (the kernel's own is 64 KiB of headers).
    static let maxProgramHeaders: UInt64 = 65_535
}

/// Reads and checks the file header, the program headers and the section headers.
private struct ElfHeaderReader {
    let bytes: UnsafeRawBufferPointer
    let path: String
    let type: ElfObject.ObjectType
    let phoff: UInt64, phentsize: UInt64, phnum: UInt64
    let shoff: UInt64, shentsize: UInt64, shnum: UInt64, shstrndx: UInt64

    var fileSize: UInt64 { UInt64(bytes.count) }

    init(bytes: UnsafeRawBufferPointer, path: String) throws(DiscoveryError) {
        self.bytes = bytes
        self.path = path
        guard bytes.load(as: UInt32.self) == ElfLayout.magic else { throw .notELF(path: path) }
        let elfClass = bytes[4], data = bytes[5]
        guard elfClass == ElfLayout.classELF64 else {
            throw .unsupported(path: path, reason: elfClass == ElfLayout.classELF32 ? "32-bit (ELFCLASS32) object; LiveTrace patches x86-64 only" : "unknown ELF class \(elfClass)")
        }
        guard data == ElfLayout.dataLittleEndian else {
            throw .unsupported(path: path, reason: "big-endian or unknown data encoding \(data)")
        }
        guard UInt64(bytes.count) >= ElfLayout.headerSize else {
            throw .malformed(path: path, reason: "file is \(bytes.count) bytes, shorter than an ELF64 header (64)")
        }
        let machine = bytes.loadUnaligned(fromByteOffset: 18, as: UInt16.self)
        guard machine == ElfLayout.machineX86_64 else {
            throw .unsupported(path: path, reason: "machine \(machine) is not x86-64 (62)")
        }
        let rawType = bytes.loadUnaligned(fromByteOffset: 16, as: UInt16.self)
        phoff = bytes.loadUnaligned(fromByteOffset: 32, as: UInt64.self)
        shoff = bytes.loadUnaligned(fromByteOffset: 40, as: UInt64.self)
        phentsize = UInt64(bytes.loadUnaligned(fromByteOffset: 54, as: UInt16.self))
        phnum = UInt64(bytes.loadUnaligned(fromByteOffset: 56, as: UInt16.self))
        shentsize = UInt64(bytes.loadUnaligned(fromByteOffset: 58, as: UInt16.self))
        var sectionCount = UInt64(bytes.loadUnaligned(fromByteOffset: 60, as: UInt16.self))
        var stringIndex = UInt64(bytes.loadUnaligned(fromByteOffset: 62, as: UInt16.self))
        switch rawType {
        case ElfLayout.typeExecutable: type = .executable
        case ElfLayout.typeShared:
            // A PIE executable is ET_DYN with an interpreter; a library has none.
            type = .sharedObject
        case ElfLayout.typeRelocatable:
            throw .unsupported(path: path, reason: "relocatable object (.o): link it into an executable or shared object first")
        case ElfLayout.typeCore:
            throw .unsupported(path: path, reason: "core file")
        default:
            throw .unsupported(path: path, reason: "unknown object type \(rawType)")
        }
        // Extended numbering (gABI): section 0 holds the real count and string index.
        if shoff != 0, sectionCount == 0 || stringIndex == UInt64(ElfLayout.sectionIndexExtended) {
            guard shentsize >= ElfLayout.sectionHeaderSize, let end = shoff.checkedAdd(ElfLayout.sectionHeaderSize), end <= UInt64(bytes.count) else {
                throw .malformed(path: path, reason: "section header table at offset \(hex(shoff)) extends past the end of the file (size \(hex(UInt64(bytes.count))))")
            }
            if sectionCount == 0 { sectionCount = bytes.loadUnaligned(fromByteOffset: Int(shoff) + 32, as: UInt64.self) }
            if stringIndex == UInt64(ElfLayout.sectionIndexExtended) {
                stringIndex = UInt64(bytes.loadUnaligned(fromByteOffset: Int(shoff) + 40, as: UInt32.self))
            }
        }
        shnum = sectionCount
        shstrndx = stringIndex
    }

    /// The PT_LOAD segments, and whether a PT_INTERP is present (an ET_DYN
    /// with an interpreter is a PIE executable, without one a library).
    func readSegments() throws(DiscoveryError) -> ([ElfObject.Segment], Bool) {
        guard phnum > 0 else {
            throw .malformed(path: path, reason: "no program headers: not a loadable object")
        }
        guard phentsize >= ElfLayout.programHeaderSize else {
            throw .malformed(path: path, reason: "program header entry size \(phentsize) is smaller than 56")
        }
        guard let tableSize = phnum.checkedMultiply(phentsize), let end = phoff.checkedAdd(tableSize), end <= fileSize else {
            throw .malformed(path: path, reason: "program header table (offset \(hex(phoff)), \(phnum) entries of \(phentsize) bytes) extends past the end of the file (size \(hex(fileSize)))")
        }
        var segments: [ElfObject.Segment] = []
        var hasInterpreter = false
        for index in 0..<phnum {
            let base = Int(phoff + index * phentsize)
            let type = bytes.loadUnaligned(fromByteOffset: base, as: UInt32.self)
            if type == ElfLayout.segmentInterpreter { hasInterpreter = true }
            guard type == ElfLayout.segmentLoad else { continue }
            let flags = bytes.loadUnaligned(fromByteOffset: base + 4, as: UInt32.self)
            let segment = ElfObject.Segment(
                fileOffset: bytes.loadUnaligned(fromByteOffset: base + 8, as: UInt64.self),
                address: bytes.loadUnaligned(fromByteOffset: base + 16, as: UInt64.self),
                fileSize: bytes.loadUnaligned(fromByteOffset: base + 32, as: UInt64.self),
                memorySize: bytes.loadUnaligned(fromByteOffset: base + 40, as: UInt64.self),
                isExecutable: flags & ElfLayout.segmentFlagExecute != 0,
                isReadable: flags & ElfLayout.segmentFlagRead != 0)
            guard let end = segment.fileOffset.checkedAdd(segment.fileSize), end <= fileSize else {
                throw .malformed(path: path, reason: "loadable segment \(index) (offset \(hex(segment.fileOffset)), size \(hex(segment.fileSize))) extends past the end of the file (size \(hex(fileSize)))")
            }
            guard segment.address.checkedAdd(segment.memorySize) != nil, segment.fileSize <= segment.memorySize else {
                throw .malformed(path: path, reason: "loadable segment \(index) has an impossible address range (address \(hex(segment.address)), file size \(hex(segment.fileSize)), memory size \(hex(segment.memorySize)))")
            }
            segments.append(segment)
        }
        guard segments.contains(where: \.isExecutable) else {
            throw .malformed(path: path, reason: "no executable loadable segment")
        }
        return (segments, hasInterpreter)
    }

    func readSections() throws(DiscoveryError) -> [ElfObject.Section] {
        guard shoff != 0, shnum > 0 else {
            throw .malformed(path: path, reason: "no section headers (stripped with sstrip?): the site lists and symbol tables are found through them")
        }
        guard shentsize >= ElfLayout.sectionHeaderSize else {
            throw .malformed(path: path, reason: "section header entry size \(shentsize) is smaller than 64")
        }
        guard let tableSize = shnum.checkedMultiply(shentsize), let end = shoff.checkedAdd(tableSize), end <= fileSize else {
            throw .malformed(path: path, reason: "section header table (offset \(hex(shoff)), \(shnum) entries of \(shentsize) bytes) extends past the end of the file (size \(hex(fileSize)))")
        }
        guard shstrndx < shnum else {
            throw .malformed(path: path, reason: "section name table index \(shstrndx) is not below the section count \(shnum)")
        }
        var raw: [(nameOffset: UInt32, section: ElfObject.Section)] = []
        raw.reserveCapacity(Int(shnum))
        for index in 0..<shnum {
            let base = Int(shoff + index * shentsize)
            raw.append((
                bytes.loadUnaligned(fromByteOffset: base, as: UInt32.self),
                ElfObject.Section(
                    name: "",
                    type: bytes.loadUnaligned(fromByteOffset: base + 4, as: UInt32.self),
                    flags: bytes.loadUnaligned(fromByteOffset: base + 8, as: UInt64.self),
                    address: bytes.loadUnaligned(fromByteOffset: base + 16, as: UInt64.self),
                    fileOffset: bytes.loadUnaligned(fromByteOffset: base + 24, as: UInt64.self),
                    size: bytes.loadUnaligned(fromByteOffset: base + 32, as: UInt64.self),
                    link: bytes.loadUnaligned(fromByteOffset: base + 40, as: UInt32.self),
                    entrySize: bytes.loadUnaligned(fromByteOffset: base + 56, as: UInt64.self))))
        }
        let names = raw[Int(shstrndx)].section
        guard names.type != ElfLayout.sectionNoBits, let namesEnd = names.fileOffset.checkedAdd(names.size), namesEnd <= fileSize else {
            throw .malformed(path: path, reason: "section name table (offset \(hex(names.fileOffset)), size \(hex(names.size))) extends past the end of the file (size \(hex(fileSize)))")
        }
        let nameTable = StringTable(bytes: UnsafeRawBufferPointer(rebasing: bytes[Int(names.fileOffset)..<Int(namesEnd)]))
        return raw.map { entry in
            var section = entry.section
            section.name = nameTable.string(at: UInt64(entry.nameOffset)) ?? ""
            return section
        }
    }
}

/// A string table (`.strtab`, `.dynstr`, `.shstrtab`): NUL-terminated strings
/// addressed by offset. A string that runs off the end of the table is refused.
struct StringTable {
    let bytes: UnsafeRawBufferPointer

    /// The bytes of the string at `offset`, without the NUL; nil when the
    /// offset is outside the table or the string is not terminated inside it.
    func span(at offset: UInt64) -> UnsafeRawBufferPointer? {
        guard offset < UInt64(bytes.count) else { return nil }
        let start = Int(offset)
        let rest = UnsafeRawBufferPointer(rebasing: bytes[start...])
        guard let base = rest.baseAddress, let nul = memchr(base, 0, rest.count) else { return nil }
        return UnsafeRawBufferPointer(start: base, count: base.distance(to: UnsafeRawPointer(nul)))
    }

    func string(at offset: UInt64) -> String? {
        span(at: offset).map { String(decoding: $0, as: UTF8.self) }
    }

    /// How many bytes at the table's start hold terminated strings: up to
    /// and including its last NUL (a well-formed table ends with one).
    var terminatedCount: Int {
        var count = bytes.count
        while count > 0 && bytes[count - 1] != 0 { count -= 1 }
        return count
    }

    /// The string at `offset` by its first byte, NUL-terminated inside the
    /// table, without reading it (no scan for its end): nil when the
    /// offset is at or past `terminatedCount` (given, computed once per table).
    func start(at offset: UInt64, terminatedCount: Int) -> UnsafePointer<CChar>? {
        guard offset < UInt64(terminatedCount) else { return nil }
        return bytes.baseAddress!.advanced(by: Int(offset)).assumingMemoryBound(to: CChar.self)
    }
}

/// A few bytes of code copied out of a file or out of memory, for matching
/// against site patterns without allocating.
struct CodeWindow {
    static let capacity = 16
    private var storage: (UInt64, UInt64) = (0, 0)
    /// How many of the 16 bytes are real (the rest lie past the segment's end).
    let count: Int

    init(base: UnsafeRawPointer, count: Int) {
        precondition(count <= Self.capacity)
        self.count = count
        withUnsafeMutableBytes(of: &storage) { $0.copyMemory(from: UnsafeRawBufferPointer(start: base, count: count)) }
    }

    subscript(index: Int) -> UInt8 {
        guard index < count else { return 0 }
        return withUnsafeBytes(of: storage) { $0[index] }
    }

    /// `length` bytes from `offset`, little-endian; nil when they are not all present.
    func littleEndian(at offset: Int, length: Int) -> UInt64? {
        guard offset >= 0, length <= 8, offset + length <= count else { return nil }
        var value: UInt64 = 0
        for i in (0..<length).reversed() { value = value << 8 | UInt64(self[offset + i]) }
        return value
    }

    func bytes(_ range: Range<Int>) -> [UInt8] {
        range.filter { $0 < count }.map { self[$0] }
    }
}

func hex(_ value: UInt64) -> String { "0x" + String(value, radix: 16) }
func hex(_ value: UInt) -> String { "0x" + String(value, radix: 16) }

extension UInt64 {
    func checkedAdd(_ other: UInt64) -> UInt64? {
        let (sum, overflow) = addingReportingOverflow(other)
        return overflow ? nil : sum
    }
    func checkedMultiply(_ other: UInt64) -> UInt64? {
        let (product, overflow) = multipliedReportingOverflow(by: other)
        return overflow ? nil : product
    }
}

/// A file's identity, for caching what was read from it (discovery's site
/// tables, the siteless cache, objects.json's symbols): device and inode
/// name the file, size and modification time (to the nanosecond) tell a
/// rewritten one.
public struct FileIdentity: Hashable, Sendable {
    public var device: UInt64
    public var inode: UInt64
    public var size: Int64
    /// The modification time in nanoseconds since the epoch.
    public var modificationNanoseconds: Int64

    public init(_ status: stat) {
        device = UInt64(status.st_dev)
        inode = UInt64(status.st_ino)
        size = Int64(status.st_size)
        modificationNanoseconds = Int64(status.st_mtim.tv_sec) &* 1_000_000_000 &+ Int64(status.st_mtim.tv_nsec)
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
