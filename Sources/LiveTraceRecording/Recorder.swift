// Recording the current process into a trace directory, from inside:
//
//   start: 1. create DIR/rings (RingArea) and the drain (info.json marked
//             incomplete, objects.json of the process as mapped now);
//          2. attach the writer layer (lt_record_attach): from here every
//             lt_record_entry/exit of any thread lands in a ring;
//          3. start the drain thread (its own events are ignored: it is the
//             tracer, not the program).
//   stop:  1. lt_record_detach: no writer stores an event after it returns;
//          2. stop and join the drain thread;
//          3. the final drain, objects.json again (objects loaded since start),
//             info.json marked complete; DIR/rings is removed.
import CLiveTraceShims
import Foundation
import Synchronization

public final class Recorder: @unchecked Sendable {
    public let directory: String
    public let area: RingArea
    private let drain: TraceDrain
    private let thread: DrainThread

    /// At most one recording per process (the writer layer has one area).
    private static let current = Mutex<Recorder?>(nil)

    private init(directory: String, area: RingArea, drain: TraceDrain, interval: Duration) {
        self.directory = directory
        self.area = area
        self.drain = drain
        self.thread = DrainThread(drain: drain, interval: interval)
    }

    /// Starts recording this process into `directory` (created if needed).
    public static func start(
        directory: String, ringCount: Int = RingArea.defaultRingCount,
        ringCapacity: Int = RingArea.defaultRingCapacity,
        waitTimeoutMicroseconds: UInt32 = RingArea.defaultWaitTimeoutMicroseconds,
        drainInterval: Duration = .milliseconds(2)
    ) throws(RecordingError) -> Recorder {
        try current.withLock { (current: inout Recorder?) throws(RecordingError) -> Recorder in
            guard current == nil else { throw .recordingActive }
            // Step 1.
            try Sys.mkdir(directory)
            let area = try RingArea.create(
                path: directory + "/" + TraceFormat.ringsFile, ringCount: ringCount, ringCapacity: ringCapacity,
                waitTimeoutMicroseconds: waitTimeoutMicroseconds)
            let drain = try TraceDrain(
                directory: directory, area: area, command: CommandLine.arguments, pid: UInt64(getpid()))
            try drain.writeObjects(try ObjectCapture.capture(pid: getpid()))
            // Step 2.
            let status = lt_record_attach(area.base, area.size)
            guard status == 0 else {
                drain.detachReader()
                throw .writer(call: "lt_record_attach", code: status)
            }
            // Step 3.
            let recorder = Recorder(directory: directory, area: area, drain: drain, interval: drainInterval)
            current = recorder
            return recorder
        }
    }

    /// Stops recording and completes the trace directory.
    @discardableResult
    public func stop() throws(RecordingError) -> DrainSummary {
        try Recorder.current.withLock { (current: inout Recorder?) throws(RecordingError) -> DrainSummary in
            guard current === self else { throw .recordingInactive }
            current = nil
            // Step 1.
            let status = lt_record_detach()
            // Step 2.
            try thread.stop()
            guard status == 0 else { throw .writer(call: "lt_record_detach", code: status) }
            // Step 3.
            let summary = try drain.finish(objects: try ObjectCapture.capture(pid: getpid()))
            try Sys.unlinkIfPresent(area.path)
            return summary
        }
    }
}

extension Duration {
    var seconds: Double {
        let (s, attoseconds) = components
        return Double(s) + Double(attoseconds) / 1e18
    }
}

// MARK: - C entry points

/// The recording in progress through the C API, if any.
private let cRecorder = Mutex<Recorder?>(nil)

/// `int lt_recording_start(const char *directory)`: starts recording this
/// process into `directory` with the default ring sizes. Returns 0, -errno of
/// the failing system call, or -1 (a recording is active; the writer layer
/// refused). `@_cdecl` gives the function its C symbol name, which is how
/// liblivetrace.so exports it to C programs.
@_cdecl("lt_recording_start")
public func lt_recording_start(_ directory: UnsafePointer<CChar>?) -> Int32 {
    guard let directory else { return -EINVAL }
    return cRecorder.withLock { current in
        guard current == nil else { return -1 }
        do throws(RecordingError) {
            current = try Recorder.start(directory: String(cString: directory))
            return 0
        } catch {
            return error.cStatus
        }
    }
}

/// `int lt_recording_stop(void)`: stops the recording lt_recording_start
/// began and completes its trace directory. Returns 0, -errno, or -1.
@_cdecl("lt_recording_stop")
public func lt_recording_stop() -> Int32 {
    cRecorder.withLock { current in
        guard let recorder = current else { return -1 }
        current = nil
        do throws(RecordingError) {
            try recorder.stop()
            return 0
        } catch {
            return error.cStatus
        }
    }
}

extension RecordingError {
    var cStatus: Int32 {
        if case let .systemCall(_, _, errno) = self { return -errno }
        return -1
    }
}
