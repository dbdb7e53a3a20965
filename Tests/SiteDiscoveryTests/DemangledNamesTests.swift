// Swift and C++ functions are listed under their demangled names; Swift
// functions have no entry site and are listed as kind `none`.
import Foundation
import LiveTrace
import TestSupport
import XCTest

final class DemangledNamesTests: XCTestCase {
    func testSwiftFunctionsAreListedDemangledAsFunctionsWithoutSites() throws {
        let path = try Fixtures.compile(["discovery/Greeter.swift"], compiler: "swiftc",
                                        flags: ["-Onone", "-g", "-module-name", "DiscoveryFixture"], output: "greeter-swift")
        let objectSites = try ElfObject(path: path).discoverSites(options: DiscoveryOptions(sourceLines: true))
        XCTAssertTrue(objectSites.sites.isEmpty, "Swift code has no compiler-made entry sites")
        let names = Set(objectSites.functionsWithoutSites.map(\.function))
        XCTAssertTrue(names.contains("DiscoveryFixture.Greeter.greet(name: Swift.String) -> Swift.String"), "\(names.sorted())")
        XCTAssertTrue(names.contains("DiscoveryFixture.fixtureCount(upTo: Swift.Int) -> Swift.Int"), "\(names.sorted())")
        let greet = try XCTUnwrap(objectSites.functionsWithoutSites.first { $0.function.hasPrefix("DiscoveryFixture.Greeter.greet") })
        XCTAssertTrue(greet.symbol.hasPrefix("$s16DiscoveryFixture7GreeterV5greet"), greet.symbol)
        XCTAssertEqual(greet.kind, .none)
        XCTAssertEqual(greet.rejection, .noEntrySite)
        XCTAssertEqual(greet.sourceFile.map { $0.hasSuffix("Greeter.swift") }, true, greet.sourceFile ?? "-")

        // The CLI lists them too, says there are no sites, and how to get some.
        let cli = try Fixtures.run([Fixtures.livetraceExecutable, "list", "--json", path])
        XCTAssertFalse(cli.signaled)
        XCTAssertEqual(cli.status, 2, "exit status 2: read, but no sites")
        XCTAssertTrue(cli.stderr.contains("no patchable sites"), cli.stderr)
        XCTAssertTrue(cli.stderr.contains("-fpatchable-function-entry=5"), cli.stderr)
        let json = try JSONSerialization.jsonObject(with: Data(cli.stdout.utf8)) as? [String: Any]
        let object = try XCTUnwrap((json?["objects"] as? [[String: Any]])?.first)
        let listed = (object["functions_without_sites"] as? [[String: Any]] ?? []).compactMap { $0["function"] as? String }
        XCTAssertTrue(listed.contains("DiscoveryFixture.Greeter.greet(name: Swift.String) -> Swift.String"))
        let text = try Fixtures.run([Fixtures.livetraceExecutable, "list", "--match", "*Greeter.greet*", path])
        XCTAssertTrue(text.stdout.contains("DiscoveryFixture.Greeter.greet(name: Swift.String) -> Swift.String"), text.stdout)
    }

    func testCppMethodsAreListedDemangled() throws {
        let path = try Fixtures.compile(["discovery/sites.cpp"], compiler: "g++",
                                        flags: ["-O1", "-fpatchable-function-entry=5"], output: "sites-cpp")
        let objectSites = try ElfObject(path: path).discoverSites()
        let names = Set(objectSites.sites.map(\.function))
        XCTAssertTrue(names.contains("fixture::Counter::add(int)"), "\(names.sorted())")
        XCTAssertTrue(names.contains("fixture::Counter::add(double)"), "\(names.sorted())")
        let add = try XCTUnwrap(objectSites.sites.first { $0.function == "fixture::Counter::add(int)" })
        XCTAssertEqual(add.symbol, "_ZN7fixture7Counter3addEi")
        XCTAssertTrue(add.isUsable)
    }
}
