#if canImport(Glibc)
import Glibc
#endif

/// Thin wrappers over the system-call layer (SystemCalls.swift) for the calls
/// discovery makes, their failures carried in `DiscoveryError.systemCall`
/// with the path they were made for as the subject.
enum FileSyscalls {
    static func open(_ path: String) throws(DiscoveryError) -> Int32 {
        do {
            return try SystemCall.open(path, O_RDONLY)
        } catch {
            if error.errno == ENOENT { throw .fileNotFound(path: path) }
            if error.errno == EISDIR { throw .isDirectory(path: path) }
            throw .systemCall(error)
        }
    }

    static func fstat(_ fd: Int32, path: String) throws(DiscoveryError) -> stat {
        var info = stat()
        do {
            _ = try SystemCall.retrying("fstat", subject: path) { Glibc.fstat(fd, &info) }
        } catch {
            throw .systemCall(error)
        }
        return info
    }

    /// Maps `size` bytes of `fd` read-only and private.
    static func mapReadOnly(_ fd: Int32, size: Int, path: String) throws(DiscoveryError) -> UnsafeRawBufferPointer {
        do {
            let base = try SystemCall.retrying("mmap", subject: path, { mmap(nil, size, PROT_READ, MAP_PRIVATE, fd, 0) }, failed: { $0 == nil || $0 == MAP_FAILED })
            return UnsafeRawBufferPointer(start: base, count: size)
        } catch {
            throw .systemCall(error)
        }
    }

    static func unmap(_ buffer: UnsafeRawBufferPointer) {
        guard let base = buffer.baseAddress, buffer.count > 0 else { return }
        // munmap of a mapping we own fails only on bad arguments; nothing to retry.
        _ = munmap(UnsafeMutableRawPointer(mutating: base), buffer.count)
    }

    static func close(_ fd: Int32) { SystemCall.close(fd) }

    /// The target of a symbolic link such as /proc/self/exe.
    static func readLink(_ path: String) throws(DiscoveryError) -> String {
        do { return try SystemCall.readLink(path) } catch { throw .systemCall(error) }
    }
}
