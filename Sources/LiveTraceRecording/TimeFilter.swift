// The time filter of `livetrace record -t TIME` (uftrace's habit): calls
// shorter than TIME are left out of the trace, applied to a complete trace
// directory after the last drain (the function graph records every call;
// deciding at the exit whether to keep an entry already written would need
// an entry writer that defers, see lt_graph_start).
//
// Per stream, in order, with a stack of the open entries:
//   - entry: kept for now, pushed;
//   - exit: matched to the innermost open entry of the same function (the
//     report's rule; frames above it were left without an exit and stay);
//     duration = exit - entry in ticks; shorter than the threshold: both the
//     entry and the exit go (every callee of a short call is shorter still,
//     so it went before); otherwise both stay;
//   - an exit that matches nothing, a LOST record, an entry never exited:
//     kept (the filter never hides a loss or an unfinished call).
// Each stream file is rewritten through a temporary file and rename: a
// reader sees the old file or the new one, never half of one.

/// What the filter left in the trace.
public struct TimeFilterResult: Equatable, Sendable {
    /// Entry and exit events kept.
    public var events: UInt64
    /// Calls removed (each an entry and its exit).
    public var removedCalls: UInt64
    /// Distinct functions entered among the events kept.
    public var functions: Int
    /// Bytes of the stream files after the rewrite.
    public var bytes: UInt64
}

public enum TimeFilter {
    /// Removes every call shorter than `minimumNanoseconds` from the streams
    /// of the trace in `directory` (converted with its clock calibration).
    public static func apply(directory: String, minimumNanoseconds: UInt64) throws(RecordingError) -> TimeFilterResult {
        let info = try TraceReader.readInfo(directory: directory)
        let nanosecondsPerTick = info.clock.nanosecondsPerTick
        let threshold = nanosecondsPerTick > 0 ? Double(minimumNanoseconds) / nanosecondsPerTick : 0
        var result = TimeFilterResult(events: 0, removedCalls: 0, functions: 0, bytes: 0)
        var entered = Set<UInt64>()
        let streamsPath = directory + "/" + TraceFormat.streamsDirectory
        for name in try TraceReader.listDirectory(streamsPath) where name.hasSuffix("." + TraceFormat.streamExtension) {
            let path = streamsPath + "/" + name
            let stream = try TraceReader.readStream(path: path)
            let (kept, removed) = filter(stream.events, thresholdTicks: threshold)
            result.removedCalls += removed
            for event in kept {
                if event.kind != .lost { result.events += 1 }
                if event.kind == .entry { entered.insert(event.address) }
            }
            var bytes = StreamCodec.header(stream.identity)
            if !kept.isEmpty { bytes += StreamCodec.chunk(eventBytes: try StreamCodec.encode(kept, file: path)) }
            result.bytes += UInt64(bytes.count)
            try Sys.writeFileAtomically(path, bytes)
        }
        result.functions = entered.count
        return result
    }

    /// The events of one stream without the calls shorter than
    /// `thresholdTicks`, and how many calls went.
    static func filter(_ events: [TraceEvent], thresholdTicks: Double) -> (kept: [TraceEvent], removed: UInt64) {
        var slots: [TraceEvent?] = []
        slots.reserveCapacity(events.count)
        var open: [Int] = [] // indices in `slots` of the open entries
        var removed: UInt64 = 0
        for event in events {
            switch event.kind {
            case .entry:
                open.append(slots.count)
                slots.append(event)
            case .exit:
                guard let match = open.lastIndex(where: { slots[$0]?.address == event.address }) else {
                    slots.append(event)
                    continue
                }
                let entryIndex = open[match]
                open.removeSubrange(match...)
                let entry = slots[entryIndex]!
                let ticks = event.timestamp >= entry.timestamp ? event.timestamp - entry.timestamp : 0
                if Double(ticks) < thresholdTicks {
                    slots[entryIndex] = nil
                    removed += 1
                } else {
                    slots.append(event)
                }
            case .lost:
                slots.append(event)
            }
        }
        return (slots.compactMap { $0 }, removed)
    }
}
