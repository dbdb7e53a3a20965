#if canImport(Glibc)
import Glibc
#endif
import CLiveTraceShims
import LiveTraceSites

/// Thin wrappers over LiveTraceSites' system-call layer (SystemCalls.swift):
/// the calls only the text poke makes.
enum Syscall {
    static func mprotect(_ address: UInt, _ length: Int, _ protection: Int32) throws(SystemCallError) {
        _ = try SystemCall.retrying("mprotect") {
            Glibc.mprotect(UnsafeMutableRawPointer(bitPattern: address), length, protection)
        }
    }

    /// pwrite of the whole buffer (short writes continue).
    static func pwriteAll(_ fd: Int32, _ bytes: [UInt8], at offset: UInt) throws(SystemCallError) {
        var done = 0
        while done < bytes.count {
            let n = try SystemCall.retrying("pwrite(/proc/self/mem)") {
                bytes.withUnsafeBytes { raw in
                    Glibc.pwrite(fd, raw.baseAddress! + done, raw.count - done, off_t(Int64(bitPattern: UInt64(offset) + UInt64(done))))
                }
            }
            if n == 0 { throw SystemCallError(call: "pwrite(/proc/self/mem)", errno: EIO) }
            done += n
        }
    }

    static func membarrier(_ command: Int32) throws(SystemCallError) -> Int {
        try SystemCall.retryingNegativeErrno("membarrier") { lt_sys_membarrier(command, 0) }
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
