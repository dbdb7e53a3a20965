// Hundreds of corrupted variants of the fixtures through `livetrace list`:
// every run must end with a listing (exit 0 or 2) or a clear error (exit 1
// and a "livetrace list:" message) — never a signal, never a timeout.
// LIVETRACE_SOAK=1 runs twenty times as many; LIVETRACE_MUTATION_SEED=N
// starts from another seed (the default is fixed, so runs are reproducible).
import Foundation
import LiveTrace
import TestSupport
import XCTest

final class MutationTests: XCTestCase {
    static let interesting: [UInt64] = [0, 1, 7, 8, 0x40, 0xff, 0xffff, 0x7fff_ffff, 0xffff_ffff, 0x8000_0000_0000_0000, UInt64.max, UInt64.max - 7]

    func testCorruptedObjectsNeverCrashOrHangTheLister() throws {
        let soak = ProcessInfo.processInfo.environment["LIVETRACE_SOAK"] == "1"
        let perFixture = soak ? 2000 : 100
        let seedBase = ProcessInfo.processInfo.environment["LIVETRACE_MUTATION_SEED"].flatMap { UInt64($0) } ?? 0x5eed_0000
        let fixtures: [(String, [String], String)] = [
            ("gcc", ["-O1", "-g", "-fpatchable-function-entry=5"], "mut-gcc-patch.exe"),
            ("clang", ["-O1", "-g", "-pg", "-mfentry", "-fcf-protection=full"], "mut-clang-pg.exe"),
            ("gcc", ["-O1", "-g", "-pg", "-mfentry", "-shared", "-fPIC", "-DFIXTURE_LIBRARY"], "mut-gcc-pg.so"),
            ("gcc", ["-O1", "-fpatchable-function-entry=7,2", "-fcf-protection=full", "-fno-pie", "-no-pie"], "mut-gcc-72.exe"),
            ("gcc", ["-O1", "-g", "-pg", "-mfentry", "-mnop-mcount", "-mrecord-mcount", "-fno-pie", "-no-pie"], "mut-gcc-nopmcount.exe"),
        ]
        var outcomes: [String: Int] = [:]
        var failures: [String] = []
        let directory = Fixtures.buildDirectory.appendingPathComponent("mutants").path
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        for (fixtureIndex, (compiler, flags, name)) in fixtures.enumerated() {
            let base = try Fixtures.compile(["discovery/sites.c"], compiler: compiler, flags: flags, output: name)
            let original = try ElfEditor(path: base)
            let seed = seedBase &+ UInt64(fixtureIndex)
            var random = SplitMix64(state: seed)
            for variant in 0..<perFixture {
                var editor = original
                let description = Self.mutate(&editor, &random)
                let path = "\(directory)/\(name)-\(variant)"
                try editor.write(to: path)
                let result = try Fixtures.run(["/usr/bin/timeout", "-s", "KILL", "20", Fixtures.livetraceExecutable, "list", path])
                let outcome: String
                switch (result.signaled, result.status) {
                case (false, 0): outcome = "listed"
                case (false, 2): outcome = "listed, no sites"
                case (false, 1) where result.stderr.hasPrefix("livetrace list: "):
                    let message = result.stderr.dropFirst("livetrace list: \(path): ".count)
                    outcome = "error: " + String(message.prefix { $0 != ":" && $0 != "\n" })
                default:
                    outcome = "FAILED"
                    failures.append("\(path) (seed \(seed), variant \(variant), \(description)): status \(result.status) signaled \(result.signaled): \(result.stderr.prefix(300))")
                }
                outcomes[outcome, default: 0] += 1
                if outcome != "FAILED" { try? FileManager.default.removeItem(atPath: path) }
            }
        }
        let total = outcomes.values.reduce(0, +)
        print("mutation outcomes over \(total) variants:")
        for (outcome, count) in outcomes.sorted(by: { $0.value > $1.value }) { print("  \(count)\t\(outcome)") }
        XCTAssertGreaterThanOrEqual(total, 500)
        XCTAssertTrue(failures.isEmpty, failures.prefix(10).joined(separator: "\n"))
    }

    /// Applies one random corruption; returns what it did.
    static func mutate(_ editor: inout ElfEditor, _ random: inout SplitMix64) -> String {
        let sections = editor.sections
        func value() -> UInt64 {
            Bool.random(using: &random) ? interesting.randomElement(using: &random)! : random.next() >> UInt64.random(in: 0..<64, using: &random)
        }
        switch Int.random(in: 0..<9, using: &random) {
        case 0:
            let length = Int.random(in: 0..<editor.data.count, using: &random)
            editor.data.removeLast(editor.data.count - length)
            return "truncated to \(length)"
        case 1:
            let count = Int.random(in: 1...16, using: &random)
            for _ in 0..<count { editor.data[Int.random(in: 0..<editor.data.count, using: &random)] = UInt8.random(in: 0...255, using: &random) }
            return "\(count) random bytes"
        case 2:
            // ELF header fields: (offset, size).
            let fields = [(4, 1), (5, 1), (16, 2), (18, 2), (32, 8), (40, 8), (54, 2), (56, 2), (58, 2), (60, 2), (62, 2)]
            let (offset, size) = fields.randomElement(using: &random)!
            editor.write(offset, size, value())
            return "header field @\(offset)"
        case 3, 4:
            // A section header field: name, type, flags, addr, offset, size, link, entsize.
            let section = sections.randomElement(using: &random)!
            let fields = [(0, 4), (4, 4), (8, 8), (16, 8), (24, 8), (32, 8), (40, 4), (56, 8)]
            let (offset, size) = fields.randomElement(using: &random)!
            editor.write(section.headerOffset + offset, size, value())
            return "section \(section.name) field @\(offset)"
        case 5:
            // A symbol of .symtab or .dynsym: name, info, shndx, value, size.
            let tables = sections.filter { $0.type == 2 || $0.type == 11 }
            guard let table = tables.randomElement(using: &random), table.size >= 24 else { return "no symbol table" }
            let index = Int.random(in: 0..<(table.size / 24), using: &random)
            let fields = [(0, 4), (4, 1), (6, 2), (8, 8), (16, 8)]
            let (offset, size) = fields.randomElement(using: &random)!
            editor.write(table.offset + index * 24 + offset, size, value())
            return "symbol \(index) of \(table.name) field @\(offset)"
        case 6:
            // A site list entry or a relocation.
            let targets = sections.filter { ["__patchable_function_entries", "__mcount_loc", ".rela.dyn", ".rela.plt"].contains($0.name) && $0.size >= 8 }
            guard let target = targets.randomElement(using: &random) else { return "no list" }
            let slot = Int.random(in: 0..<(target.size / 8), using: &random)
            editor.write(target.offset + slot * 8, 8, value())
            return "\(target.name) word \(slot)"
        case 7:
            // A program header field: type, flags, offset, vaddr, filesz, memsz.
            let phoff = Int(editor.read(32, 8)), count = Int(editor.read(56, 2))
            let index = Int.random(in: 0..<max(count, 1), using: &random)
            let fields = [(0, 4), (4, 4), (8, 8), (16, 8), (32, 8), (40, 8)]
            let (offset, size) = fields.randomElement(using: &random)!
            editor.write(phoff + index * 56 + offset, size, value())
            return "program header \(index) field @\(offset)"
        default:
            // Random bytes inside a DWARF or code section.
            let targets = sections.filter { $0.name.hasPrefix(".debug") || $0.name == ".text" || $0.name == ".plt" }
            guard let target = targets.randomElement(using: &random), target.size > 0 else { return "no target" }
            for _ in 0..<Int.random(in: 1...8, using: &random) {
                editor.data[target.offset + Int.random(in: 0..<target.size, using: &random)] = UInt8.random(in: 0...255, using: &random)
            }
            return "bytes in \(target.name)"
        }
    }
}
