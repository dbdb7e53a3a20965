#if canImport(Glibc)
import Glibc
#endif
import CLiveTraceShims
import LiveTraceSites

/// Thin wrappers over LiveTraceSites' system-call layer (SystemCalls.swift):
/// the calls only the text poke makes.
enum Syscall {
    static func mprotect(_ address: UInt, _ length: Int, _ protection: Int32) throws(SystemCallError) {
        _ = try SystemCall.retrying("mprotect", subject: "0x" + String(address, radix: 16)) {
            Glibc.mprotect(UnsafeMutableRawPointer(bitPattern: address), length, protection)
        }
    }

    /// pwrite of the whole buffer (short writes continue).
    static func pwriteAll(_ fd: Int32, _ bytes: [UInt8], at offset: UInt) throws(SystemCallError) {
        try SystemCall.pwriteAll(fd, bytes, at: offset, subject: "/proc/self/mem")
    }

    static func membarrier(_ command: Int32) throws(SystemCallError) -> Int {
        try SystemCall.retryingNegativeErrno("membarrier") { lt_sys_membarrier(command, 0) }
    }

    static func gettid() -> Int32 { Int32(truncatingIfNeeded: lt_sys_gettid()) }

    /// Sends the tagged sync signal; false when the thread no longer exists.
    static func sendSync(to tid: Int32) throws(SystemCallError) -> Bool {
        let r = lt_trap_send_sync(Int(tid))
        if r == -Int(ESRCH) { return false }
        if r < 0 { throw SystemCallError(call: "rt_tgsigqueueinfo", subject: "thread \(tid)", errno: Int32(-r)) }
        return true
    }

    /// True when thread `tid` of this process still exists.
    static func threadExists(_ tid: Int32) -> Bool {
        lt_sys_tgkill(Int(getpid()), Int(tid), 0) != -Int(ESRCH)
    }

    /// The ids of this process's threads (/proc/self/task).
    static func threadIDs() throws(SystemCallError) -> [Int32] {
        guard let names = try SystemCall.listDirectory("/proc/self/task") else {
            throw SystemCallError(call: "opendir", subject: "/proc/self/task", errno: ENOENT)
        }
        return names.compactMap { Int32($0) }
    }
}
