// Synthetic traces with an injected clock (1 tick = 1 ns): every duration,
// loss and unusual ending is known exactly, so readers' outputs are checked
// digit for digit.
import Foundation
import LiveTraceRecording
import XCTest

enum SyntheticTraces {
    static let bias: UInt64 = 0x40_0000
    static let addresses: [String: UInt64] = ["main": bias + 0x1000, "work": bias + 0x1100, "leaf": bias + 0x1200]

    static let objects = ObjectTable(objects: [
        TraceObject(
            path: "/synthetic/prog", buildId: "feedface", loadBias: bias, ranges: [[bias + 0x1000, bias + 0x2000]],
            symbols: [
                TraceSymbol(name: "main", address: 0x1000, size: 0x100),
                TraceSymbol(name: "work", address: 0x1100, size: 0x100),
                TraceSymbol(name: "leaf", address: 0x1200, size: 0x100),
            ])
    ])

    /// (time, "+name" entry | "*name" entry only | "-name" exit | "~name"
    /// unwound exit | "!N" N lost).
    static func events(_ script: [(UInt64, String)]) -> [TraceEvent] {
        script.map { time, step in
            let name = String(step.dropFirst())
            switch step.first! {
            case "+": return TraceEvent(kind: .entry, address: addresses[name]!, timestamp: time)
            case "*": return TraceEvent(kind: .entry, address: addresses[name]!, timestamp: time, flags: TraceEvent.flagEntryOnly)
            case "-": return TraceEvent(kind: .exit, address: addresses[name]!, timestamp: time)
            case "~": return TraceEvent(kind: .exit, address: addresses[name]!, timestamp: time, flags: TraceEvent.flagUnwound)
            default: return TraceEvent(kind: .lost, address: UInt64(name)!, timestamp: time)
            }
        }
    }

    /// Thread 100: main -> work -> leaf (1 us), leaf (500 ns); work
    /// 149.9 us; 3 events lost; main 2.1 ms.
    static let thread100 = events([
        (0, "+main"), (100, "+work"), (200, "+leaf"), (1_200, "-leaf"), (2_000, "+leaf"), (2_500, "-leaf"),
        (150_000, "-work"), (160_000, "!3"), (2_100_000, "-main"),
    ])
    /// Thread 101: work -> leaf, closed by work's exit (left without exit);
    /// an exit of leaf without its entry; leaf -> leaf unwound; a leaf
    /// still open at the end.
    static let thread101 = events([
        (500, "+work"), (600, "+leaf"), (700, "-work"), (900, "-leaf"), (1_000, "+leaf"), (1_100, "+leaf"),
        (1_150, "~leaf"), (1_300, "-leaf"), (5_000, "+leaf"),
    ])

    static func trace(_ streams: [[TraceEvent]] = [thread100, thread101]) -> Trace {
        let clock = ClockCalibration(start: ClockPair(tsc: 0, monotonicNs: 0), end: ClockPair(tsc: 1_000_000_000, monotonicNs: 1_000_000_000))
        let info = TraceInfo(command: ["prog", "arg"], pid: 100, clock: clock)
        return Trace(info: info, objects: objects, streams: streams.enumerated().map { i, events in
            ThreadStream(identity: StreamIdentity(pid: 100, tid: UInt64(100 + i), ring: UInt32(i)), events: events)
        })
    }

    /// The trace written as a directory in a fresh scratch directory.
    static func directory(_ name: String, _ trace: Trace = trace()) throws -> String {
        let dir = ReadingFixtures.scratch(name) + "/trace"
        try TraceWriter.write(trace, to: dir)
        return dir
    }
}
