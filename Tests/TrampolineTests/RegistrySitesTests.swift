// The registry's per-generation site index (RegistrySites.swift): each kind
// of pattern finds exactly what fnmatch(3) over every listed name finds (the
// oracle calls fnmatch directly), and a filter matching 10,000 functions of
// a real compiled object attaches to each of them, counting every call (with
// full-dynamic patching on: every function of the process is listed).
import Foundation
import Glibc
import LiveTrace
import LiveTraceSites
@testable import LiveTraceTrampolines
import TestSupport
import XCTest

final class RegistrySitesTests: XCTestCase {
    static let names: [(symbol: String, function: String)] = [
        ("foo", "foo"), ("foobar", "foobar"), ("bar", "bar"), ("f*o", "f*o"),
        ("$s3Mod6ParserC5parseyyF", "Mod.Parser.parse()"), ("$s3Mod4areaSiyF", "Mod.area()"),
        ("_ZN1a1bEv", "a::b()"), ("baz", "baz"),
    ]

    static func sites() -> [Site] {
        names.enumerated().map { i, name in
            Site(address: 0x1000 + UInt(i) * 0x10, kind: .nop5, functionAddress: 0x1000 + UInt(i) * 0x10,
                 symbol: name.symbol, function: name.function,
                 rejection: name.symbol == "baz" ? .outsideExecutableSegment : nil)
        }
    }

    func testEveryGlobFindsWhatFnmatchFindsOverEveryListedName() {
        let index = RegistrySites(generation: 1, list: Self.sites(), includeDynamic: false)
        for pattern in ["foo", "foo*", "f?o", "f\\*o", "f*o", "[fb]a*", "*.parse*", "Mod.area()", "a::b()", "_ZN1a1bEv", "baz", "nothing", "*"] {
            let expected = Set(Self.sites().filter { fnmatch(pattern, $0.symbol, 0) == 0 || fnmatch(pattern, $0.function, 0) == 0 }.map(\.address))
            XCTAssertEqual(index.addresses(matching: .glob(pattern)), expected, pattern)
            XCTAssertEqual(index.addresses(matching: .glob(pattern)), expected, "\(pattern), remembered")
        }
        XCTAssertFalse(RegistrySites.hasWildcard("Mod.area()"))
        XCTAssertTrue(RegistrySites.hasWildcard("f\\*o"))
    }

    func testAddressesFindTheFunctionAndThePatchAddressUnusableSitesStayApart() {
        var list = Self.sites()
        list[1].address += 4
        let index = RegistrySites(generation: 1, list: list, includeDynamic: false)
        XCTAssertEqual(index.addresses(matching: .address(0x1010)), [0x1014])
        XCTAssertEqual(index.addresses(matching: .address(0x1014)), [0x1014])
        XCTAssertEqual(index.addresses(matching: .address(0x1018)), [])
        let baz = 0x1000 + UInt(Self.names.count - 1) * 0x10
        XCTAssertNil(index.listed[baz], "an unusable site is not listed")
        XCTAssertNotNil(index.unusable[baz])
        XCTAssertEqual(index.allAddresses.count, Self.names.count)
    }

    /// Prints the cost of the register; speed is measured, not asserted.
    func testAFilterMatchingTenThousandFunctionsAttachesToEachAndCountsEveryCall() throws {
        let count = 10_000
        var template = Array((NSTemporaryDirectory() + "/ltreg-XXXXXX").utf8CString)
        guard let made = mkdtemp(&template) else { return XCTFail("mkdtemp: errno \(errno)") }
        let directory = String(cString: made)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        var source = "void ltreg_count(unsigned long f, unsigned long p, void *ops, void *regs) {\n"
        source += "  (void)f; (void)p; (void)regs; __atomic_fetch_add((long *)((void **)ops)[1], 1, __ATOMIC_RELAXED); }\n"
        for i in 0..<count { source += "__attribute__((noinline)) int ltreg_f\(i)(int x) { return x + \(i); }\n" }
        source += "int ltreg_call_all(void) { int s = 0;\n"
        for i in 0..<count { source += "  s += ltreg_f\(i)(1);\n" }
        source += "  return s; }\n"
        let path = directory + "/ltreg.c"
        try source.write(toFile: path, atomically: true, encoding: .utf8)
        let library = try Fixtures.compile([path], compiler: "gcc", flags: ["-O1", "-fpatchable-function-entry=5", "-shared", "-fPIC"],
                                           output: "libltfix_registry_10k.so")
        guard let handle = dlopen(library, RTLD_NOW | RTLD_LOCAL) else { return XCTFail(String(cString: dlerror())) }
        let callAll = TrampolineFixtures.symbol(handle, "ltreg_call_all", as: (@convention(c) () -> Int32).self)
        let callback = TrampolineFixtures.symbol(handle, "ltreg_count", as: OpsCallback.self)
        let expectedSum = Int32(count + count * (count - 1) / 2)
        let counter = UnsafeMutablePointer<Int>.allocate(capacity: 1)
        counter.initialize(to: 0)
        defer { counter.deallocate() }

        // With full-dynamic patching on, every function of every loaded
        // object is listed: what a change used to walk.
        OpsRegistry.shared.includeDynamic = true
        defer {
            try? OpsRegistry.shared.restoreRelocatedFunctions()
            OpsRegistry.shared.includeDynamic = false
        }
        let clock = ContinuousClock()
        // The first register of a generation builds its index; the measured one does not.
        try Tracer.attach(["ltreg_f*"], callback: callback, data: UnsafeMutableRawPointer(counter)).detach()
        let started = clock.now
        let handle10k = try Tracer.attach(["ltreg_f*"], callback: callback, data: UnsafeMutableRawPointer(counter))
        let registered = clock.now - started
        XCTAssertEqual(handle10k.functions.count, count)
        XCTAssertEqual(callAll(), expectedSum, "results unchanged while traced")
        XCTAssertEqual(counter.pointee, count, "every call counted once")
        let unregisterStarted = clock.now
        try handle10k.detach()
        let unregistered = clock.now - unregisterStarted
        XCTAssertEqual(callAll(), expectedSum)
        XCTAssertEqual(counter.pointee, count, "nothing counted once detached")
        print("registry: register matching \(count) functions (index built) in \(registered), unregister in \(unregistered)")
    }
}
