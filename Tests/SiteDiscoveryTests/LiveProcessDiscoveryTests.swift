// The site table of the running process: objects loaded later with dlopen
// are found when discovery runs again, at run-time addresses, with their
// bytes verified in memory.
import Foundation
import LiveTrace
import TestSupport
import XCTest

final class LiveProcessDiscoveryTests: XCTestCase {
    func testDlopenedLibraryIsFoundAtRunTimeAddresses() throws {
        for (compiler, flags, kind, endbr) in [
            ("gcc", ["-fpatchable-function-entry=5"], SiteKind.nop1x5, false),
            ("clang", ["-pg", "-mfentry", "-fcf-protection=full"], SiteKind.callFentry, true),
            ("gcc", ["-pg", "-mfentry"], SiteKind.callFentryGOT, false),
        ] {
            let path = try Fixtures.compile(["discovery/sites.c"], compiler: compiler,
                                            flags: ["-O1", "-shared", "-fPIC", "-DFIXTURE_LIBRARY"] + flags,
                                            output: "live-\(compiler)-\(kind.rawValue).so")
            let before = try SiteTable.currentProcess()
            XCTAssertFalse(before.objects.contains { $0.path == path }, "not loaded yet")
            XCTAssertFalse(before.objects.isEmpty)

            guard let handle = dlopen(path, RTLD_NOW | RTLD_LOCAL) else {
                return XCTFail("dlopen \(path): \(String(cString: dlerror()))")
            }
            defer { dlclose(handle) }
            let table = try SiteTable.currentProcess()
            let object = try XCTUnwrap(table.objects.first { $0.path == path }, "\(path) found after dlopen")
            XCTAssertTrue(object.addressesAreRunTime)
            XCTAssertNotEqual(object.loadBias, 0)
            XCTAssertEqual(Set(object.sites.map(\.function)), CompilerSitesTests.instrumented)
            for name in CompilerSitesTests.instrumented where name != "fixture_static_helper" {
                let symbol = try XCTUnwrap(dlsym(handle, name), name)
                let address = UInt(bitPattern: symbol)
                let site = try XCTUnwrap(table.site(at: address + (endbr ? 4 : 0)), "\(name) at its run-time address")
                XCTAssertEqual(site.function, name)
                XCTAssertEqual(site.functionAddress, address)
                XCTAssertEqual(site.kind, kind)
                XCTAssertTrue(site.isUsable, "\(name): \(site.rejection.map { "\($0)" } ?? "")")
                XCTAssertEqual(table.site(ofFunctionAt: address)?.address, site.address)
            }
            let matched = table.sites(matching: "fixture_*").filter { object.sites.contains($0) }
            XCTAssertEqual(Set(matched.map(\.function)), CompilerSitesTests.instrumented)
            // Only the vDSO (no file) may fail.
            for failure in table.failures {
                XCTAssertTrue(failure.error.description.contains("vDSO"), failure.error.description)
            }
        }
    }

    func testASiteWhoseMemoryDiffersFromTheFileIsRejected() throws {
        let path = try Fixtures.compile(["discovery/sites.c"], compiler: "gcc",
                                        flags: ["-O1", "-shared", "-fPIC", "-DFIXTURE_LIBRARY", "-fpatchable-function-entry=5"],
                                        output: "live-differs.so")
        guard let handle = dlopen(path, RTLD_NOW | RTLD_LOCAL) else { return XCTFail(String(cString: dlerror())) }
        defer { dlclose(handle) }
        let leaf = UInt(bitPattern: try XCTUnwrap(dlsym(handle, "fixture_leaf")))
        // Rewrite the first nop of fixture_leaf in memory through /proc/self/mem
        // (works on read-only code pages), as a foreign patcher would.
        let int3: UInt8 = 0xcc
        let fd = open("/proc/self/mem", O_RDWR)
        XCTAssertGreaterThanOrEqual(fd, 0)
        defer { close(fd) }
        var byte = int3
        XCTAssertEqual(pwrite(fd, &byte, 1, off_t(leaf)), 1)
        defer { var nop: UInt8 = 0x90; _ = pwrite(fd, &nop, 1, off_t(leaf)) }

        let table = try SiteTable.currentProcess()
        let site = try XCTUnwrap(table.site(at: leaf))
        XCTAssertFalse(site.isUsable)
        XCTAssertEqual(site.rejection?.code, "differs-from-file")
        // The patcher may say the change is its own.
        let owned = try SiteTable.currentProcess(isOwnedByPatcher: { $0 == leaf })
        XCTAssertEqual(owned.site(at: leaf)?.isUsable, true)
    }
}
