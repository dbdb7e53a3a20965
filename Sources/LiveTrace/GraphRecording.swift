// Recording the function graph of the current process into a trace
// directory, from inside: what `livetrace record` does around another
// process, in one call for a Swift program that links LiveTrace.
//
//   start: 1. Recorder.start: DIR with its ring area, the drain thread, the
//             writer layer attached (every lt_record_* of any thread lands
//             in a ring from here);
//          2. FunctionGraph.start: the chosen functions are patched; their
//             entries and exits are written from the return of this call.
//   stop:  1. FunctionGraph.stop: unpatched (frames still hooked record their
//             exits through the return trampoline until they return);
//          2. Recorder.stop: writers detached, the last drain, objects.json
//             of the process as mapped now, info.json marked complete.
// A failure at step 2 of start undoes step 1 (Recorder.discard: the files
// it created are removed), so no half-started recording is left behind.
import LiveTraceRecording
import LiveTraceTrampolines

/// Why a graph recording could not start or stop.
public enum GraphRecordingError: Error, CustomStringConvertible, Equatable {
    /// The trace directory or the ring area (LiveTraceRecording).
    case recording(RecordingError)
    /// Finding or patching the functions (LiveTraceTrampolines).
    case tracing(TraceError)

    public var description: String {
        switch self {
        case let .recording(error): return "recording: \(error)"
        case let .tracing(error): return "tracing: \(error)"
        }
    }
}

/// A function graph being recorded into a trace directory.
public final class GraphRecording: @unchecked Sendable {
    public let recorder: Recorder
    public let graph: FunctionGraph

    private init(recorder: Recorder, graph: FunctionGraph) {
        self.recorder = recorder
        self.graph = graph
    }

    /// Starts recording entries and exits of `functions` (globs; empty:
    /// every function with a site) minus `excluding`, down to `maxDepth`,
    /// into `directory` (read it with `TraceReport` or `livetrace report`).
    /// The directory is created if missing; an older trace there becomes
    /// `directory.old`; a directory holding anything else is refused.
    /// The C API's lt_trace_start (livetrace.h) is this function.
    /// `recorder`: the name info.json gives the recorder (docs/FORMAT.md).
    public static func start(
        directory: String, functions: [String] = [], excluding: [String] = [],
        maxDepth: Int = FunctionGraph.stackCapacity, recorder recorderName: String = "GraphRecording"
    ) throws(GraphRecordingError) -> GraphRecording {
        // Step 1. A depth of the graph's whole stack is no limit asked for.
        let options = RecordingOptions(
            recorder: recorderName, functions: functions, excluding: excluding,
            maxDepth: maxDepth >= FunctionGraph.stackCapacity ? nil : maxDepth)
        let recorder: Recorder
        do throws(RecordingError) {
            recorder = try Recorder.start(directory: directory, options: options)
        } catch {
            throw .recording(error)
        }
        // Step 2.
        do throws(TraceError) {
            let graph = try FunctionGraph.start(functions: functions, excluding: excluding, maxDepth: maxDepth)
            return GraphRecording(recorder: recorder, graph: graph)
        } catch {
            recorder.discard()
            throw .tracing(error)
        }
    }

    /// Stops and completes the trace directory; returns what was recorded.
    @discardableResult
    public func stop() throws(GraphRecordingError) -> DrainSummary {
        // Step 1 (a failure here still completes the trace: step 2 runs).
        var tracingError: TraceError?
        do throws(TraceError) {
            try graph.stop()
        } catch {
            tracingError = error
        }
        // Step 2.
        let summary: DrainSummary
        do throws(RecordingError) {
            summary = try recorder.stop()
        } catch {
            throw .recording(error)
        }
        if let tracingError { throw .tracing(tracingError) }
        return summary
    }
}
