// Swift `throws` is a normal return with the error in r12: through the
// return trampoline the error must still reach the caller's catch, and the
// multi-register returns of the Swift convention (rax rdx rcx r8, xmm0-3)
// must arrive intact. The fixture gets entry sites from LLVM IR.
import Foundation
import Glibc
import LiveTrace
import TestSupport
import XCTest

final class SwiftThrowsTests: XCTestCase {
    typealias IntToInt = @convention(c) (Int) -> Int
    typealias VoidToInt = @convention(c) () -> Int

    nonisolated(unsafe) static var handle: UnsafeMutableRawPointer?

    /// swiftc -emit-ir, "patchable-function-entry"="5" on every attribute
    /// group, clang -c, swiftc -emit-library; dlopen'ed into this process.
    func library() throws -> UnsafeMutableRawPointer {
        if let handle = Self.handle { return handle }
        let dir = Fixtures.buildDirectory.appendingPathComponent("graph-swift").path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        let ir = try Fixtures.compile(
            ["graph/GraphSwift.swift"], compiler: "swiftc",
            flags: ["-Onone", "-parse-as-library", "-module-name", "GraphSwift", "-emit-ir"], output: "graph-swift/GraphSwift.ll")
        let text = try String(contentsOfFile: ir, encoding: .utf8)
        let patched = text.replacingOccurrences(
            of: #"(?m)^(attributes #[0-9]+ = \{ )"#, with: "$1\"patchable-function-entry\"=\"5\" ", options: .regularExpression)
        XCTAssertNotEqual(patched, text, "no attribute group to patch")
        let sited = dir + "/GraphSwift-sites.ll"
        try patched.write(toFile: sited, atomically: true, encoding: .utf8)
        let object = try Fixtures.compile([sited], compiler: "clang", flags: ["-c", "-O0", "-fPIC"], output: "graph-swift/GraphSwift.o")
        let library = try Fixtures.compile([object], compiler: "swiftc", flags: ["-emit-library"], output: "graph-swift/libGraphSwift.so")
        guard let handle = dlopen(library, RTLD_NOW | RTLD_GLOBAL) else {
            throw GraphFixtureError(description: "dlopen \(library): \(String(cString: dlerror()))")
        }
        // Name the events by the Swift identifier inside each mangled name.
        let symbols = try Fixtures.run(["/usr/bin/nm", "-D", "--defined-only", library]).stdout
        var names: [String: String] = [:]
        for line in symbols.split(separator: "\n") {
            guard let mangled = line.split(separator: " ").last.map(String.init), mangled.hasPrefix("$s10GraphSwift") else { continue }
            if let identifier = Self.firstIdentifier(afterModuleIn: mangled), identifier.hasPrefix("sw_") {
                names[mangled] = identifier
            }
        }
        XCTAssertEqual(Set(names.values), ["sw_check", "sw_middle", "sw_quad", "sw_quad_double", "sw_run", "sw_entry", "sw_check_returns"])
        GraphFixtures.nameFunctions(handle, names)
        Self.handle = handle
        return handle
    }

    /// "$s10GraphSwift8sw_checkyS2iKF" → "sw_check" (length-prefixed identifiers).
    static func firstIdentifier(afterModuleIn mangled: String) -> String? {
        let rest = Array(mangled.dropFirst("$s10GraphSwift".count))
        var digits = ""
        var index = 0
        while index < rest.count, rest[index].isNumber { digits.append(rest[index]); index += 1 }
        guard let length = Int(digits), index + length <= rest.count else { return nil }
        return String(rest[index..<index + length])
    }

    func testThrowingFunctionsReturnTheirErrorThroughTheTrampoline() throws {
        let entry = try GraphFixtures.symbol(try library(), "sw_entry", as: IntToInt.self)
        XCTAssertEqual([entry(1), entry(5)], [11, -5], "untraced")
        var results: [Int] = []
        let recorded = try recordGraph(["GraphSwift.sw_*"]) { results = [entry(1), entry(5)] }
        XCTAssertEqual(results, [11, -5], "the error thrown by sw_check reaches sw_run's catch")
        // sw_entry: the Swift body behind the @_cdecl thunk (which has no Swift name).
        let once = ["> sw_entry 0", "> sw_run 1", "> sw_middle 2", "> sw_check 3", "< sw_check 3", "< sw_middle 2",
                    "< sw_run 1", "< sw_entry 0"]
        XCTAssertEqual(recorded.byThread[currentThreadID()], once + once, "a throw is a normal return: no unwound exit")
    }

    func testSwiftMultiRegisterReturnsAreUnchanged() throws {
        let check = try GraphFixtures.symbol(try library(), "sw_check_returns", as: VoidToInt.self)
        XCTAssertEqual(check(), 0, "untraced")
        var result = -1
        let recorded = try recordGraph(["GraphSwift.sw_*"]) { result = check() }
        XCTAssertEqual(result, 0, "1: (Int, Int, Int, Int) in rax rdx rcx r8; 2: four Doubles in xmm0-3")
        XCTAssertEqual(recorded.byThread[currentThreadID()], [
            "> sw_check_returns 0", "> sw_quad 1", "< sw_quad 1", "> sw_quad_double 1", "< sw_quad_double 1",
            "< sw_check_returns 0",
        ])
    }
}
