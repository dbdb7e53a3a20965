// Bad input gets a clear message on stderr and a non-zero exit status from
// `livetrace list`, never a crash or a hang; a damaged site is rejected with
// its reason while the rest of the object is still listed.
import Foundation
import LiveTrace
import TestSupport
import XCTest

final class BadInputTests: XCTestCase {
    var scratch: String { Fixtures.buildDirectory.path }

    /// Runs `livetrace list` and checks it ended by exit (not a signal) with
    /// `status` and a stderr containing `message`.
    @discardableResult
    func list(_ arguments: [String], status: Int32, message: String? = nil,
              file: StaticString = #filePath, line: UInt = #line) throws -> ProcessResult {
        let result = try Fixtures.run(["/usr/bin/timeout", "-s", "KILL", "60", Fixtures.livetraceExecutable, "list"] + arguments)
        XCTAssertFalse(result.signaled, "ended by a signal", file: file, line: line)
        XCTAssertEqual(result.status, status, "stderr: \(result.stderr)", file: file, line: line)
        if let message {
            XCTAssertTrue(result.stderr.contains(message), "expected '\(message)' in: \(result.stderr)", file: file, line: line)
        }
        return result
    }

    func gccFixture(_ name: String, flags: [String] = ["-fpatchable-function-entry=5"]) throws -> String {
        try Fixtures.compile(["discovery/sites.c"], compiler: "gcc", flags: ["-O1"] + flags, output: name)
    }

    func testMissingFileDirectoryAndNonELFAreClearErrors() throws {
        try list(["\(scratch)/does-not-exist"], status: 1, message: "no such file")
        try list([scratch], status: 1, message: "is a directory")
        let text = "\(scratch)/not-elf.txt"
        try "just some text, long enough to be more than an ELF identification\n".write(toFile: text, atomically: true, encoding: .utf8)
        try list([text], status: 1, message: "not an ELF object")
        let empty = "\(scratch)/empty"
        FileManager.default.createFile(atPath: empty, contents: Data())
        try list([empty], status: 1, message: "not an ELF object")
        try list(["/dev/null"], status: 1, message: "not a regular file")
        XCTAssertThrowsError(try ElfObject(path: "\(scratch)/does-not-exist")) { error in
            XCTAssertEqual(error as? DiscoveryError, .fileNotFound(path: "\(scratch)/does-not-exist"))
        }
    }

    func testOtherObjectFilesAreRefusedWithTheReason() throws {
        let object = try Fixtures.compile(["discovery/sites.c"], compiler: "gcc", flags: ["-c", "-fpatchable-function-entry=5"], output: "sites.o")
        try list([object], status: 1, message: "relocatable object")
    }

    func testTruncatedObjectsAreMalformed() throws {
        let path = try gccFixture("truncate-base")
        let whole = try Data(contentsOf: URL(fileURLWithPath: path))
        for (length, message) in [(40, "shorter than an ELF"), (64, "extends past the end"), (whole.count / 2, "extends past the end"), (whole.count - 1, "extends past the end")] {
            let cut = "\(scratch)/truncated-\(length)"
            try whole.prefix(length).write(to: URL(fileURLWithPath: cut))
            try list([cut], status: 1, message: message)
        }
    }

    func testSectionHeadersPastTheEndAreMalformed() throws {
        var editor = try ElfEditor(path: try gccFixture("shoff-base"))
        editor.write(40, 8, UInt64(editor.data.count - 10))   // e_shoff
        let path = "\(scratch)/shoff-past-end"
        try editor.write(to: path)
        try list([path], status: 1, message: "section header table")
    }

    func testListEntryOutsideExecutableSegmentIsRejectedAndTheRestListed() throws {
        // Non-PIE: the list entries are plain addresses in place, no relocations.
        var editor = try ElfEditor(path: try gccFixture("outside-base", flags: ["-fpatchable-function-entry=5", "-fno-pie", "-no-pie"]))
        let list = try XCTUnwrap(editor.section("__patchable_function_entries"))
        let data = try XCTUnwrap(editor.section(".data"))
        editor.write(list.offset, 8, data.address)
        let path = "\(scratch)/entry-outside"
        try editor.write(to: path)
        let result = try self.list(["--json", path], status: 0)
        XCTAssertTrue(result.stdout.contains("\"outside-executable-segment\": 1"), result.stdout)
        let table = SiteTable(files: [path])
        XCTAssertEqual(table.objects.first?.summary.rejected, 1)
        XCTAssertEqual(table.objects.first?.summary.usable, CompilerSitesTests.instrumented.count)   // + main - 1
    }

    func testSiteBytesThatDoNotMatchTheKindAreRejected() throws {
        var editor = try ElfEditor(path: try gccFixture("mismatch-base"))
        let objectSites = try ElfObject(path: try gccFixture("mismatch-base")).discoverSites()
        let leaf = try XCTUnwrap(objectSites.sites.first { $0.function == "fixture_leaf" })
        let offset = try XCTUnwrap(editor.fileOffset(ofAddress: UInt64(leaf.address)))
        editor.data[offset] = 0x55   // push %rbp where the first nop was
        let path = "\(scratch)/bytes-mismatch"
        try editor.write(to: path)
        let site = try XCTUnwrap(try ElfObject(path: path).discoverSites().sites.first { $0.function == "fixture_leaf" })
        XCTAssertEqual(site.rejection?.code, "bytes-mismatch")
        XCTAssertFalse(site.isUsable)
        let result = try list([path], status: 0)
        XCTAssertTrue(result.stdout.contains("bytes-mismatch: 1"), result.stdout)
    }

    func testBogusSymbolTableIndicesAreClearErrorsOrIgnored() throws {
        let base = try gccFixture("symtab-base")
        // A string table link past the section count: a clear error.
        var editor = try ElfEditor(path: base)
        let symtab = try XCTUnwrap(editor.section(".symtab"))
        editor.write(symtab.headerOffset + 40, 4, 999)
        let badLink = "\(scratch)/symtab-bad-link"
        try editor.write(to: badLink)
        try list([badLink], status: 1, message: "string table section 999")

        // Symbol names past the string table: those symbols are left out;
        // the listed sites they named are rejected as having no function.
        editor = try ElfEditor(path: base)
        for index in 0..<(symtab.size / 24) { editor.write(symtab.offset + index * 24, 4, 0xffff_fff0) }
        let badNames = "\(scratch)/symtab-bad-names"
        try editor.write(to: badNames)
        let result = try list(["--json", badNames], status: 0)
        XCTAssertTrue(result.stdout.contains("\"no-function\": 6"), result.stdout)

        // Relocation symbol indices past the end of .dynsym: counted, not followed.
        editor = try ElfEditor(path: try gccFixture("rela-base", flags: ["-pg", "-mfentry"]))
        let rela = try XCTUnwrap(editor.section(".rela.dyn"))
        for index in 0..<(rela.size / 24) { editor.write(rela.offset + index * 24 + 12, 4, 0x7fff_ffff) }
        let badRela = "\(scratch)/rela-bad-symbols"
        try editor.write(to: badRela)
        let relaResult = try list(["--json", badRela], status: 2, message: "no patchable sites")
        XCTAssertFalse(relaResult.stdout.contains("\"ignored_relocations\": 0"), "the bad indices are counted: \(relaResult.stdout.prefix(600))")
    }

    /// Found by the mutation soak: entry sizes near 2^63 once overflowed an
    /// integer conversion (a trap); now they are a clear error.
    func testHugeTableEntrySizesAreMalformedNotACrash() throws {
        let base = try gccFixture("entsize-base", flags: ["-pg", "-mfentry"])
        for (section, message) in [(".symtab", "symbol table .symtab has entry size"), (".dynsym", "symbol table .dynsym has entry size"), (".rela.dyn", "relocation section .rela.dyn has entry size")] {
            for size in [UInt64.max, 1 << 63, 25 << 40] {
                var editor = try ElfEditor(path: base)
                let header = try XCTUnwrap(editor.section(section))
                editor.write(header.headerOffset + 56, 8, size)
                let path = "\(scratch)/entsize-\(section)-\(size)"
                try editor.write(to: path)
                try list([path], status: 1, message: message)
            }
        }
    }

    func testBinaryWithoutSitesSaysWhichFlagsMakeThem() throws {
        let plain = try Fixtures.compile(["discovery/sites.c"], compiler: "gcc", flags: ["-O1"], output: "no-sites")
        let result = try list([plain], status: 2, message: "no patchable sites")
        XCTAssertTrue(result.stderr.contains("-fpatchable-function-entry=5"), result.stderr)
        XCTAssertTrue(result.stderr.contains("-pg -mfentry"), result.stderr)
    }

    func testOneBadObjectDoesNotHideTheOthers() throws {
        let good = try gccFixture("good-beside-bad")
        let result = try list(["--json", good, "\(scratch)/missing-too"], status: 1, message: "no such file")
        let json = try JSONSerialization.jsonObject(with: Data(result.stdout.utf8)) as? [String: Any]
        XCTAssertEqual((json?["objects"] as? [Any])?.count, 1)
        XCTAssertEqual((json?["errors"] as? [Any])?.count, 1)
    }
}
