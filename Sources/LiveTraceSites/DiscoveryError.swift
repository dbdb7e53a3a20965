/// Every way site discovery can fail, each with a message that names the
/// object and says what is wrong with it. Discovery never crashes on bad
/// input: whatever it derives from a file is bounds-checked first.
public enum DiscoveryError: Error, Sendable, Hashable, CustomStringConvertible {
    /// No file at this path.
    case fileNotFound(path: String)
    /// The path names a directory, not an ELF object.
    case isDirectory(path: String)
    /// A system call on the object failed (its subject is the path).
    case systemCall(SystemCallError)
    /// The file does not start with the ELF magic.
    case notELF(path: String)
    /// An ELF object, but not one LiveTrace can patch (32-bit, big-endian,
    /// another machine, a relocatable object, a core file).
    case unsupported(path: String, reason: String)
    /// The object's headers or tables contradict themselves or the file size.
    case malformed(path: String, reason: String)
    /// The running process's objects could not be enumerated.
    case processEnumeration(reason: String)

    public var path: String? {
        switch self {
        case let .fileNotFound(path), let .isDirectory(path), let .notELF(path): return path
        case let .systemCall(error): return error.subject
        case let .unsupported(path, _), let .malformed(path, _): return path
        case .processEnumeration: return nil
        }
    }

    public var description: String {
        switch self {
        case let .fileNotFound(path):
            return "\(path): no such file"
        case let .isDirectory(path):
            return "\(path): is a directory, not an ELF object"
        case let .systemCall(error):
            return "\(error.subject): \(error.call) failed: \(String(cString: strerror(error.errno))) (errno \(error.errno))"
        case let .notELF(path):
            return "\(path): not an ELF object (no \\x7fELF magic at the start of the file)"
        case let .unsupported(path, reason):
            return "\(path): unsupported ELF object: \(reason)"
        case let .malformed(path, reason):
            return "\(path): malformed ELF object: \(reason)"
        case let .processEnumeration(reason):
            return "cannot enumerate the objects of this process: \(reason)"
        }
    }
}

#if canImport(Glibc)
import Glibc
#endif
