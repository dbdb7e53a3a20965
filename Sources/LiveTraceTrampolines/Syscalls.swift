// Thin wrappers over LiveTraceSites' system-call layer (SystemCalls.swift)
// for the calls of this module, their failures carried in
// TraceError.systemCall.
import CLiveTraceShims
import Glibc
import LiveTraceSites

enum Sys {
    static func retrying<T>(_ call: String, subject: String = "", _ body: () -> T, failed: (T) -> Bool) throws(TraceError) -> T {
        do {
            return try SystemCall.retrying(call, subject: subject, body, failed: failed)
        } catch {
            throw TraceError.systemCall(error)
        }
    }

    static func open(_ path: String, _ flags: Int32) throws(TraceError) -> Int32 {
        do {
            return try SystemCall.open(path, flags)
        } catch {
            throw TraceError.systemCall(error)
        }
    }

    static func close(_ fd: Int32) { _ = Glibc.close(fd) }

    /// Writes all of `bytes` at `offset` (a virtual address for /proc/self/mem).
    static func pwriteAll(_ fd: Int32, _ bytes: UnsafeRawBufferPointer, at offset: UInt) throws(TraceError) {
        do {
            try SystemCall.pwriteAll(fd, bytes, at: offset, subject: "/proc/self/mem")
        } catch {
            throw TraceError.systemCall(error)
        }
    }

    static func mmap(_ address: UInt, _ length: Int, _ prot: Int32, _ flags: Int32) throws(TraceError) -> UInt {
        let result = try retrying("mmap", {
            Glibc.mmap(UnsafeMutableRawPointer(bitPattern: address), length, prot, flags, -1, 0)
        }, failed: { $0 == MAP_FAILED })
        return UInt(bitPattern: result)
    }

    static func munmap(_ address: UInt, _ length: Int) {
        _ = Glibc.munmap(UnsafeMutableRawPointer(bitPattern: address), length)
    }

    /// The whole content of a (small, procfs) file; nil when it does not exist.
    static func readFile(_ path: String) throws(TraceError) -> [UInt8]? {
        do {
            return try SystemCall.readFileIfPresent(path)
        } catch {
            throw TraceError.systemCall(error)
        }
    }

    /// Names in a directory (without . and ..); nil when it does not exist.
    static func listDirectory(_ path: String) throws(TraceError) -> [String]? {
        do {
            return try SystemCall.listDirectory(path)
        } catch {
            throw TraceError.systemCall(error)
        }
    }

    /// Up to `count` bytes of this process's memory at `address`, read
    /// through /proc/self/mem (the kernel copies; an unmapped page ends the
    /// copy early, or is EIO when it is the first) instead of loading them,
    /// so a bad address never faults this process. (process_vm_readv would
    /// do the same but Glibc does not import it without _GNU_SOURCE.)
    static func readOwnMemory(at address: UInt, count: Int) throws(TraceError) -> [UInt8] {
        let fd = try open("/proc/self/mem", O_RDONLY)
        defer { close(fd) }
        var buffer = [UInt8](repeating: 0, count: count)
        let n = try retrying("pread", subject: "/proc/self/mem", {
            buffer.withUnsafeMutableBytes { Glibc.pread(fd, $0.baseAddress, count, off_t(Int64(bitPattern: UInt64(address)))) }
        }, failed: { $0 < 0 })
        return Array(buffer.prefix(n))
    }

    static func gettid() -> Int32 { Int32(truncatingIfNeeded: lt_sys_gettid()) }

    static func membarrier() throws(TraceError) {
        let r = lt_sys_membarrier_private_expedited()
        if r != 0 { throw TraceError.systemCall(SystemCallError(call: "membarrier(PRIVATE_EXPEDITED)", errno: Int32(-r))) }
    }
}
