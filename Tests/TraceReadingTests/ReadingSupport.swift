// Traces recorded once per run from Tests/Fixtures/reading/tree.c with the
// real `livetrace record`, and the livetrace commands run on them.
import Foundation
import LiveTrace
import TestSupport
import XCTest

enum ReadingFixtures {
    struct Recorded {
        /// A run that exits normally, and one that dies of SIGSEGV in doomed().
        var normal: String
        var crash: String
    }

    nonisolated(unsafe) private static var cached: Recorded?
    private static let lock = NSLock()

    /// tree.c built with gcc entry nops and recorded twice (normal, crash).
    static func traces() throws -> Recorded {
        lock.lock()
        defer { lock.unlock() }
        if let cached { return cached }
        let program = try treeProgram()
        let work = scratch("traces")
        let normal = try livetrace(["record", "-d", work + "/normal", "--", program])
        XCTAssertEqual(normal.status, 0, normal.stderr)
        XCTAssertEqual(normal.stdout, "done\n")
        let crash = try livetrace(["record", "-d", work + "/crash", "--", program, "crash"])
        XCTAssertEqual(crash.status, 128 + SIGSEGV, crash.stderr)
        let recorded = Recorded(normal: work + "/normal", crash: work + "/crash")
        cached = recorded
        return recorded
    }

    /// tree.c built with gcc entry nops.
    static func treeProgram() throws -> String {
        try Fixtures.compile(
            ["reading/tree.c"], compiler: "gcc",
            flags: ["-O2", "-fpatchable-function-entry=5", "-g", "-pthread", "-fno-optimize-sibling-calls"],
            output: "reading-tree")
    }

    /// A fresh directory under the fixtures' build directory.
    static func scratch(_ name: String) -> String {
        let path = Fixtures.buildDirectory.appendingPathComponent("reading-\(name)-\(UUID().uuidString.prefix(8))").path
        try? FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        return path
    }

    static func livetrace(_ arguments: [String]) throws -> ProcessResult {
        try Fixtures.run([Fixtures.livetraceExecutable] + arguments)
    }

    /// Durations ("1.234 us", "80 ns", "2.000  s") replaced by TIME and
    /// runs of spaces by one, so a table compares across runs.
    static func maskTimes(_ text: String) -> String {
        text.replacingOccurrences(of: #"[0-9]+(\.[0-9]{3})? +(ns|us|ms|s)\b"#, with: "TIME", options: .regularExpression)
            .replacingOccurrences(of: #" +"#, with: " ", options: .regularExpression)
            .split(separator: "\n", omittingEmptySubsequences: false)
            .map { $0.trimmingCharacters(in: .whitespaces) }.joined(separator: "\n")
    }

    /// Thread ids replaced by T1, T2, ... in order of first appearance, so
    /// output compares across runs.
    static func normalizeTids(_ text: String) -> String {
        var names: [String: String] = [:]
        var out = ""
        var rest = Substring(text)
        while let open = rest.firstIndex(of: "[") {
            out += rest[..<open]
            guard let close = rest[open...].firstIndex(of: "]") else { break }
            let tid = rest[rest.index(after: open)..<close].trimmingCharacters(in: .whitespaces)
            if UInt64(tid) != nil {
                let name = names[tid] ?? "T\(names.count + 1)"
                names[tid] = name
                out += "[" + name + "]"
            } else {
                out += rest[open...close]
            }
            rest = rest[rest.index(after: close)...]
        }
        return out + rest
    }
}
