// Every system call the recording side makes goes through one of these thin
// wrappers over LiveTraceSites' system-call layer (SystemCalls.swift), which
// retries EINTR; its SystemCallError (the call, its subject, errno) is
// carried in RecordingError.systemCall.
import CLiveTraceShims
import Glibc
import LiveTraceSites

/// Errors of the recording side: system calls, the ring area, the trace.
public enum RecordingError: Error, CustomStringConvertible, Equatable {
    /// A system call failed.
    case systemCall(SystemCallError)
    /// The ring-area file is not one this version can use.
    case badRingArea(path: String, reason: String)
    /// A trace file is damaged or of an unknown version.
    case damagedTrace(file: String, reason: String)
    /// A trace directory lacks a file every trace has.
    case missingTraceFile(String)
    /// The trace directory itself does not exist.
    case missingTraceDirectory(String)
    /// start() while a recording runs, stop() while none does.
    case recordingActive
    case recordingInactive
    /// A salvage of a trace whose recorded process still runs: its
    /// recorder owns the rings.
    case recorderAlive(pid: UInt64, directory: String)
    /// The trace directory to record into is a file, or a directory that
    /// holds something other than a LiveTrace trace (left untouched).
    case traceDirectoryIsAFile(String)
    case traceDirectoryHoldsOtherFiles(String)
    /// The writer layer refused (lt_record_error or -errno from C).
    case writer(call: String, code: Int32)

    public var description: String {
        switch self {
        case let .systemCall(failure):
            return failure.description
        case let .badRingArea(path, reason):
            return "ring area \(path): \(reason)"
        case let .damagedTrace(file, reason):
            return "damaged trace file \(file): \(reason)"
        case let .missingTraceFile(path):
            return "not a LiveTrace trace: \(path) is missing"
        case let .missingTraceDirectory(path):
            return "no trace directory \(path) (record one with `livetrace record -d \(path) -- PROGRAM`)"
        case let .traceDirectoryIsAFile(path):
            return "\(path) exists and is not a directory"
        case let .traceDirectoryHoldsOtherFiles(path):
            return "\(path) exists and does not hold a LiveTrace trace"
        case let .recorderAlive(pid, directory):
            return "process \(pid), which recorded \(directory), is still running: stop its recording instead"
        case .recordingActive: return "a recording is already active in this process"
        case .recordingInactive: return "no recording is active in this process"
        case let .writer(call, code):
            let reason: String
            switch -code {
            case 1001: reason = "bad magic"
            case 1002: reason = "unknown ring-area version"
            case 1003: reason = "inconsistent ring-area layout"
            case 1004: reason = "a recording is already active"
            case 1005: reason = "no recording is active"
            default: reason = String(cString: strerror(-code))
            }
            return "\(call) failed: \(reason) (\(code))"
        }
    }
}

enum Sys {
    @inline(__always)
    static func retrying<T: BinaryInteger>(_ call: String, _ subject: String, _ body: () -> T) throws(RecordingError) -> T {
        do {
            return try SystemCall.retrying(call, subject: subject, body, failed: { $0 < 0 })
        } catch {
            throw .systemCall(error)
        }
    }

    static func open(_ path: String, _ flags: Int32, _ mode: mode_t = 0o644) throws(RecordingError) -> Int32 {
        try retrying("open", path) { Glibc.open(path, flags | O_CLOEXEC, mode) }
    }

    static func close(_ fd: Int32) { _ = Glibc.close(fd) }

    static func ftruncate(_ fd: Int32, _ size: Int, _ subject: String) throws(RecordingError) {
        _ = try retrying("ftruncate", subject) { Glibc.ftruncate(fd, off_t(size)) }
    }

    /// Reserves the blocks of [0, size): a page of a MAP_SHARED file that the
    /// file system cannot back (disk full) is a SIGBUS in the traced program
    /// at its first store, so the space is taken when the area is created.
    static func fallocate(_ fd: Int32, _ size: Int, _ subject: String) throws(RecordingError) {
        // posix_fallocate returns the error instead of setting errno.
        do throws(SystemCallError) {
            _ = try SystemCall.retrying("posix_fallocate", subject: subject, {
                let result = Glibc.posix_fallocate(fd, 0, off_t(size))
                errno = result
                return result
            }, failed: { $0 != 0 })
        } catch {
            throw .systemCall(error)
        }
    }

    static func fileSize(_ fd: Int32, _ subject: String) throws(RecordingError) -> Int {
        var st = stat()
        _ = try retrying("fstat", subject) { Glibc.fstat(fd, &st) }
        return Int(st.st_size)
    }

    /// Maps a ring-area file. MADV_RANDOM: a fault must bring in its own
    /// page only. The file is reserved with fallocate, so a read-around fills
    /// every page of its window with zeros, and the window is the disk's
    /// read-ahead (8 MiB on the project machines): the 64 ring headers
    /// written at creation paged in the whole 128 MiB area, about 56 ms of
    /// CPU and as much again to free it at exit. Readers and writers touch
    /// only the header pages and the pages that hold events.
    static func mmapShared(_ fd: Int32, _ size: Int, _ subject: String) throws(RecordingError) -> UnsafeMutableRawPointer {
        guard let p = Glibc.mmap(nil, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0), p != MAP_FAILED else {
            throw .systemCall(SystemCallError(call: "mmap", subject: subject, errno: errno))
        }
        _ = Glibc.madvise(p, size, MADV_RANDOM)
        return p
    }

    static func munmap(_ p: UnsafeMutableRawPointer, _ size: Int) { _ = Glibc.munmap(p, size) }

    /// Writes all of `bytes`, retrying EINTR and short writes.
    static func writeAll(_ fd: Int32, _ bytes: UnsafeRawBufferPointer, _ subject: String) throws(RecordingError) {
        var done = 0
        while done < bytes.count {
            let n = try retrying("write", subject) { Glibc.write(fd, bytes.baseAddress! + done, bytes.count - done) }
            done += n
        }
    }

    static func writeAll(_ fd: Int32, _ bytes: [UInt8], _ subject: String) throws(RecordingError) {
        var done = 0
        while done < bytes.count {
            let n = try retrying("write", subject) {
                bytes.withUnsafeBytes { Glibc.write(fd, $0.baseAddress! + done, $0.count - done) }
            }
            done += n
        }
    }

    static func mkdir(_ path: String) throws(RecordingError) {
        if Glibc.mkdir(path, 0o755) == 0 { return }
        let e = errno
        if e == EEXIST, let dir = opendir(path) {
            closedir(dir)
            return
        }
        throw .systemCall(SystemCallError(call: "mkdir", subject: path, errno: e))
    }

    /// Reads a whole file.
    static func readFile(_ path: String) throws(RecordingError) -> [UInt8] {
        do {
            return try SystemCall.readFile(path)
        } catch {
            throw .systemCall(SystemCallError(call: error.call.prefix { $0 != "(" }.description, subject: path, errno: error.errno))
        }
    }

    /// The temporary name of a file being written is its name plus this.
    static let temporarySuffix = ".tmp"

    /// `bytes` as the content of `path`, which a reader sees whole or not at
    /// all, old or new:
    ///   1. write `path` + temporarySuffix;
    ///   2. when `path` exists, exchange the two names (RENAME_EXCHANGE), then
    ///      unlink the temporary name, which now holds the old content;
    ///   3. otherwise (or on a file system that cannot exchange), rename the
    ///      temporary file to `path`.
    /// Why the exchange: ext4 (auto_da_alloc, its default) starts the
    /// writeback of a file renamed over an existing one, a disk write per
    /// replace (about 0.15 ms of `record -- fib 3`'s finish, which replaces
    /// the info.json of its start); an exchange replaces nothing.
    static func writeFileAtomically(_ path: String, _ bytes: [UInt8]) throws(RecordingError) {
        let temporary = path + temporarySuffix
        let fd = try open(temporary, O_WRONLY | O_CREAT | O_TRUNC)
        defer { close(fd) }
        try writeAll(fd, bytes, temporary)
        if exists(path) {
            var exchanged: Int = 0
            repeat { exchanged = lt_sys_rename_exchange(temporary, path) } while exchanged == -Int(EINTR)
            if exchanged == 0 {
                try unlinkIfPresent(temporary)
                return
            }
        }
        _ = try retrying("rename", temporary) { Glibc.rename(temporary, path) }
    }

    static func exists(_ path: String) -> Bool { Glibc.access(path, F_OK) == 0 }

    static func unlinkIfPresent(_ path: String) throws(RecordingError) {
        if Glibc.unlink(path) == 0 || errno == ENOENT { return }
        throw .systemCall(SystemCallError(call: "unlink", subject: path, errno: errno))
    }

    /// The size of the file at `path`, 0 when it cannot be opened.
    static func fileSizeOrZero(_ path: String) -> Int {
        guard let fd = try? open(path, O_RDONLY) else { return 0 }
        defer { close(fd) }
        return (try? fileSize(fd, path)) ?? 0
    }
}

// MARK: - the trace directory before a recording

extension Sys {
    /// Makes `path` ready to receive a new trace, with uftrace's habit (and
    /// `livetrace record`'s): a missing or empty directory is used as it is;
    /// an older trace (it has info.json) is renamed `path.old`, replacing any
    /// older `path.old`; anything else is refused (`traceDirectoryIsAFile`,
    /// `traceDirectoryHoldsOtherFiles`; the C API says ENOTDIR, ENOTEMPTY), so
    /// no stream of another recording can mix into the new one and nothing
    /// that is not a trace is ever removed.
    static func prepareTraceDirectory(_ path: String) throws(RecordingError) {
        var status = stat()
        guard lstat(path, &status) == 0 else {
            if errno == ENOENT { return }
            throw .systemCall(SystemCallError(call: "lstat", subject: path, errno: errno))
        }
        guard status.st_mode & S_IFMT == S_IFDIR else { throw .traceDirectoryIsAFile(path) }
        let entries = try TraceReader.listDirectory(path)
        if entries.isEmpty { return }
        guard entries.contains(TraceFormat.infoFile) else { throw .traceDirectoryHoldsOtherFiles(path) }
        let old = path + ".old"
        try removeTree(old)
        _ = try retrying("rename", path) { Glibc.rename(path, old) }
    }

    /// Removes `path` and, for a directory, everything under it (symbolic
    /// links are removed, never followed). A missing `path` is not an error.
    static func removeTree(_ path: String) throws(RecordingError) {
        var status = stat()
        guard lstat(path, &status) == 0 else {
            if errno == ENOENT { return }
            throw .systemCall(SystemCallError(call: "lstat", subject: path, errno: errno))
        }
        if status.st_mode & S_IFMT == S_IFDIR {
            for name in try TraceReader.listDirectory(path) { try removeTree(path + "/" + name) }
            _ = try retrying("rmdir", path) { Glibc.rmdir(path) }
        } else {
            _ = try retrying("unlink", path) { Glibc.unlink(path) }
        }
    }
}
