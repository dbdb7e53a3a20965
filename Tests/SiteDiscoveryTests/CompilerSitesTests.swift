// Sites found == exactly the functions the compiler instrumented, for every
// compiler flag set that leaves entry sites, with gcc and clang, with and without
// -fcf-protection=full, as executables and as shared libraries. The
// expectation is cross-checked against the object's own metadata (the site
// list as objdump prints it, or the entry calls objdump disassembles).
import Foundation
import LiveTrace
import TestSupport
import XCTest

final class CompilerSitesTests: XCTestCase {
    /// The fixture's functions that every flag set instruments.
    static let instrumented: Set<String> = ["fixture_leaf", "fixture_static_helper", "fixture_caller", "fixture_float", "fixture_entry"]

    struct Expectation {
        var kind: SiteKind
        var form: SiteKind
        var patchable: (total: Int, before: Int)? = nil
    }

    func testPatchableFunctionEntry5GivesNop1x5WithGccAndNop5WithClang() throws {
        try check(compiler: "gcc", flags: ["-fpatchable-function-entry=5"], list: "__patchable_function_entries",
                  expect: Expectation(kind: .nop1x5, form: .nop1x5, patchable: (5, 0)))
        try check(compiler: "clang", flags: ["-fpatchable-function-entry=5"], list: "__patchable_function_entries",
                  expect: Expectation(kind: .nop5, form: .nop5, patchable: (5, 0)))
    }

    func testPatchableFunctionEntry7Comma2PutsTheSiteAfterTheSymbol() throws {
        try check(compiler: "gcc", flags: ["-fpatchable-function-entry=7,2"], list: "__patchable_function_entries",
                  expect: Expectation(kind: .patchable, form: .nop1x5, patchable: (7, 2)))
        try check(compiler: "clang", flags: ["-fpatchable-function-entry=7,2"], list: "__patchable_function_entries",
                  expect: Expectation(kind: .patchable, form: .nop5, patchable: (7, 2)))
    }

    func testPgMfentryPIEGivesGotCallWithGccAndPltCallWithClang() throws {
        try check(compiler: "gcc", flags: ["-pg", "-mfentry"], list: nil,
                  expect: Expectation(kind: .callFentryGOT, form: .callFentryGOT))
        try check(compiler: "clang", flags: ["-pg", "-mfentry"], list: nil,
                  expect: Expectation(kind: .callFentry, form: .callFentry))
    }

    func testPgMfentryNonPIEGivesDirectCallToFentryPlt() throws {
        for compiler in ["gcc", "clang"] {
            try check(compiler: compiler, flags: ["-pg", "-mfentry", "-fno-pie", "-no-pie"], list: nil, libraries: false,
                      expect: Expectation(kind: .callFentry, form: .callFentry))
        }
    }

    func testGccNopMcountRecordMcountGivesNop5ListedInMcountLoc() throws {
        try check(compiler: "gcc", flags: ["-pg", "-mfentry", "-mnop-mcount", "-mrecord-mcount", "-fno-pie", "-no-pie"],
                  list: "__mcount_loc", libraries: false, expect: Expectation(kind: .nop5, form: .nop5))
    }

    func testGccRecordMcountPIEListsGotCallsInMcountLoc() throws {
        try check(compiler: "gcc", flags: ["-pg", "-mfentry", "-mrecord-mcount"], list: "__mcount_loc",
                  expect: Expectation(kind: .callFentryGOT, form: .callFentryGOT))
    }

    /// lld leaves 0 in the list's place and puts the value only in the
    /// R_X86_64_RELATIVE addend; with -z pack-relative-relocs (RELR) the value
    /// is in place and no RELA exists. Both must give the GNU ld result.
    func testLldAndRelrLinkedListsGiveTheSameSites() throws {
        for (linkFlags, label) in [(["-fuse-ld=lld"], "lld"), (["-fuse-ld=lld", "-Wl,-z,pack-relative-relocs"], "lld-relr")] {
            for library in [false, true] {
                var flags = ["-O1", "-fpatchable-function-entry=5"] + linkFlags
                if library { flags += ["-shared", "-fPIC", "-DFIXTURE_LIBRARY"] }
                let path = try Fixtures.compile(["discovery/sites.c"], compiler: "clang", flags: flags, output: "sites-\(label)-\(library)")
                if label == "lld", let inPlace = try ObjectMetadata.listEntries(path, section: "__patchable_function_entries") {
                    XCTAssertTrue(inPlace.allSatisfy { $0 == 0 }, "lld leaves the list zero in place: \(inPlace)")
                }
                let sites = try ElfObject(path: path).discoverSites()
                var expected = Self.instrumented
                if !library { expected.insert("main") }
                XCTAssertEqual(Set(sites.sites.map(\.function)), expected, label)
                XCTAssertTrue(sites.sites.allSatisfy { $0.isUsable && $0.kind == .nop5 }, label)
            }
        }
    }

    /// Builds the fixture with `flags` (× cf-protection × executable/library)
    /// and checks discovery against the expectation and the metadata.
    func check(compiler: String, flags: [String], list: String?, libraries: Bool = true, expect: Expectation,
               file: StaticString = #filePath, line: UInt = #line) throws {
        for cet in [false, true] {
            for library in libraries ? [false, true] : [false] {
                var allFlags = ["-O1", "-g"] + flags
                if cet { allFlags.append("-fcf-protection=full") }
                if library { allFlags += ["-shared", "-fPIC", "-DFIXTURE_LIBRARY"] }
                let label = "\(compiler) \(allFlags.joined(separator: " "))"
                let name = "sites-\(compiler)-\(abs(label.hashValue)).\(library ? "so" : "exe")"
                let path = try Fixtures.compile(["discovery/sites.c"], compiler: compiler, flags: allFlags, output: name)
                var expectedNames = Self.instrumented
                if !library { expectedNames.insert("main") }

                // The oracle: what the object's own metadata says was instrumented.
                let symbols = try ObjectMetadata.textSymbols(path)
                let fromMetadata: Set<String>
                if let list {
                    let entries = try XCTUnwrap(ObjectMetadata.listEntries(path, section: list), "\(label): no \(list)", file: file, line: line)
                    fromMetadata = ObjectMetadata.functionsNamed(byList: entries, symbols: symbols)
                } else {
                    fromMetadata = try ObjectMetadata.fentryCallers(path)
                }
                XCTAssertEqual(fromMetadata, expectedNames, "\(label): the compiler's metadata", file: file, line: line)

                // Discovery.
                let sites = try ElfObject(path: path).discoverSites(options: DiscoveryOptions(sourceLines: true))
                XCTAssertEqual(Set(sites.sites.map(\.function)), expectedNames, "\(label): functions with sites", file: file, line: line)
                XCTAssertEqual(sites.sites.count, expectedNames.count, "\(label): one site per function", file: file, line: line)
                XCTAssertTrue(sites.functionsWithoutSites.contains { $0.function == "not_instrumented" && $0.kind == .none },
                              "\(label): not_instrumented is a function without site", file: file, line: line)
                for site in sites.sites {
                    let where_ = "\(label): \(site.function)"
                    XCTAssertNil(site.rejection, where_, file: file, line: line)
                    XCTAssertEqual(site.kind, expect.kind, where_, file: file, line: line)
                    XCTAssertEqual(site.form, expect.form, where_, file: file, line: line)
                    XCTAssertEqual(site.hasEndbr, cet, where_, file: file, line: line)
                    XCTAssertEqual(symbols[UInt64(site.functionAddress)]?.contains(site.symbol), true, "\(where_): nm agrees on the address", file: file, line: line)
                    XCTAssertEqual(site.address, site.functionAddress + (cet ? 4 : 0), where_, file: file, line: line)
                    if let patchable = expect.patchable {
                        XCTAssertEqual(site.patchableTotal, patchable.total, where_, file: file, line: line)
                        XCTAssertEqual(site.patchableBefore, patchable.before, where_, file: file, line: line)
                    }
                    XCTAssertEqual(site.sourceFile.map { $0.hasSuffix("sites.c") }, true, "\(where_): source \(site.sourceFile ?? "-")", file: file, line: line)
                    XCTAssertGreaterThan(site.sourceLine ?? 0, 0, where_, file: file, line: line)
                }
                XCTAssertEqual(sites.type, library ? .sharedObject : (flags.contains("-no-pie") ? .executable : .pieExecutable), label, file: file, line: line)

                // The CLI's JSON says the same.
                let cli = try Fixtures.run([Fixtures.livetraceExecutable, "list", "--json", path])
                XCTAssertEqual(cli.status, 0, "\(label): \(cli.stderr)", file: file, line: line)
                let json = try JSONSerialization.jsonObject(with: Data(cli.stdout.utf8)) as? [String: Any]
                let object = try XCTUnwrap((json?["objects"] as? [[String: Any]])?.first, label, file: file, line: line)
                let listed = (object["sites"] as? [[String: Any]] ?? []).map {
                    "\($0["function"]!) \($0["kind"]!) \($0["address"]!) \($0["usable"]!)"
                }
                let expected = sites.sites.map { "\($0.function) \($0.kind.rawValue) 0x\(String($0.address, radix: 16)) 1" }
                XCTAssertEqual(Set(listed), Set(expected), "\(label): CLI JSON", file: file, line: line)
            }
        }
    }
}
