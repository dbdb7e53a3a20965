/// One line of /proc/PID/maps:
///
///     start-end perms offset dev inode [path]
///     7f12a000-7f12b000 r-xp 00001000 08:01 1234  /usr/lib/libfoo.so
///
/// The project's one parser of that file. Each operation reads it once
/// (`ProcessMaps.read`) and passes the result down.
public struct ProcessMapping: Sendable, Hashable {
    public var start: UInt
    public var end: UInt
    public var readable: Bool
    public var writable: Bool
    public var executable: Bool
    /// File offset of `start`.
    public var offset: UInt64
    public var inode: UInt64
    /// The path, `[heap]`-style name, or "" for an anonymous mapping; a
    /// file deleted since it was mapped ends in " (deleted)".
    public var path: String

    /// A mapping of a file that still exists under its path.
    public var isFile: Bool { path.hasPrefix("/") && !path.hasSuffix(" (deleted)") }
}

public enum ProcessMaps {
    /// The mappings of process `pid` (this process when nil), in the
    /// kernel's order (by address).
    public static func read(pid: Int32? = nil) throws(SystemCallError) -> [ProcessMapping] {
        parse(try SystemCall.readFile(pid.map { "/proc/\($0)/maps" } ?? "/proc/self/maps"))
    }

    /// A byte-level parser: it runs once per batch of the text poke, so it
    /// makes no String per field. Lines it cannot read are skipped.
    public static func parse(_ text: [UInt8]) -> [ProcessMapping] {
        var result: [ProcessMapping] = []
        let n = text.count
        let space = UInt8(ascii: " "), newline = UInt8(ascii: "\n")
        func hexNumber(_ i: inout Int) -> UInt64? {
            var value: UInt64 = 0
            let first = i
            while i < n, let digit = hexDigit(text[i]) {
                value = value << 4 | UInt64(digit)
                i += 1
            }
            return i > first ? value : nil
        }
        func decimal(_ i: inout Int) -> UInt64? {
            var value: UInt64 = 0
            let first = i
            while i < n, text[i] >= UInt8(ascii: "0"), text[i] <= UInt8(ascii: "9") {
                value = value &* 10 &+ UInt64(text[i] - UInt8(ascii: "0"))
                i += 1
            }
            return i > first ? value : nil
        }
        func skip(_ byte: UInt8, _ i: inout Int, limit: Int) {
            while i < limit && text[i] == byte { i += 1 }
        }
        func skipField(_ i: inout Int, limit: Int) {
            while i < limit && text[i] != space { i += 1 }
            skip(space, &i, limit: limit)
        }
        var i = 0
        while i < n {
            var lineEnd = i
            while lineEnd < n && text[lineEnd] != newline { lineEnd += 1 }
            defer { i = lineEnd + 1 }
            var p = i
            guard let start = hexNumber(&p), p < lineEnd, text[p] == UInt8(ascii: "-") else { continue }
            p += 1
            guard let end = hexNumber(&p), p + 5 < lineEnd else { continue }
            p += 1
            let readable = text[p] == UInt8(ascii: "r"), writable = text[p + 1] == UInt8(ascii: "w")
            let executable = text[p + 2] == UInt8(ascii: "x")
            skipField(&p, limit: lineEnd)
            guard let offset = hexNumber(&p) else { continue }
            skip(space, &p, limit: lineEnd)
            skipField(&p, limit: lineEnd)          // device
            guard let inode = decimal(&p) else { continue }
            skip(space, &p, limit: lineEnd)
            let path = p < lineEnd ? String(decoding: text[p..<lineEnd], as: UTF8.self) : ""
            result.append(ProcessMapping(
                start: UInt(start), end: UInt(end), readable: readable, writable: writable, executable: executable,
                offset: offset, inode: inode, path: path))
        }
        return result
    }

    private static func hexDigit(_ c: UInt8) -> UInt8? {
        switch c {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): return c - UInt8(ascii: "0")
        case UInt8(ascii: "a")...UInt8(ascii: "f"): return c - UInt8(ascii: "a") + 10
        case UInt8(ascii: "A")...UInt8(ascii: "F"): return c - UInt8(ascii: "A") + 10
        default: return nil
        }
    }
}
