// The system-call layer every LiveTrace module builds on (the lowest Swift
// module holds it): one EINTR-retry rule, one typed error that names the call
// and its subject, one whole-file reader, in swift-system's shape. The
// modules' own wrappers (FileSyscalls, Syscall, Sys) are thin: they call
// these and, at most, carry the `SystemCallError` inside their domain error
// (`DiscoveryError.systemCall`, `TraceError.systemCall`,
// `RecordingError.systemCall`; the control channel throws it as it is).
#if canImport(Glibc)
import Glibc
#endif

/// A failed system call: which call, on what, and errno.
public struct SystemCallError: Error, Sendable, Hashable, CustomStringConvertible {
    /// The call's name: `open`, `membarrier(PRIVATE_EXPEDITED)`.
    public var call: String
    /// What it was applied to: a path, `control socket`, `@NAME`; "" when
    /// nothing in particular.
    public var subject: String
    public var errno: Int32

    public init(call: String, subject: String = "", errno: Int32) {
        self.call = call
        self.subject = subject
        self.errno = errno
    }

    /// `open(/proc/self/maps) failed: No such file or directory (errno 2)`.
    public var description: String {
        let applied = subject.isEmpty ? call : "\(call)(\(subject))"
        return "\(applied) failed: \(String(cString: strerror(errno))) (errno \(errno))"
    }
}

public enum SystemCall {
    /// Runs `body` until it does not fail with EINTR. `failed` says which
    /// results are failures (errno is then read); the default is -1.
    @inline(__always)
    public static func retrying<T>(
        _ call: @autoclosure () -> String, subject: @autoclosure () -> String = "", _ body: () -> T, failed: (T) -> Bool
    ) throws(SystemCallError) -> T {
        while true {
            let result = body()
            if !failed(result) { return result }
            let e = Glibc.errno
            if e == EINTR { continue }
            throw SystemCallError(call: call(), subject: subject(), errno: e)
        }
    }

    /// `retrying` for the libc convention: -1 and errno.
    @inline(__always)
    public static func retrying<T: BinaryInteger>(
        _ call: @autoclosure () -> String, subject: @autoclosure () -> String = "", _ body: () -> T
    ) throws(SystemCallError) -> T {
        try retrying(call(), subject: subject(), body, failed: { $0 == -1 })
    }

    /// `retrying` for the lt_sys_* convention (lt_sys.h): the result, or -errno.
    @inline(__always)
    public static func retryingNegativeErrno(
        _ call: @autoclosure () -> String, subject: @autoclosure () -> String = "", _ body: () -> Int
    ) throws(SystemCallError) -> Int {
        while true {
            let r = body()
            if r >= 0 { return r }
            if r == -Int(EINTR) { continue }
            throw SystemCallError(call: call(), subject: subject(), errno: Int32(truncatingIfNeeded: -r))
        }
    }

    public static func open(_ path: String, _ flags: Int32, _ mode: mode_t = 0) throws(SystemCallError) -> Int32 {
        try retrying("open", subject: path) { Glibc.open(path, flags | O_CLOEXEC, mode) }
    }

    /// close is never retried on EINTR on Linux: the descriptor is gone either way.
    public static func close(_ fd: Int32) {
        _ = Glibc.close(fd)
    }

    /// The whole content of a file, read in 64 KiB chunks (procfs files
    /// report size 0, so the size is not asked).
    public static func readFile(_ path: String) throws(SystemCallError) -> [UInt8] {
        let fd = try open(path, O_RDONLY)
        defer { close(fd) }
        var result: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 1 << 16)
        while true {
            let n = try retrying("read", subject: path) {
                chunk.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress, $0.count) }
            }
            if n == 0 { return result }
            result.append(contentsOf: chunk[0..<n])
        }
    }

    /// The target of a symbolic link such as /proc/PID/exe.
    public static func readLink(_ path: String) throws(SystemCallError) -> String {
        var buffer = [CChar](repeating: 0, count: Int(PATH_MAX) + 1)
        let n = try retrying("readlink", subject: path) { readlink(path, &buffer, buffer.count - 1) }
        return String(decoding: buffer[0..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    /// pwrite of the whole buffer at `offset` (a virtual address for
    /// /proc/self/mem); short writes continue, a write of nothing is EIO.
    public static func pwriteAll(_ fd: Int32, _ bytes: [UInt8], at offset: UInt, subject: String) throws(SystemCallError) {
        let failure: SystemCallError? = bytes.withUnsafeBytes { raw in
            do throws(SystemCallError) { try pwriteAll(fd, raw, at: offset, subject: subject) } catch { return error }
            return nil
        }
        if let failure { throw failure }
    }

    public static func pwriteAll(_ fd: Int32, _ bytes: UnsafeRawBufferPointer, at offset: UInt, subject: String) throws(SystemCallError) {
        var done = 0
        while done < bytes.count {
            let n = try retrying("pwrite", subject: subject) {
                Glibc.pwrite(fd, bytes.baseAddress! + done, bytes.count - done, off_t(Int64(bitPattern: UInt64(offset) + UInt64(done))))
            }
            if n == 0 { throw SystemCallError(call: "pwrite (wrote nothing)", subject: subject, errno: EIO) }
            done += n
        }
    }

    /// The names in a directory, without `.` and `..`, in the directory's
    /// order; nil when it does not exist (ENOENT).
    public static func listDirectory(_ path: String) throws(SystemCallError) -> [String]? {
        guard let dir = Glibc.opendir(path) else {
            let e = Glibc.errno
            if e == ENOENT { return nil }
            throw SystemCallError(call: "opendir", subject: path, errno: e)
        }
        defer { Glibc.closedir(dir) }
        var names: [String] = []
        while let entry = Glibc.readdir(dir) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { raw in
                String(decoding: raw.prefix { $0 != 0 }, as: UTF8.self)
            }
            if name != "." && name != ".." { names.append(name) }
        }
        return names
    }

    /// The hexadecimal value of the line starting with `name` in a /proc
    /// status file (`SigBlk:` of /proc/PID/task/TID/status), nil when the
    /// line is missing or malformed. Read as bytes: splitting the file into
    /// Swift Strings (grapheme by grapheme) cost about 0.3 ms of every
    /// shim's start-up for a one-thread program.
    public static func hexField(_ name: StaticString, in status: [UInt8]) -> UInt64? {
        let key = UnsafeBufferPointer(start: name.utf8Start, count: name.utf8CodeUnitCount)
        var lineStart = 0
        while lineStart < status.count {
            let lineEnd = status[lineStart...].firstIndex(of: UInt8(ascii: "\n")) ?? status.count
            if lineEnd - lineStart >= key.count, status[lineStart..<lineStart + key.count].elementsEqual(key) {
                var value: UInt64 = 0, digits = 0
                for byte in status[(lineStart + key.count)..<lineEnd] {
                    let digit: UInt8
                    switch byte {
                    case UInt8(ascii: " "), UInt8(ascii: "\t"): if digits == 0 { continue } else { return value }
                    case UInt8(ascii: "0")...UInt8(ascii: "9"): digit = byte - UInt8(ascii: "0")
                    case UInt8(ascii: "a")...UInt8(ascii: "f"): digit = byte - UInt8(ascii: "a") + 10
                    default: return nil
                    }
                    guard digits < 16 else { return nil }
                    value = value << 4 | UInt64(digit)
                    digits += 1
                }
                return digits > 0 ? value : nil
            }
            lineStart = lineEnd + 1
        }
        return nil
    }

    /// `readFile`, nil when the file (or the task or process it describes)
    /// does not exist: ENOENT, or ESRCH from a procfs file of a thread that
    /// exited meanwhile.
    public static func readFileIfPresent(_ path: String) throws(SystemCallError) -> [UInt8]? {
        do {
            return try readFile(path)
        } catch where error.errno == ENOENT || error.errno == ESRCH {
            return nil
        }
    }
}
