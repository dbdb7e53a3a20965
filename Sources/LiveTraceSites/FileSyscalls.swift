#if canImport(Glibc)
import Glibc
#endif

/// Thin wrappers over the system calls that discovery makes. Each retries
/// EINTR and turns a failure into `DiscoveryError.systemCall` naming the call
/// and the path it was made for.
enum FileSyscalls {
    static func open(_ path: String) throws(DiscoveryError) -> Int32 {
        while true {
            let fd = Glibc.open(path, O_RDONLY | O_CLOEXEC)
            if fd >= 0 { return fd }
            let error = errno
            if error == EINTR { continue }
            if error == ENOENT { throw .fileNotFound(path: path) }
            if error == EISDIR { throw .isDirectory(path: path) }
            throw .systemCall(call: "open", path: path, errno: error)
        }
    }

    static func fstat(_ fd: Int32, path: String) throws(DiscoveryError) -> stat {
        var info = stat()
        while Glibc.fstat(fd, &info) != 0 {
            let error = errno
            if error != EINTR { throw .systemCall(call: "fstat", path: path, errno: error) }
        }
        return info
    }

    /// Maps `size` bytes of `fd` read-only and private.
    static func mapReadOnly(_ fd: Int32, size: Int, path: String) throws(DiscoveryError) -> UnsafeRawBufferPointer {
        while true {
            guard let base = mmap(nil, size, PROT_READ, MAP_PRIVATE, fd, 0), base != MAP_FAILED else {
                let error = errno
                if error == EINTR { continue }
                throw .systemCall(call: "mmap", path: path, errno: error)
            }
            return UnsafeRawBufferPointer(start: base, count: size)
        }
    }

    static func unmap(_ buffer: UnsafeRawBufferPointer) {
        guard let base = buffer.baseAddress, buffer.count > 0 else { return }
        // munmap of a mapping we own fails only on bad arguments; nothing to retry.
        _ = munmap(UnsafeMutableRawPointer(mutating: base), buffer.count)
    }

    static func close(_ fd: Int32) {
        // close is never retried on EINTR on Linux: the descriptor is gone either way.
        _ = Glibc.close(fd)
    }

    /// The target of a symbolic link such as /proc/self/exe.
    static func readLink(_ path: String) throws(DiscoveryError) -> String {
        var buffer = [CChar](repeating: 0, count: Int(PATH_MAX) + 1)
        while true {
            let n = readlink(path, &buffer, buffer.count - 1)
            if n >= 0 { return String(decoding: buffer[0..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self) }
            let error = errno
            if error == EINTR { continue }
            throw .systemCall(call: "readlink", path: path, errno: error)
        }
    }
}
