// Recording another process: what `livetrace record` runs around the
// program it starts (the program's LD_PRELOAD shim attaches with
// lt_record_attach_env).
//
//   1. RecordingSession.start(directory:): DIR/rings is created, the drain
//      attaches as reader, its thread starts draining;
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
import Foundation
import Synchronization

/// The drain's own thread: drains every `interval` while nothing moves,
/// continuously while events flow. Shared by Recorder and RecordingSession.
final class DrainThread: @unchecked Sendable {
    private let drain: TraceDrain
    private let interval: Duration
    private let running = Atomic<Bool>(true)
    private let failure = Mutex<RecordingError?>(nil)
    private let finished = DispatchSemaphore(value: 0)

    init(drain: TraceDrain, interval: Duration) {
        self.drain = drain
        self.interval = interval
        let thread = Thread { [self] in loop() }
        thread.name = "livetrace-drain"
        thread.start()
    }

    private func loop() {
        // The drain is the tracer, not the program: its events are not recorded.
        lt_record_thread_ignore(1)
        defer { finished.signal() }
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
        finished.wait()
        if let error = failure.withLock({ $0 }) { throw error }
    }
}

public final class RecordingSession: @unchecked Sendable {
    public let directory: String
    public let area: RingArea
    private let drain: TraceDrain
    private let thread: DrainThread

    /// Environment variables the program must get.
    public var environment: [String: String] { [LT_RECORD_RINGS_ENV: area.path] }

    private init(directory: String, area: RingArea, drain: TraceDrain, interval: Duration) {
        self.directory = directory
        self.area = area
        self.drain = drain
        self.thread = DrainThread(drain: drain, interval: interval)
    }

    /// Step 1: creates `directory` with its ring area and starts draining.
    public static func start(
        directory: String, command: [String], ringCount: Int = RingArea.defaultRingCount,
        ringCapacity: Int = RingArea.defaultRingCapacity,
        waitTimeoutMicroseconds: UInt32 = RingArea.defaultWaitTimeoutMicroseconds,
        drainInterval: Duration = .milliseconds(2)
    ) throws(RecordingError) -> RecordingSession {
        try Sys.mkdir(directory)
        let area = try RingArea.create(
            path: directory + "/" + TraceFormat.ringsFile, ringCount: ringCount, ringCapacity: ringCapacity,
            waitTimeoutMicroseconds: waitTimeoutMicroseconds)
        let drain = try TraceDrain(directory: directory, area: area, command: command, pid: 0)
        return RecordingSession(directory: directory, area: area, drain: drain, interval: drainInterval)
    }

    /// Step 2: the program's pid, for info.json.
    public func programStarted(pid: Int32) throws(RecordingError) {
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
        try thread.stop()
        let summary = try drain.finish(salvaged: programDied)
        try Sys.unlinkIfPresent(area.path)
        return summary
    }
}
