// The function graph: entry and exit events of the chosen functions, by
// return hooking with a per-thread shadow stack. The mechanism is C and
// assembly (lt_graph.c, lt_return_x86_64.S, lt_unwind.c; protocol in
// lt_graph.h); this file registers it as an ops and owns its lifetime.
//
// Events go to the recording active in the process (lt_record_attach*,
// Recorder): an entry at the frame's depth, an exit at the same depth, the
// exit flagged LT_EVENT_FLAG_UNWOUND when the frame was left without a
// return (longjmp, C++ exception, pthread_exit).
//
// Functions that leave by tail calls instead of through their return
// address (Swift async functions and continuations, `EntryOnly`) are taken
// by a second ops whose callback records their entry flagged
// LT_EVENT_FLAG_ENTRY_ONLY and never hooks their return; the first ops
// takes every other function of the filter.
import CLiveTraceShims
import Glibc
import Synchronization

/// Counters of the function graph over all threads since the process started.
public struct FunctionGraphStatistics: Sendable, Equatable {
    /// Calls neither hooked nor recorded: the thread's shadow stack was full.
    public var overflow: UInt64
    /// Exits recorded flagged unwound.
    public var unwound: UInt64
    /// Hooked return slots restored before an unwinder ran.
    public var restored: UInt64
    /// Restored slots hooked again at a catch.
    public var rehooked: UInt64
    /// Returns through a frame that had been popped as dead.
    public var recovered: UInt64
    /// Calls not hooked because a shadow stack could not be mapped.
    public var noStack: UInt64
    /// Shadow stacks mapped (threads that made a traced call).
    public var stacks: UInt64
}

/// A running function graph. Only one runs per process at a time (the shadow
/// stack and the depth limit are per process): `start` while one runs throws
/// `alreadyRegistered`.
public final class FunctionGraph: Sendable {
    /// The most frames a thread's shadow stack holds, and the largest depth limit.
    public static let stackCapacity = Int(LT_GRAPH_STACK_CAPACITY)

    public let ops: Ops
    /// The entry-only functions' ops; nil when the filter matched none.
    public let entryOnlyOps: Ops?
    public let maxDepth: Int

    /// The running graph (one at a time); a graph runs from its start to
    /// its stop. Starting and stopping hold this lock throughout.
    private static let current = Mutex<FunctionGraph?>(nil)

    private init(ops: Ops, entryOnlyOps: Ops?, maxDepth: Int) {
        self.ops = ops
        self.entryOnlyOps = entryOnlyOps
        self.maxDepth = maxDepth
    }

    /// Starts recording entries and exits of every function matching
    /// `functions` (globs over raw and demangled names, or "0x…"
    /// addresses; empty: every function with a site) except `excluding`.
    /// Calls at depth `maxDepth` or deeper are followed (so depths stay
    /// right) but not recorded.
    public static func start(
        functions: [String], excluding: [String] = [], maxDepth: Int = stackCapacity
    ) throws(TraceError) -> FunctionGraph {
        guard maxDepth >= 1, maxDepth <= stackCapacity else {
            throw TraceError.invalidArgument("depth limit \(maxDepth) outside 1...\(stackCapacity)")
        }
        return try current.withLock { (current) throws(TraceError) -> FunctionGraph in
            if current != nil { throw TraceError.alreadyRegistered }
            let graph = try startLocked(functions: functions, excluding: excluding, maxDepth: maxDepth)
            current = graph
            return graph
        }
    }

    /// `start` under the `current` lock.
    private static func startLocked(functions: [String], excluding: [String], maxDepth: Int) throws(TraceError) -> FunctionGraph {
        guard lt_graph_pin_code() == 0 else {
            throw TraceError.invalidArgument("the library holding the return trampoline cannot be made permanent (RTLD_NODELETE)")
        }
        // The graph's own entry takes the common case in assembly
        // (lt_tramp_entry_graph) and the rest through the lean entry and this
        // callback (it reads only regs->rsp, the return slot).
        let ops = try Ops(callback: lt_graph_entry_callback, data: nil, flags: [], entry: .graph, entryOnlyFunctions: false)
        let entryOnlyOps = try Ops(callback: lt_graph_entry_only_callback, data: nil, flags: [], entry: nil, entryOnlyFunctions: true)
        OpsRegistry.shared.adopt(ops)
        OpsRegistry.shared.adopt(entryOnlyOps)
        var registered: [Ops] = []
        do throws(TraceError) {
            for each in [ops, entryOnlyOps] {
                for pattern in functions {
                    try OpsRegistry.shared.addFilter(try FunctionPattern(parsing: pattern), to: each)
                }
                for pattern in excluding {
                    try OpsRegistry.shared.addFilter(try FunctionPattern(parsing: pattern), to: each, exclude: true)
                }
            }
            lt_graph_set_max_depth(UInt32(maxDepth))
            // Either ops may match nothing, not both. The main ops last: its
            // resolution's refusals are the ones OpsRegistry keeps.
            var nothing: TraceError?
            for each in [entryOnlyOps, ops] {
                do throws(TraceError) {
                    try OpsRegistry.shared.register(each)
                    registered.append(each)
                } catch {
                    guard case .noMatchingFunction = error else { throw error }
                    nothing = error
                }
            }
            if registered.isEmpty, let nothing { throw nothing }
        } catch {
            for each in registered { try? OpsRegistry.shared.unregister(each) }
            OpsRegistry.shared.destroy(ops)
            OpsRegistry.shared.destroy(entryOnlyOps)
            throw error
        }
        if !registered.contains(where: { $0 === entryOnlyOps }) { OpsRegistry.shared.destroy(entryOnlyOps) }
        return FunctionGraph(ops: ops, entryOnlyOps: registered.contains { $0 === entryOnlyOps } ? entryOnlyOps : nil, maxDepth: maxDepth)
    }

    /// Unpatches the functions. Frames hooked before keep returning through
    /// the (permanent) return trampoline and still record their exits.
    public func stop() throws(TraceError) {
        try FunctionGraph.current.withLock { (current) throws(TraceError) in
            guard current === self else { throw TraceError.notRegistered }
            current = nil
            try stopLocked()
        }
    }

    /// `stop` under the `current` lock, once it no longer names this graph.
    private func stopLocked() throws(TraceError) {
        defer {
            OpsRegistry.shared.destroy(ops)
            if let entryOnlyOps { OpsRegistry.shared.destroy(entryOnlyOps) }
        }
        if let entryOnlyOps { try OpsRegistry.shared.unregister(entryOnlyOps) }
        if OpsRegistry.shared.isRegistered(ops) { try OpsRegistry.shared.unregister(ops) }
    }

    /// The graph started through the C API (lt_graph_start), if any.
    static func stopCurrent() throws(TraceError) {
        let graph = current.withLock { $0 }
        guard let graph else { throw TraceError.notRegistered }
        try graph.stop()
    }

    public static var statistics: FunctionGraphStatistics {
        var raw = lt_graph_stats()
        lt_graph_get_stats(&raw)
        return FunctionGraphStatistics(
            overflow: raw.overflow, unwound: raw.unwound, restored: raw.restored, rehooked: raw.rehooked,
            recovered: raw.recovered, noStack: raw.no_stack, stacks: raw.stacks)
    }

    /// The calling thread's shadow-stack depth.
    public static var currentThreadDepth: Int { Int(lt_graph_thread_depth()) }
}

private func globList(_ list: UnsafePointer<UnsafePointer<CChar>?>?) -> [String] {
    guard var cursor = list else { return [] }
    var result: [String] = []
    while let item = cursor.pointee {
        result.append(String(cString: item))
        cursor += 1
    }
    return result
}

// The C entry point (lt_graph.h) for the LD_PRELOAD shim and `livetrace record`.
@_cdecl("lt_graph_start")
public func livetrace_graph_start(
    _ filters: UnsafePointer<UnsafePointer<CChar>?>?, _ notrace: UnsafePointer<UnsafePointer<CChar>?>?,
    _ maxDepth: UInt32, _ minTimeNs: UInt64
) -> Int32 {
    guard minTimeNs == 0 else { return -Int32(LT_EINVAL) }
    let depth = maxDepth == 0 ? FunctionGraph.stackCapacity : Int(maxDepth)
    do {
        _ = try FunctionGraph.start(functions: globList(filters), excluding: globList(notrace), maxDepth: depth)
        return 0
    } catch {
        return error.cCode
    }
}

@_cdecl("lt_graph_stop")
public func livetrace_graph_stop() -> Int32 {
    do {
        try FunctionGraph.stopCurrent()
        return 0
    } catch {
        return error.cCode
    }
}
