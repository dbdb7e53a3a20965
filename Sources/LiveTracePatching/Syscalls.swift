#if canImport(Glibc)
import Glibc
#endif
import CLiveTraceShims

/// A failed system call, named.
public struct SystemCallError: Error, Sendable, Hashable, CustomStringConvertible {
    public var call: String
    public var errno: Int32

    public var description: String {
        "\(call): \(String(cString: strerror(errno))) (errno \(errno))"
    }
}

/// Thin wrappers: every call retries EINTR and names itself in its error.
enum Syscall {
    /// For libc calls returning -1 and setting errno.
    static func retrying<T: BinaryInteger>(_ name: String, _ body: () -> T) throws(SystemCallError) -> T {
        while true {
            let r = body()
            if r != -1 { return r }
            let e = Glibc.errno
            if e == EINTR { continue }
            throw SystemCallError(call: name, errno: e)
        }
    }

    /// For lt_sys_* wrappers returning -errno.
    static func retryingNegativeErrno(_ name: String, _ body: () -> Int) throws(SystemCallError) -> Int {
        while true {
            let r = body()
            if r >= 0 { return r }
            if r == -Int(EINTR) { continue }
            throw SystemCallError(call: name, errno: Int32(-r))
        }
    }

    static func mprotect(_ address: UInt, _ length: Int, _ protection: Int32) throws(SystemCallError) {
        _ = try retrying("mprotect") {
            Glibc.mprotect(UnsafeMutableRawPointer(bitPattern: address), length, protection)
        }
    }

    static func open(_ path: String, _ flags: Int32) throws(SystemCallError) -> Int32 {
        try retrying("open(\(path))") { Glibc.open(path, flags | O_CLOEXEC) }
    }

    static func close(_ fd: Int32) {
        _ = Glibc.close(fd)
    }

    /// pwrite of the whole buffer (short writes continue).
    static func pwriteAll(_ fd: Int32, _ bytes: [UInt8], at offset: UInt) throws(SystemCallError) {
        var done = 0
        while done < bytes.count {
            let n = try retrying("pwrite(/proc/self/mem)") {
                bytes.withUnsafeBytes { raw in
                    Glibc.pwrite(fd, raw.baseAddress! + done, raw.count - done, off_t(Int64(bitPattern: UInt64(offset) + UInt64(done))))
                }
            }
            if n == 0 { throw SystemCallError(call: "pwrite(/proc/self/mem)", errno: EIO) }
            done += n
        }
    }

    /// The whole content of a (proc) file.
    static func readFile(_ path: String) throws(SystemCallError) -> [UInt8] {
        let fd = try open(path, O_RDONLY)
        defer { close(fd) }
        var result: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = try retrying("read(\(path))") {
                chunk.withUnsafeMutableBytes { raw in Glibc.read(fd, raw.baseAddress, raw.count) }
            }
            if n == 0 { return result }
            result += chunk[0..<n]
        }
    }

    static func membarrier(_ command: Int32) throws(SystemCallError) -> Int {
        try retryingNegativeErrno("membarrier") { lt_sys_membarrier(command, 0) }
    }

    static func gettid() -> Int32 { Int32(truncatingIfNeeded: lt_sys_gettid()) }

    /// Sends the tagged sync signal; false when the thread no longer exists.
    static func sendSync(to tid: Int32) throws(SystemCallError) -> Bool {
        let r = lt_trap_send_sync(Int(tid))
        if r == -Int(ESRCH) { return false }
        if r < 0 { throw SystemCallError(call: "rt_tgsigqueueinfo", errno: Int32(-r)) }
        return true
    }

    /// True when thread `tid` of this process still exists.
    static func threadExists(_ tid: Int32) -> Bool {
        lt_sys_tgkill(Int(getpid()), Int(tid), 0) != -Int(ESRCH)
    }

    /// The ids of this process's threads (/proc/self/task).
    static func threadIDs() throws(SystemCallError) -> [Int32] {
        guard let dir = opendir("/proc/self/task") else {
            throw SystemCallError(call: "opendir(/proc/self/task)", errno: Glibc.errno)
        }
        defer { closedir(dir) }
        var tids: [Int32] = []
        while let entry = readdir(dir) {
            let name = withUnsafePointer(to: entry.pointee.d_name) {
                $0.withMemoryRebound(to: CChar.self, capacity: 256) { String(cString: $0) }
            }
            if let tid = Int32(name) { tids.append(tid) }
        }
        return tids
    }
}
