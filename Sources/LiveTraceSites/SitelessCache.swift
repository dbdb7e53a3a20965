// Files known to hold no entry site, remembered across processes, so that a
// program's start-up under the shim does not rediscover its libraries (libc
// alone: a scan of every function entry, since it defines __fentry__), and
// `livetrace record` does not read their symbols for objects.json.
//
// Rule: an entry means "discovery with includeFunctionsWithoutSites off
// found no site in this file". Only that negative fact is kept: a hit
// changes nothing but the time (the result is the empty table discovery
// would compute), so a wrong hit can only leave a file's functions
// untraced, never patch anything.
//
// Key: device, inode, size, mtime and ctime (to the nanosecond). ctime
// cannot be set from user space and moves on every write, rename onto and
// timestamp change, so a file rewritten in place with its old size and mtime
// (cp -p, touch -r) is a new key. The key is the entry's file name; the
// entry's content (a version line and the path) is for people only.
//
// Who: the LD_PRELOAD shim writes and reads it (enable()); `livetrace
// record` reads it (isSiteless(path:) is on for the CLI, which enables it).
// Where: $LIVETRACE_CACHE_DIR, else $XDG_CACHE_HOME/livetrace, else
// $HOME/.cache/livetrace (created 0700). LIVETRACE_NO_CACHE=1 turns it off.
// Entries are written to a temporary name and renamed, so a reader never
// sees half an entry and two writers do not clash. Any failure (read-only
// home, no HOME) only means no caching. Nothing here writes to the traced
// program's descriptors or changes its errno (callers save it).
import Glibc
import Synchronization

public enum SitelessCache {
    static let version = "livetrace siteless v1"

    /// Off until `enable()`: only the LD_PRELOAD shim (LiveTraceC/Preload.swift)
    /// uses the cache, where a program's start-up pays for discovery; a
    /// program tracing itself through the API leaves no file behind.
    private static let enabled = Atomic<Bool>(false)

    public static func enable() { enabled.store(true, ordering: .releasing) }

    /// The cache directory, or nil when caching is off.
    static var directory: String? { enabled.load(ordering: .acquiring) ? configuredDirectory : nil }

    private static let configuredDirectory: String? = {
        func variable(_ name: String) -> String? {
            guard let value = getenv(name) else { return nil }
            let text = String(cString: value)
            return text.isEmpty ? nil : text
        }
        if variable("LIVETRACE_NO_CACHE") == "1" { return nil }
        if let explicit = variable("LIVETRACE_CACHE_DIR") { return explicit }
        if let xdg = variable("XDG_CACHE_HOME") { return xdg + "/livetrace" }
        if let home = variable("HOME") { return home + "/.cache/livetrace" }
        return nil
    }()

    /// The entry name of the file whose status is `info`.
    static func entryName(_ info: stat) -> String {
        let fields: [UInt64] = [
            UInt64(info.st_dev), UInt64(info.st_ino), UInt64(bitPattern: Int64(info.st_size)),
            UInt64(bitPattern: Int64(info.st_mtim.tv_sec)), UInt64(bitPattern: Int64(info.st_mtim.tv_nsec)),
            UInt64(bitPattern: Int64(info.st_ctim.tv_sec)), UInt64(bitPattern: Int64(info.st_ctim.tv_nsec)),
        ]
        return "siteless-" + fields.map { String($0, radix: 16) }.joined(separator: "-")
    }

    /// The status of `path` when it is the file `identity` names (same
    /// device, inode, size and mtime); nil otherwise.
    static func status(of path: String, matching identity: FileIdentity?) -> stat? {
        var info = stat()
        guard stat(path, &info) == 0 else { return nil }
        if let identity, identity != FileIdentity(info) { return nil }
        return info
    }

    /// Whether the file at `path` (when it is `identity`) is known to hold no site.
    public static func isSiteless(path: String, identity: FileIdentity? = nil) -> Bool {
        guard let directory, let info = status(of: path, matching: identity) else { return false }
        return access(directory + "/" + entryName(info), F_OK) == 0
    }

    /// Remembers that discovery found no site in the file at `path` (when it
    /// is still `identity`).
    static func recordSiteless(path: String, identity: FileIdentity) {
        guard let directory, let info = status(of: path, matching: identity) else { return }
        var parent = directory.hasPrefix("/") ? "" : "."
        for component in directory.split(separator: "/") {
            parent += "/" + component
            _ = mkdir(parent, 0o700)
        }
        let entry = directory + "/" + entryName(info)
        let temporary = entry + ".\(getpid()).tmp"
        let fd = open(temporary, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o600)
        guard fd >= 0 else { return }
        let text = Array("\(version)\n\(path)\n".utf8)
        let written = text.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
        close(fd)
        if written != text.count || rename(temporary, entry) != 0 { unlink(temporary) }
    }
}
