// Recording another process: what `livetrace record` runs around the
// program it starts (the program's LD_PRELOAD shim attaches with
// lt_record_attach_env).
//
//   1. RecordingSession.start(directory:): DIR/rings is created, the drain
//      attaches as reader, its thread starts draining (with
//      `drainFromProgramStart`, at step 2's programStarted instead);
//   2. the CLI starts the program with `environment` added (LIVETRACE_RINGS);
//      programStarted(pid:) records the pid, captureObjects(pid:) the map
//      and symbols (call it once the program's libraries are loaded, and
//      again whenever it may have loaded more: the last capture is kept);
//   3. when the program has ended — by exit or by a signal — finish(): the
//      thread stops, the last drain moves everything the program published
//      and counts what it lost, info.json is marked complete (and salvaged
//      when the program died of a signal), DIR/rings is removed.
//
// If the CLI itself dies, DIR/rings stays: TraceDrain.salvage(directory:)
// completes the trace later.
import CLiveTraceShims
import Glibc
import LiveTraceSites
import Synchronization

/// The drain's own thread: drains every `interval` while nothing moves,
/// continuously while events flow. Shared by Recorder and RecordingSession.
///
/// A plain pthread (no Foundation: Recorder runs inside liblivetrace.so).
/// It runs inside the traced program when Recorder starts it, so the program
/// must not notice it: every asynchronous signal is blocked in it (a signal
/// sent to the process is delivered to one of the program's own threads, as
/// it would be without LiveTrace), and its own calls are not recorded.
///
/// Ownership: `running` is written by stop() and read by the thread;
/// `failure` is written by the thread before it ends and read by stop()
/// after pthread_join, which orders the two.
final class DrainThread: @unchecked Sendable {
    private let drain: TraceDrain
    private let interval: Duration
    private let running = Atomic<Bool>(true)
    private let failure = Mutex<RecordingError?>(nil)
    private var thread: pthread_t?

    /// Signals that stay deliverable in the drain thread: the faults the
    /// kernel sends to the faulting thread whatever its mask.
    private static let synchronousSignals = [SIGSEGV, SIGBUS, SIGILL, SIGFPE]

    /// Starts the thread.
    init(drain: TraceDrain, interval: Duration) throws(RecordingError) {
        self.drain = drain
        self.interval = interval
        let box = Unmanaged.passRetained(self).toOpaque()
        var handle = pthread_t()
        let status = pthread_create(&handle, nil, { argument in
            let thread = Unmanaged<DrainThread>.fromOpaque(argument!).takeRetainedValue()
            thread.loop()
            return nil
        }, box)
        guard status == 0 else {
            Unmanaged<DrainThread>.fromOpaque(box).release()
            throw .systemCall(SystemCallError(call: "pthread_create", subject: "drain thread", errno: status))
        }
        thread = handle
    }

    /// The thread's name (ps, top, gdb), written where pthread_setname_np
    /// writes it (that function needs _GNU_SOURCE, which Swift does not set).
    private static let threadName = "livetrace-drain"
    private static let threadNameFile = "/proc/thread-self/comm"

    private func loop() {
        if let fd = try? Sys.open(Self.threadNameFile, O_WRONLY) {
            try? Sys.writeAll(fd, Array(Self.threadName.utf8), Self.threadNameFile)
            Sys.close(fd)
        }
        var blocked = sigset_t()
        sigfillset(&blocked)
        for signal in Self.synchronousSignals { sigdelset(&blocked, signal) }
        lt_sigmask_remove_protected(&blocked)
        pthread_sigmask(SIG_BLOCK, &blocked, nil)
        // The drain is the tracer, not the program: its events are not recorded.
        lt_record_thread_ignore(1)
        while running.load(ordering: .acquiring) {
            do throws(RecordingError) {
                // One pass, then a pause that a writer ends early by
                // passing its ring's high-water mark or waiting for room.
                try drain.drainOnce()
                drain.waitForWriters(timeout: interval)
            } catch {
                failure.withLock { $0 = error }
                drain.detachReader()
                return
            }
        }
    }

    /// Stops the thread, waits for it, and reports the error that stopped it
    /// early, if any.
    func stop() throws(RecordingError) {
        running.store(false, ordering: .releasing)
        drain.interruptWait()
        if let thread {
            pthread_join(thread, nil)
            self.thread = nil
        }
        if let error = failure.withLock({ $0 }) { throw error }
    }
}

public final class RecordingSession: @unchecked Sendable {
    public let directory: String
    public let area: RingArea
    private let drain: TraceDrain
    private let interval: Duration
    /// Written by start/programStarted and finish, on the caller's thread
    /// (the steps are called in order, from one thread).
    private var thread: DrainThread?

    /// Environment variables the program must get.
    public var environment: [String: String] { [LT_RECORD_RINGS_ENV: area.path] }

    private init(directory: String, area: RingArea, drain: TraceDrain, interval: Duration, startDrain: Bool) throws(RecordingError) {
        self.directory = directory
        self.area = area
        self.drain = drain
        self.interval = interval
        if startDrain { thread = try DrainThread(drain: drain, interval: interval) }
    }

    /// Step 1: creates `directory` with its ring area and starts draining.
    /// `options`: how the recording is made, for info.json (its wait is
    /// set from `waitTimeoutMicroseconds`). `drainFromProgramStart`: the
    /// drain thread starts in programStarted(pid:), so that creating it
    /// (0.3 to 0.6 ms on a two-core machine, where the new thread often
    /// takes the creator's core) overlaps the program's loading instead of
    /// delaying its spawn; the rings hold what the program writes before.
    public static func start(
        directory: String, command: [String], options: RecordingOptions = RecordingOptions(recorder: RecordingOptions.recordCommand),
        ringCount: Int = RingArea.defaultRingCount,
        ringCapacity: Int = RingArea.defaultRingCapacity,
        waitTimeoutMicroseconds: UInt32 = RingArea.defaultWaitTimeoutMicroseconds,
        drainInterval: Duration = .milliseconds(2),
        drainFromProgramStart: Bool = false
    ) throws(RecordingError) -> RecordingSession {
        try Sys.mkdir(directory)
        let area = try RingArea.create(
            path: directory + "/" + TraceFormat.ringsFile, ringCount: ringCount, ringCapacity: ringCapacity,
            waitTimeoutMicroseconds: waitTimeoutMicroseconds)
        // A failure leaves no ring area behind (nothing could have attached).
        let drain: TraceDrain
        do throws(RecordingError) {
            var options = options
            options.waitMicroseconds = UInt64(waitTimeoutMicroseconds)
            drain = try TraceDrain(directory: directory, area: area, command: command, pid: 0, options: options)
        } catch {
            try? Sys.unlinkIfPresent(area.path)
            throw error
        }
        do throws(RecordingError) {
            return try RecordingSession(
                directory: directory, area: area, drain: drain, interval: drainInterval, startDrain: !drainFromProgramStart)
        } catch {
            drain.detachReader()
            try? Sys.unlinkIfPresent(area.path)
            throw error
        }
    }

    /// Step 2: the program's pid, for info.json; the drain thread starts
    /// now if it has not yet (`drainFromProgramStart`).
    public func programStarted(pid: Int32) throws(RecordingError) {
        if thread == nil { thread = try DrainThread(drain: drain, interval: interval) }
        try drain.setProgram(pid: UInt64(pid))
    }

    /// Step 2: the program's memory map and symbols, for objects.json.
    public func captureObjects(pid: Int32) throws(RecordingError) {
        try drain.writeObjects(try ObjectCapture.capture(pid: pid))
    }

    /// Step 2: a table the caller captured (and merged: `livetrace record`
    /// keeps the images a program had before an exec), for objects.json.
    public func writeObjects(_ table: ObjectTable) throws(RecordingError) {
        try drain.writeObjects(table)
    }

    /// Step 3, after the program ended. `programDied`: it was killed by a
    /// signal (the trace is then marked salvaged).
    @discardableResult
    public func finish(programDied: Bool) throws(RecordingError) -> DrainSummary {
        try thread?.stop()
        let summary = try drain.finish(salvaged: programDied)
        try Sys.unlinkIfPresent(area.path)
        return summary
    }
}
