// Shared helpers for the test targets: compiling fixtures with the real
// compilers and running programs. Fixture sources live in Tests/Fixtures.
import Foundation

public enum FixtureError: Error, CustomStringConvertible {
    case compileFailed(command: String, output: String)
    public var description: String {
        switch self {
        case let .compileFailed(command, output): return "compile failed: \(command)\n\(output)"
        }
    }
}

/// The result of running a program to completion.
public struct ProcessResult: Sendable {
    public var status: Int32
    /// True when the process was ended by a signal; `status` is then the signal.
    public var signaled: Bool
    public var stdout: String
    public var stderr: String
}

public enum Fixtures {
    /// Tests/Fixtures, found from this source file's path.
    public static let sourceDirectory: URL = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("Fixtures")

    /// A per-run scratch directory for compiled fixtures, removed with
    /// everything in it when the test process exits (fixture libraries
    /// still dlopen'ed then stay mapped: unlinking their files is harmless).
    /// A run that was killed never reaches its exit handler: the next run
    /// removes the directories of test processes that no longer exist.
    public static let buildDirectory: URL = {
        let temporary = URL(fileURLWithPath: NSTemporaryDirectory())
        removeScratchOfEndedRuns(in: temporary)
        let dir = temporary.appendingPathComponent("livetrace-fixtures-\(getpid())")
        try? FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        scratchToRemoveAtExit = dir.path
        atexit {
            if let path = Fixtures.scratchToRemoveAtExit { try? FileManager.default.removeItem(atPath: path) }
        }
        return dir
    }()

    /// Removes `livetrace-fixtures-PID` directories whose process is gone.
    static func removeScratchOfEndedRuns(in temporary: URL) {
        let prefix = "livetrace-fixtures-"
        for name in (try? FileManager.default.contentsOfDirectory(atPath: temporary.path)) ?? [] where name.hasPrefix(prefix) {
            guard let pid = pid_t(name.dropFirst(prefix.count)), pid != getpid(),
                  kill(pid, 0) != 0 && errno == ESRCH else { continue }
            try? FileManager.default.removeItem(atPath: temporary.appendingPathComponent(name).path)
        }
    }

    /// The build directory, for the exit handler (a C function pointer
    /// captures nothing).
    nonisolated(unsafe) static var scratchToRemoveAtExit: String?

    /// The path of a fixture source file.
    public static func source(_ name: String) -> String {
        sourceDirectory.appendingPathComponent(name).path
    }

    /// Compiles `sources` (fixture names or absolute paths) with `compiler`
    /// ("gcc", "clang", "swiftc") and `flags` into `output` (a file name in the
    /// build directory). Returns the output path.
    @discardableResult
    public static func compile(
        _ sources: [String], compiler: String, flags: [String], output: String
    ) throws -> String {
        let out = buildDirectory.appendingPathComponent(output).path
        let paths = sources.map { $0.hasPrefix("/") ? $0 : source($0) }
        let args = [compiler] + flags + paths + ["-o", out]
        let result = try run(["/usr/bin/env"] + args)
        guard result.status == 0, !result.signaled else {
            throw FixtureError.compileFailed(command: args.joined(separator: " "), output: result.stderr + result.stdout)
        }
        return out
    }

    /// LIVETRACE_CACHE_DIR for the programs the tests run.
    public static var cacheEnvironment: [String: String] {
        ["LIVETRACE_CACHE_DIR": buildDirectory.appendingPathComponent("livetrace-cache").path]
    }

    /// Runs `argv` to completion, capturing its output.
    public static func run(
        _ argv: [String], environment: [String: String]? = nil, stdin: String? = nil
    ) throws -> ProcessResult {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: argv[0])
        process.arguments = Array(argv.dropFirst())
        // A program run under the shim keeps its siteless cache
        // (SitelessCache.swift) in the fixtures' directory, not in ~/.cache.
        process.environment = ProcessInfo.processInfo.environment.merging(cacheEnvironment) { $1 }
            .merging(environment ?? [:]) { $1 }
        let outPipe = Pipe(), errPipe = Pipe(), inPipe = Pipe()
        process.standardOutput = outPipe
        process.standardError = errPipe
        process.standardInput = inPipe
        try process.run()
        if let stdin { inPipe.fileHandleForWriting.write(Data(stdin.utf8)) }
        try? inPipe.fileHandleForWriting.close()
        // Read both pipes concurrently so neither fills and blocks the child.
        nonisolated(unsafe) var errData = Data()
        let errDone = DispatchSemaphore(value: 0)
        let t = Thread {
            errData = errPipe.fileHandleForReading.readDataToEndOfFile()
            errDone.signal()
        }
        t.start()
        let outData = outPipe.fileHandleForReading.readDataToEndOfFile()
        errDone.wait()
        process.waitUntilExit()
        return ProcessResult(
            status: process.terminationStatus,
            signaled: process.terminationReason == .uncaughtSignal,
            stdout: String(decoding: outData, as: UTF8.self),
            stderr: String(decoding: errData, as: UTF8.self)
        )
    }

    /// The built `livetrace` executable beside the test bundle.
    public static var livetraceExecutable: String {
        let bundle = Bundle.allBundles.first { $0.bundlePath.hasSuffix(".xctest") }
        let dir = bundle.map { URL(fileURLWithPath: $0.bundlePath).deletingLastPathComponent() }
            ?? URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()
        return dir.appendingPathComponent("livetrace").path
    }

    /// A directory of its own (`name`) holding `liblivetrace.so`, a link to
    /// the built `libLiveTraceC.so`, for C fixtures that link `-llivetrace`.
    public static func liblivetraceDirectory(_ name: String) throws -> String {
        let built = URL(fileURLWithPath: livetraceExecutable).deletingLastPathComponent()
            .appendingPathComponent("libLiveTraceC.so").path
        guard FileManager.default.fileExists(atPath: built) else {
            throw FixtureError.compileFailed(
                command: "find \(built)", output: "libLiveTraceC.so is not built: run `swift build` (it builds every product) before the tests")
        }
        let dir = buildDirectory.appendingPathComponent(name).path
        try? FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        let link = dir + "/liblivetrace.so"
        try? FileManager.default.removeItem(atPath: link)
        try FileManager.default.createSymbolicLink(atPath: link, withDestinationPath: built)
        return dir
    }
}
