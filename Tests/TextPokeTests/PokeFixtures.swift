// Compiling, loading and driving the fixture libraries of Tests/Fixtures/poke.
import Foundation
import LiveTrace
import TestSupport
import XCTest

#if canImport(Glibc)
import Glibc
#endif

/// A fixture shared library loaded into the test process (never unloaded:
/// its code may have been patched and its sites are known to the poker).
final class LoadedFixture: @unchecked Sendable {
    let path: String
    let handle: UnsafeMutableRawPointer

    init(path: String) throws {
        guard let h = dlopen(path, RTLD_NOW | RTLD_LOCAL) else {
            throw FixtureError.compileFailed(command: "dlopen \(path)", output: String(cString: dlerror()))
        }
        self.path = path
        handle = h
    }

    func address(_ symbol: String) -> UInt {
        guard let p = dlsym(handle, symbol) else {
            XCTFail("symbol \(symbol) missing in \(path)")
            return 0
        }
        return UInt(bitPattern: p)
    }

    func function<T>(_ symbol: String, as type: T.Type) -> T {
        unsafeBitCast(UnsafeRawPointer(bitPattern: address(symbol))!, to: type)
    }
}

enum PokeFixtures {
    nonisolated(unsafe) private static var serial = 0
    private static let lock = NSLock()

    /// Compiles a fixture (always to a fresh file, so dlopen loads a fresh
    /// copy of its code) and loads it.
    static func load(_ source: String, compiler: String, flags: [String]) throws -> LoadedFixture {
        let n: Int = lock.withLock { serial += 1; return serial }
        let name = URL(fileURLWithPath: source).deletingPathExtension().lastPathComponent
        let path = try Fixtures.compile(
            ["poke/" + source], compiler: compiler,
            flags: ["-O2", "-fPIC", "-shared", "-pthread"] + flags,
            output: "\(name)-\(compiler)-\(n).so")
        return try LoadedFixture(path: path)
    }

    /// endbr64: f3 0f 1e fa
    static let endbr64: [UInt8] = [0xF3, 0x0F, 0x1E, 0xFA]

    /// A site as discovery would describe it: the function's entry, after
    /// endbr64 when there is one.
    static func site(function: UInt, kind: SiteKind, name: String) -> Site {
        let head = CodeWriter.read(function, count: 4)
        let endbr = head == endbr64
        return Site(address: function + (endbr ? 4 : 0), kind: kind, functionAddress: function,
                    symbol: name, function: name, hasEndbr: endbr)
    }

    /// Mappings that are writable and executable at once.
    static func writableExecutableMappings() throws -> [ProcessMapping] {
        try ProcessMaps.read().filter { $0.writable && $0.executable }
    }
}

/// The seed fixture (seed_sites.c): worker threads, counters, epochs.
struct SeedFixture {
    let library: LoadedFixture
    let site: Site
    let targetA: UInt
    let targetB: UInt

    /// Field offsets of struct lt_counters.
    enum Field: Int {
        case a = 0, b = 8, made = 16, stableOn = 24, stableOff = 32, trapBlocked = 40
    }

    init() throws {
        library = try PokeFixtures.load("seed_sites.c", compiler: "clang", flags: ["-fpatchable-function-entry=5"])
        site = PokeFixtures.site(function: library.address("lt_seed_site"), kind: .nop5, name: "lt_seed_site")
        targetA = library.address("lt_seed_target_a")
        targetB = library.address("lt_seed_target_b")
    }

    func start(plainWorkers: Int32) -> Int {
        Int(library.function("lt_seed_start", as: (@convention(c) (Int32) -> Int32).self)(plainWorkers))
    }
    func stop() {
        library.function("lt_seed_stop", as: (@convention(c) () -> Void).self)()
    }
    func counter(_ worker: Int, _ field: Field) -> Int {
        let c = library.function("lt_seed_counters", as: (@convention(c) (Int32) -> UnsafeMutableRawPointer).self)(Int32(worker))
        return c.load(fromByteOffset: field.rawValue, as: Int.self)
    }
    func beginTransition(enabledAfter: Bool) {
        library.function("lt_seed_begin_transition", as: (@convention(c) (Int32) -> Void).self)(enabledAfter ? 1 : 0)
    }
    func endTransition() {
        library.function("lt_seed_end_transition", as: (@convention(c) () -> Void).self)()
    }
    func totalA() -> Int {
        library.function("lt_seed_total_a", as: (@convention(c) () -> Int).self)()
    }
    func totalMade() -> Int {
        library.function("lt_seed_total_made", as: (@convention(c) () -> Int).self)()
    }
}

/// True when the long soak variants should run.
let soak = ProcessInfo.processInfo.environment["LIVETRACE_SOAK"] == "1"
