// Recording the current process into a trace directory, from inside:
//
//   start: 1. an older trace in DIR becomes DIR.old (a directory holding
//             anything else is refused); create DIR/rings (RingArea) and the
//             drain (info.json marked incomplete, objects.json of the process
//             as mapped now);
//          2. attach the writer layer (lt_record_attach): from here every
//             lt_record_entry/exit of any thread lands in a ring;
//          3. start the drain thread (its own events are ignored: it is the
//             tracer, not the program).
//          A failure at any step undoes the steps before it: the writers are
//          detached and the files of step 1 are removed (DIR too, when
//          step 1 created it).
//   stop:  1. lt_record_detach: no writer stores an event after it returns;
//          2. stop and join the drain thread;
//          3. the final drain, objects.json again (objects loaded since start),
//             info.json marked complete; DIR/rings is removed.
//          Step 3 runs even when step 1 or 2 failed (the drain thread may
//          have stopped on a full disk that has space again); the first
//          error is thrown. If step 3 fails, DIR/rings stays, so
//          TraceDrain.salvage(directory:) can complete the trace later.
//
// No Foundation here: this file is linked into liblivetrace.so (lt_trace_start).
import CLiveTraceShims
import Glibc
import Synchronization

public final class Recorder: @unchecked Sendable {
    public let directory: String
    public let area: RingArea
    private let drain: TraceDrain
    private let thread: DrainThread
    /// True when start created the directory (discard then removes it).
    private let createdDirectory: Bool

    /// At most one recording per process (the writer layer has one area).
    private static let current = Mutex<Recorder?>(nil)

    private init(directory: String, area: RingArea, drain: TraceDrain, thread: DrainThread, createdDirectory: Bool) {
        self.createdDirectory = createdDirectory
        self.directory = directory
        self.area = area
        self.drain = drain
        self.thread = thread
    }

    /// Starts recording this process into `directory` (created if needed).
    /// `options`: how the caller records, for info.json (its wait is set
    /// from `waitTimeoutMicroseconds`).
    public static func start(
        directory: String, options: RecordingOptions = RecordingOptions(recorder: "Recorder"),
        ringCount: Int = RingArea.defaultRingCount,
        ringCapacity: Int = RingArea.defaultRingCapacity,
        waitTimeoutMicroseconds: UInt32 = RingArea.defaultWaitTimeoutMicroseconds,
        drainInterval: Duration = .milliseconds(2)
    ) throws(RecordingError) -> Recorder {
        try current.withLock { (current: inout Recorder?) throws(RecordingError) -> Recorder in
            guard current == nil else { throw .recordingActive }
            // Step 1.
            try Sys.prepareTraceDirectory(directory)
            let createdDirectory = !Sys.exists(directory)
            try Sys.mkdir(directory)
            var attached = false
            var drain: TraceDrain?
            do throws(RecordingError) {
                let area = try RingArea.create(
                    path: directory + "/" + TraceFormat.ringsFile, ringCount: ringCount, ringCapacity: ringCapacity,
                    waitTimeoutMicroseconds: waitTimeoutMicroseconds)
                var options = options
                options.waitMicroseconds = UInt64(waitTimeoutMicroseconds)
                let newDrain = try TraceDrain(
                    directory: directory, area: area, command: CommandLine.arguments, pid: UInt64(getpid()),
                    options: options)
                drain = newDrain
                try newDrain.writeObjects(try ObjectCapture.capture(pid: getpid()))
                // Step 2.
                let status = lt_record_attach(area.base, area.size)
                guard status == 0 else { throw .writer(call: "lt_record_attach", code: status) }
                attached = true
                // Step 3.
                let thread = try DrainThread(drain: newDrain, interval: drainInterval)
                let recorder = Recorder(
                    directory: directory, area: area, drain: newDrain, thread: thread, createdDirectory: createdDirectory)
                current = recorder
                return recorder
            } catch {
                if attached { _ = lt_record_detach() }
                drain?.detachReader()
                TraceWriter.removeRecording(in: directory, createdDirectory: createdDirectory)
                throw error
            }
        }
    }

    /// Stops recording and completes the trace directory.
    @discardableResult
    public func stop() throws(RecordingError) -> DrainSummary {
        try Recorder.current.withLock { (current: inout Recorder?) throws(RecordingError) -> DrainSummary in
            guard current === self else { throw .recordingInactive }
            current = nil
            var firstError: RecordingError?
            // Step 1.
            let status = lt_record_detach()
            if status != 0 { firstError = .writer(call: "lt_record_detach", code: status) }
            // Step 2.
            do throws(RecordingError) {
                try thread.stop()
            } catch {
                firstError = firstError ?? error
            }
            // Step 3.
            let summary = try drain.finish(objects: try ObjectCapture.capture(pid: getpid()))
            try Sys.unlinkIfPresent(area.path)
            if let firstError { throw firstError }
            return summary
        }
    }
}

extension Recorder {
    /// Undoes a start whose caller could not go on (GraphRecording when no
    /// function matches): stops, then removes everything start created —
    /// start found the directory missing or empty (an older trace went to
    /// DIR.old), so every file in it is this recording's; the directory
    /// itself goes when start created it.
    public func discard() {
        _ = try? stop()
        TraceWriter.removeRecording(in: directory, createdDirectory: createdDirectory)
    }
}
