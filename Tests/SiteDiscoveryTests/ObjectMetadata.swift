// The oracle of the discovery tests: what binutils (nm, objdump) say about an
// object, read independently of LiveTrace's own ELF reader.
import Foundation
import TestSupport
import XCTest

enum ObjectMetadata {
    /// Defined text symbols from `nm`: address → names.
    static func textSymbols(_ path: String) throws -> [UInt64: [String]] {
        let result = try Fixtures.run(["/usr/bin/nm", "--defined-only", path])
        var symbols: [UInt64: [String]] = [:]
        for line in result.stdout.split(separator: "\n") {
            let parts = line.split(separator: " ")
            guard parts.count == 3, parts[1] == "T" || parts[1] == "t", let address = UInt64(parts[0], radix: 16) else { continue }
            // Assembler-local labels (clang marks patchable entries with .Ltmp) are not functions.
            guard !parts[2].hasPrefix(".L") else { continue }
            symbols[address, default: []].append(String(parts[2]))
        }
        return symbols
    }

    /// The 8-byte entries of a section as stored in the file (`objdump -s`),
    /// nil when the object has no such section.
    static func listEntries(_ path: String, section: String) throws -> [UInt64]? {
        let result = try Fixtures.run(["/usr/bin/objdump", "-s", "-j", section, path])
        guard result.status == 0, result.stdout.contains("Contents of section \(section)") else { return nil }
        var bytes: [UInt8] = []
        for line in result.stdout.split(separator: "\n") where line.hasPrefix(" ") {
            // " 4010 29110000 00000000 34110000 00000000  ).......4......."
            let columns = line.split(separator: " ", omittingEmptySubsequences: true)
            for group in columns.dropFirst().prefix(4) where group.count % 2 == 0 && group.allSatisfy(\.isHexDigit) {
                var index = group.startIndex
                while index < group.endIndex {
                    let next = group.index(index, offsetBy: 2)
                    bytes.append(UInt8(group[index..<next], radix: 16)!)
                    index = next
                }
            }
        }
        return stride(from: 0, to: bytes.count - bytes.count % 8, by: 8).map { start in
            bytes[start..<start + 8].reversed().reduce(0) { $0 << 8 | UInt64($1) }
        }
    }

    /// Functions (by `objdump -d` label) whose first instruction, after an
    /// optional endbr64, is a call that objdump resolves to `__fentry__`.
    static func fentryCallers(_ path: String) throws -> Set<String> {
        let result = try Fixtures.run(["/usr/bin/objdump", "-d", "--no-show-raw-insn", path])
        var callers: Set<String> = []
        var current: String?
        var instructionsSeen = 0
        for line in result.stdout.split(separator: "\n") {
            if line.hasSuffix(">:"), let open = line.firstIndex(of: "<") {
                current = String(line[line.index(after: open)..<line.index(line.endIndex, offsetBy: -2)])
                instructionsSeen = 0
                continue
            }
            guard let function = current, line.contains(":\t") else { continue }
            let instruction = line.split(separator: "\t", omittingEmptySubsequences: true).dropFirst().joined(separator: " ")
            if instruction.hasPrefix("endbr64") { continue }
            instructionsSeen += 1
            if instructionsSeen == 1, instruction.hasPrefix("call"), instruction.contains("<__fentry__") {
                callers.insert(function)
            }
            if instructionsSeen >= 1 { current = nil }
        }
        return callers
    }

    /// The functions a site list names, mapped through `nm`: an entry at a
    /// symbol, 4 bytes after it (endbr64), or up to 64 bytes before the next
    /// symbol (`-fpatchable-function-entry=N,M`).
    static func functionsNamed(byList entries: [UInt64], symbols: [UInt64: [String]]) -> Set<String> {
        let addresses = symbols.keys.sorted()
        var names: Set<String> = []
        for entry in entries where entry != 0 {
            if let exact = symbols[entry] ?? symbols[entry - 4] { names.formUnion(exact); continue }
            if let next = addresses.first(where: { $0 > entry && $0 - entry <= 64 }) { names.formUnion(symbols[next]!) }
        }
        return names
    }
}

/// Reads and writes fields of a well-formed ELF64 file the tests built, to
/// make corrupted variants (the reader under test is never used for this).
struct ElfEditor {
    var data: [UInt8]

    init(path: String) throws { data = Array(try Data(contentsOf: URL(fileURLWithPath: path))) }

    func write(to path: String) throws { try Data(data).write(to: URL(fileURLWithPath: path)) }

    func read(_ offset: Int, _ size: Int) -> UInt64 {
        (0..<size).reversed().reduce(0) { $0 << 8 | UInt64(data[offset + $1]) }
    }

    mutating func write(_ offset: Int, _ size: Int, _ value: UInt64) {
        for i in 0..<size where offset + i < data.count { data[offset + i] = UInt8(truncatingIfNeeded: value >> (8 * UInt64(i))) }
    }

    struct SectionHeader { var index: Int; var headerOffset: Int; var name: String; var type: UInt32; var address: UInt64; var offset: Int; var size: Int; var link: Int; var entrySize: Int }

    var sectionHeaderOffset: Int { Int(read(40, 8)) }
    var sectionCount: Int { Int(read(60, 2)) }

    var sections: [SectionHeader] {
        let shoff = sectionHeaderOffset, count = sectionCount, strndx = Int(read(62, 2))
        let namesOffset = Int(read(shoff + strndx * 64 + 24, 8))
        return (0..<count).map { index in
            let base = shoff + index * 64
            let nameStart = namesOffset + Int(read(base, 4))
            let nameEnd = data[nameStart...].firstIndex(of: 0)!
            return SectionHeader(
                index: index, headerOffset: base, name: String(decoding: data[nameStart..<nameEnd], as: UTF8.self),
                type: UInt32(read(base + 4, 4)), address: read(base + 16, 8), offset: Int(read(base + 24, 8)),
                size: Int(read(base + 32, 8)), link: Int(read(base + 40, 4)), entrySize: Int(read(base + 56, 8)))
        }
    }

    func section(_ name: String) -> SectionHeader? { sections.first { $0.name == name } }

    /// File offset of a link-time address in the executable segment.
    func fileOffset(ofAddress address: UInt64) -> Int? {
        let phoff = Int(read(32, 8)), count = Int(read(56, 2))
        for index in 0..<count {
            let base = phoff + index * 56
            guard read(base, 4) == 1 else { continue }
            let offset = read(base + 8, 8), vaddr = read(base + 16, 8), filesz = read(base + 32, 8)
            if address >= vaddr && address < vaddr + filesz { return Int(offset + address - vaddr) }
        }
        return nil
    }
}
