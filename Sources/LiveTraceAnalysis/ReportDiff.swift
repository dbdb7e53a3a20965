// `livetrace report --diff OTHER`: two reports side by side, per function
// name (addresses differ between runs), with the change from the first
// trace (base) to the second (other). Rows follow the base report's order
// (its sort key); functions only in the other trace come after, in its
// order. A function missing on one side shows 0 there.
import LiveTraceRecording

public struct ReportDiff: Sendable {
    public struct Row: Sendable, Equatable {
        public var function: String
        public var base: FunctionStats?
        public var other: FunctionStats?

        /// other - base total time, in ns.
        public var totalDelta: Int64 { Self.delta(base?.totalNs, other?.totalNs) }
        public var selfDelta: Int64 { Self.delta(base?.selfNs, other?.selfNs) }
        public var callsDelta: Int64 { Self.delta(base?.calls, other?.calls) }

        /// other - base, saturated to Int64.
        static func delta(_ base: UInt64?, _ other: UInt64?) -> Int64 {
            let a = base ?? 0, b = other ?? 0
            return b >= a ? Int64(clamping: b - a) : -Int64(clamping: a - b)
        }
    }

    public var rows: [Row]

    public init(base: TraceReport, other: TraceReport, sort: ReportSort) {
        func merged(_ functions: [FunctionStats]) -> [(String, FunctionStats)] {
            // One row per name: a function loaded twice adds up.
            var order: [String] = []
            var byName: [String: FunctionStats] = [:]
            for f in functions {
                if var existing = byName[f.function] {
                    existing.calls &+= f.calls
                    existing.totalNs &+= f.totalNs
                    existing.selfNs &+= f.selfNs
                    existing.unfinished &+= f.unfinished
                    existing.minNs = min(existing.minNs, f.minNs)
                    existing.maxNs = max(existing.maxNs, f.maxNs)
                    byName[f.function] = existing
                } else {
                    order.append(f.function)
                    byName[f.function] = f
                }
            }
            return order.map { ($0, byName[$0]!) }
        }
        let baseRows = merged(base.functions)
        let otherRows = merged(other.functions)
        let otherByName = Dictionary(otherRows, uniquingKeysWith: { a, _ in a })
        let baseNames = Set(baseRows.map(\.0))
        rows = baseRows.map { Row(function: $0.0, base: $0.1, other: otherByName[$0.0]) }
            + otherRows.filter { !baseNames.contains($0.0) }.map { Row(function: $0.0, base: nil, other: $0.1) }
    }

    public func text() -> String {
        var out = "  Total time   Total time        Diff   Self time   Self time        Diff       Calls       Calls        Diff  Function\n"
        out += "        base        other                   base       other                    base       other\n"
        out += String(repeating: "  ==========", count: 9) + "  ====================\n"
        for row in rows {
            out += pad(TraceReport.duration(row.base?.totalNs ?? 0)) + pad(TraceReport.duration(row.other?.totalNs ?? 0))
            out += pad(Self.signedDuration(row.totalDelta))
            out += pad(TraceReport.duration(row.base?.selfNs ?? 0)) + pad(TraceReport.duration(row.other?.selfNs ?? 0))
            out += pad(Self.signedDuration(row.selfDelta))
            out += pad(String(row.base?.calls ?? 0)) + pad(String(row.other?.calls ?? 0))
            out += pad(row.callsDelta > 0 ? "+\(row.callsDelta)" : "\(row.callsDelta)")
            out += "  " + row.function + "\n"
        }
        return out
    }

    public func json() -> String {
        var out = "{\n  \"version\": 1,\n  \"diff\": ["
        for (i, row) in rows.enumerated() {
            out += i == 0 ? "\n" : ",\n"
            out += "    {\"function\": \(JSONText.quoted(row.function)), "
            out += "\"base\": {\"calls\": \(row.base?.calls ?? 0), \"total_ns\": \(row.base?.totalNs ?? 0), \"self_ns\": \(row.base?.selfNs ?? 0)}, "
            out += "\"other\": {\"calls\": \(row.other?.calls ?? 0), \"total_ns\": \(row.other?.totalNs ?? 0), \"self_ns\": \(row.other?.selfNs ?? 0)}, "
            out += "\"total_ns_delta\": \(row.totalDelta), \"self_ns_delta\": \(row.selfDelta), \"calls_delta\": \(row.callsDelta)}"
        }
        out += rows.isEmpty ? "]\n}\n" : "\n  ]\n}\n"
        return out
    }

    static func signedDuration(_ ns: Int64) -> String {
        (ns > 0 ? "+" : ns < 0 ? "-" : "") + TraceReport.duration(ns.magnitude)
    }

    private func pad(_ s: String) -> String {
        s.count >= 12 ? s : String(repeating: " ", count: 12 - s.count) + s
    }
}
