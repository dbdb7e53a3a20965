// Recording from inside, for C (livetrace.h, "Recording from inside"):
// lt_trace_start / lt_trace_stop over GraphRecording (LiveTrace), which is
// the Swift API doing the same (Recorder + FunctionGraph). Every entry point
// turns a typed error into its negative LT_E* code; none traps on bad input.
//
// State: `active` (below) holds the recording lt_trace_start began and the
// pid of the process that began it. It is read and written under its mutex
// only; start and stop hold the mutex for their whole run, so they are
// ordered, and the exit hook finds either no recording or a whole one.
//
// At exit (atexit, installed by the first successful start): a recording
// still active in this process is stopped and its directory completed, as
// lt_trace_stop would. The hook only tries the mutex: a thread holding it
// when the program exits is inside lt_trace_start/stop, and waiting for it
// could hang the exit; that recording then stays incomplete (DIR/rings holds
// every published event for a later salvage).
import CLiveTraceShims
import Glibc
import LiveTrace
import LiveTracePreload
import Synchronization

private struct ActiveRecording {
    var recording: GraphRecording
    var pid: pid_t
}

private let active = Mutex<ActiveRecording?>(nil)
private let exitHookInstalled = Atomic<Bool>(false)

@_cdecl("lt_trace_start")
public func livetrace_trace_start(
    _ directory: UnsafePointer<CChar>?, _ filter: UnsafePointer<CChar>?, _ notrace: UnsafePointer<CChar>?,
    _ maxDepth: UInt32
) -> Int32 {
    guard let directory, directory.pointee != 0,
          let functions = GlobList.parse(filter), let excluding = GlobList.parse(notrace) else {
        return -Int32(LT_EINVAL)
    }
    guard maxDepth <= LT_TRACE_MAX_DEPTH else { return -Int32(LT_EINVAL) }
    let depth = maxDepth == 0 ? Int(LT_TRACE_MAX_DEPTH) : Int(maxDepth)
    let path = String(cString: directory)
    return active.withLock { current in
        if current != nil { return -Int32(LT_EALREADY) }
        do throws(GraphRecordingError) {
            let recording = try GraphRecording.start(
                directory: path, functions: functions, excluding: excluding, maxDepth: depth, recorder: "lt_trace_start")
            current = ActiveRecording(recording: recording, pid: getpid())
        } catch {
            return error.cCode
        }
        if !exitHookInstalled.exchange(true, ordering: .acquiringAndReleasing) {
            atexit { completeRecordingAtExit() }
        }
        return 0
    }
}

@_cdecl("lt_trace_stop")
public func livetrace_trace_stop(_ summary: UnsafeMutablePointer<lt_trace_summary>?) -> Int32 {
    summary?.pointee = lt_trace_summary()
    return active.withLock { current in
        // Step 1: only the process that started it stops it (after fork the
        // child has a copy of `current`, but not the drain thread).
        guard let started = current, started.pid == getpid() else { return -Int32(LT_ENOTREG) }
        current = nil
        // Step 2: GraphRecording.stop unpatches, then completes the directory;
        // the recording is over even when it throws.
        do throws(GraphRecordingError) {
            let drained = try started.recording.stop()
            summary?.pointee = lt_trace_summary(
                threads: UInt64(drained.threads), events: drained.events, lost: drained.lost,
                functions: UInt64(drained.functions), bytes: drained.bytes)
            return 0
        } catch {
            return error.cCode
        }
    }
}

/// The atexit hook (see the top of the file).
private func completeRecordingAtExit() {
    let recording: GraphRecording? = active.withLockIfAvailable { current in
        guard let started = current, started.pid == getpid() else { return nil }
        current = nil
        return started.recording
    } ?? nil
    _ = try? recording?.stop()
}

/// The glob lists of lt_trace_start: `;`-separated, as the shim's
/// LIVETRACE_FILTER (a comma would not do: demangled Swift and C++ names,
/// which globs match too, contain commas).
enum GlobList {
    private static let separator = PreloadEnvironment.listSeparator
    private static let space: Character = " "

    /// The globs of `list`, spaces around each removed; [] for NULL or "";
    /// nil when an item is empty ("a;;b", "a;").
    static func parse(_ list: UnsafePointer<CChar>?) -> [String]? {
        guard let list, list.pointee != 0 else { return [] }
        var globs: [String] = []
        for item in String(cString: list).split(separator: separator, omittingEmptySubsequences: false) {
            var glob = Substring(item)
            while glob.first == space { glob = glob.dropFirst() }
            while glob.last == space { glob = glob.dropLast() }
            guard !glob.isEmpty else { return nil }
            globs.append(String(glob))
        }
        return globs
    }
}

extension GraphRecordingError {
    /// The negative LT_E* code; for LT_ETRACEDIR, errno is set to the reason.
    var cCode: Int32 {
        switch self {
        case let .tracing(error):
            // A graph already running is a recording already running.
            return error == .alreadyRegistered ? -Int32(LT_EALREADY) : error.cCode
        case let .recording(error):
            return error.cCode
        }
    }
}

extension RecordingError {
    /// Offsets of the writer layer's own codes (lt_record.h, lt_record_error).
    private static let writerActive = -Int32(LT_RECORD_EACTIVE.rawValue)
    private static let writerInactive = -Int32(LT_RECORD_EINACTIVE.rawValue)
    private static let firstWriterCode = Int32(LT_RECORD_EBADMAGIC.rawValue)

    /// The negative LT_E* code; for LT_ETRACEDIR, errno is set to the reason.
    var cCode: Int32 {
        func traceDirectory(_ reason: Int32) -> Int32 {
            errno = reason
            return -Int32(LT_ETRACEDIR)
        }
        switch self {
        case .recordingActive: return -Int32(LT_EALREADY)
        case .recordingInactive: return -Int32(LT_ENOTREG)
        case let .writer(_, code) where code == Self.writerActive: return -Int32(LT_EALREADY)
        case let .writer(_, code) where code == Self.writerInactive: return -Int32(LT_ENOTREG)
        case let .writer(_, code) where -code >= Self.firstWriterCode: return traceDirectory(EINVAL)
        case let .writer(_, code): return traceDirectory(-code)
        case let .systemCall(failure): return traceDirectory(failure.errno)
        case .badRingArea: return -Int32(LT_EINVAL)
        case .damagedTrace: return traceDirectory(EIO)
        case .missingTraceFile, .missingTraceDirectory: return traceDirectory(ENOENT)
        case .recorderAlive: return traceDirectory(EBUSY)
        case .traceDirectoryIsAFile: return traceDirectory(ENOTDIR)
        case .traceDirectoryHoldsOtherFiles: return traceDirectory(ENOTEMPTY)
        }
    }
}
