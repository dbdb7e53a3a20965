// Building and loading the C fixtures of Tests/Fixtures/trampolines into the
// test process, where the registry finds their sites like any other object's.
import Foundation
import Glibc
import TestSupport

enum TrampolineFixtures {
    static let includeDirectory = Fixtures.sourceDirectory
        .deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("Sources/CLiveTraceShims/include").path

    nonisolated(unsafe) private static var loaded: [String: UnsafeMutableRawPointer] = [:]
    private static let lock = NSLock()

    /// Compiles `sources` with clang and an entry site on every function
    /// (except NOSITE ones) into a shared library, and dlopens it once.
    static func library(_ name: String, sources: [String]) throws -> UnsafeMutableRawPointer {
        lock.lock()
        defer { lock.unlock() }
        if let handle = loaded[name] { return handle }
        let path = try Fixtures.compile(
            sources.map { "trampolines/\($0)" }, compiler: "clang",
            flags: ["-O2", "-fpatchable-function-entry=5", "-shared", "-fPIC", "-pthread", "-I", includeDirectory],
            output: "lib\(name).so")
        guard let handle = dlopen(path, RTLD_NOW | RTLD_GLOBAL) else {
            throw FixtureError.compileFailed(command: "dlopen \(path)", output: String(cString: dlerror()))
        }
        loaded[name] = handle
        return handle
    }

    static func symbol<T>(_ handle: UnsafeMutableRawPointer, _ name: String, as type: T.Type) -> T {
        guard let address = dlsym(handle, name) else { fatalError("fixture symbol \(name) missing") }
        return unsafeBitCast(address, to: type)
    }

    static func address(_ handle: UnsafeMutableRawPointer, _ name: String) -> UnsafeMutableRawPointer {
        guard let address = dlsym(handle, name) else { fatalError("fixture symbol \(name) missing") }
        return address
    }

    /// Directory of the built products (liblivetrace, the executables).
    static var productDirectory: String {
        URL(fileURLWithPath: Fixtures.livetraceExecutable).deletingLastPathComponent().path
    }
}

typealias CCallback = @convention(c) (UInt, UInt, OpaquePointer?, OpaquePointer?) -> Void
