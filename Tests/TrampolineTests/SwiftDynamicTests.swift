// Swift code built with plain swiftc (no entry sites) traced by prologue
// relocation through Tracer.attach (OpsRegistry.includeDynamic), and through
// the C API alone (lt_include_dynamic, swiftfix_capi.c): per-function
// call counts equal the counts the library keeps itself, at -Onone and -O
// (functions marked @inline(never)); results unchanged; recursion, methods
// through the vtable, protocol existentials and `throws`. At -O a method's
// callers reach its "function signature specialization <...> of NAME"
// directly: the count of NAME is the sum over it and its specializations.
import Glibc
import LiveTrace
import TestSupport
import XCTest

final class SwiftDynamicTests: XCTestCase {
    final class Counts: @unchecked Sendable {
        let lock = NSLock()
        var bySite: [UInt: Int] = [:]
        func add(_ site: UInt) { lock.lock(); bySite[site, default: 0] += 1; lock.unlock() }
    }
    typealias Run = @convention(c) (Int) -> Int
    typealias Counter = @convention(c) (Int) -> Int

    func check(level: String, module: String) throws {
        let path = try Fixtures.compile(["relocation/swiftfix.swift"], compiler: "swiftc",
                                        flags: [level, "-emit-library", "-module-name", module], output: "lib\(module).so")
        guard let handle = dlopen(path, RTLD_NOW | RTLD_LOCAL) else {
            throw FixtureError.compileFailed(command: "dlopen \(path)", output: String(cString: dlerror()))
        }
        let run = unsafeBitCast(dlsym(handle, "swiftfix_run")!, to: Run.self)
        let counter = unsafeBitCast(dlsym(handle, "swiftfix_counter")!, to: Counter.self)
        let expected = run(50)
        let before = (0..<6).map { counter($0) }

        OpsRegistry.shared.includeDynamic = true
        defer { OpsRegistry.shared.includeDynamic = false }
        // "*" in front: a function's specializations are named "... of NAME"
        // (at -O, callers reach the signature specialization directly).
        let patterns = ["*\(module).fib(*", "*\(module).Shape.area() *", "*\(module).Animal.speak() *",
                        "*\(module).Dog.speak() *", "*\(module).Bell.loudness() *", "*\(module).checked(*"]
        // First an ops by address, which needs no names: the registry lists
        // the library's functions without demangling them (loadSites(names:)).
        // The globs after it match demangled names, so the listing is made
        // anew with them; a glob matching nothing would throw here.
        // counter(_:) itself: at -Onone the @_cdecl thunks call it in their
        // first bytes and are refused.
        let counterAddress = UInt(bitPattern: dlsym(handle, "$s\(module.utf8.count)\(module)7counteryS2iF"))
        XCTAssertNotEqual(counterAddress, 0, "\(module).counter(_:) not exported")
        let byAddress = try Tracer.attach("0x" + String(counterAddress, radix: 16)) { _ in }
        let counts = Counts()
        let traced = try Tracer.attach(patterns) { call in counts.add(call.site) }
        let functions = traced.functions
        XCTAssertEqual(run(50), expected, "\(level): the traced run's result")
        try traced.detach()
        try byAddress.detach()
        for (i, pattern) in patterns.enumerated() {
            let glob = Glob(pattern)
            let sites = functions.filter { glob.matches($0.function) }
            XCTAssertFalse(sites.isEmpty, "\(level) \(pattern)")
            let own = counter(i) - before[i]
            XCTAssertGreaterThan(own, 0)
            XCTAssertEqual(sites.map { counts.bySite[$0.address] ?? 0 }.reduce(0, +), own, "\(level) \(pattern)")
        }
        XCTAssertTrue(OpsRegistry.shared.dynamicRefusals.isEmpty, "\(OpsRegistry.shared.dynamicRefusals)")
        try OpsRegistry.shared.restoreRelocatedFunctions()
        XCTAssertEqual(run(50), expected)
    }

    func testSwiftOnoneCountsEqualTheProgramsOwn() throws { try check(level: "-Onone", module: "SwiftFixOnone") }
    func testSwiftOCountsEqualTheProgramsOwn() throws { try check(level: "-O", module: "SwiftFixO") }

    /// The same fixture through the C API: a C program dlopens it, opts in
    /// with lt_include_dynamic and registers one ops per pattern.
    func checkThroughTheCAPI(level: String, module: String) throws {
        let library = try Fixtures.compile(["relocation/swiftfix.swift"], compiler: "swiftc",
                                           flags: [level, "-emit-library", "-module-name", module], output: "lib\(module)C.so")
        let lib = try CAPITests.libraryDirectory()
        let program = try Fixtures.compile(
            ["relocation/swiftfix_capi.c"], compiler: "clang",
            flags: ["-O2", "-I", TrampolineFixtures.includeDirectory, "-L", lib, "-llivetrace", "-Wl,-rpath,\(lib)", "-ldl"],
            output: "swiftfix-capi")
        let result = try Fixtures.run([program, library, module])
        XCTAssertEqual(result.status, 0, result.stdout + result.stderr)
        print("swiftfix through the C API, \(level):\n\(result.stdout)")
        let lines = result.stdout.split(separator: "\n").map(String.init)
        XCTAssertEqual(lines.count, 7, result.stdout + result.stderr)
        for line in lines.dropLast() {
            let words = line.split(separator: " ")
            guard let seen = words.firstIndex(of: "seen").flatMap({ Int(words[$0 + 1]) }),
                  let own = words.firstIndex(of: "own").flatMap({ Int(words[$0 + 1]) }) else {
                return XCTFail("\(level): unreadable line \(line)")
            }
            XCTAssertGreaterThan(own, 0, "\(level): \(line)")
            XCTAssertEqual(seen, own, "\(level): \(line)")
        }
        let results = lines.last?.split(separator: " ") ?? []
        XCTAssertEqual(results.count, 8, result.stdout)
        if results.count == 8 {
            XCTAssertEqual(results[1], results[2], "\(level): the traced run's result")
            XCTAssertEqual(results[1], results[3], "\(level): the result after the restore")
            XCTAssertEqual(results[5], "0", "\(level): lt_restore_relocated")
            XCTAssertEqual(results[7], "0", "\(level): no call skipped")
        }
    }

    func testSwiftOnoneCountsThroughTheCAPIEqualTheProgramsOwn() throws { try checkThroughTheCAPI(level: "-Onone", module: "SwiftFixCOnone") }
    func testSwiftOCountsThroughTheCAPIEqualTheProgramsOwn() throws { try checkThroughTheCAPI(level: "-O", module: "SwiftFixCO") }
}
