// The Swift API of trampolines and ops: attach a closure to functions chosen
// by glob, detach, replace a function by another. Thread-safe: every
// operation goes through OpsRegistry's lock and the text poke.
// lt_regs, lt_regs_set_resume and lt_strerror are part of this API (a
// closure reads and edits the registers): @_exported is the only way to
// re-export a C module's declarations to `import LiveTrace` users.
@_exported import CLiveTraceShims
import LiveTraceSites
import LiveTraceTrampolines

/// One call, as a closure attached with `Tracer.attach` sees it at the
/// function's entry.
public struct FunctionCall {
    /// The site of the called function (its entry, after endbr64).
    public let site: UInt
    /// The function's return address, in its caller.
    public let returnAddress: UInt
    /// The registers at entry: the argument registers, xmm0–7 and rsp;
    /// writing an argument register changes what the function receives.
    /// (r12–r14 and resume are not filled: closures run through the lean
    /// entry, like C callbacks without LT_OPS_SAVE_REGS.)
    public let registers: UnsafeMutablePointer<lt_regs>
}

/// An attached closure or a replacement. Detach it to stop; dropping the last
/// reference without detaching detaches it too.
public final class TraceHandle: @unchecked Sendable {
    public let ops: Ops

    init(ops: Ops) {
        self.ops = ops
    }

    /// The functions this handle is attached to now.
    public var functions: [Site] { OpsRegistry.shared.attachedSites(of: ops) }

    public var isAttached: Bool { OpsRegistry.shared.isRegistered(ops) }

    /// Whether the callback runs from leaf stubs (`.success`: the registers
    /// it touches) or why not (`.failure`); nil while no function is
    /// attached, with `flags`, or with leaf stubs off (LIVETRACE_NO_LEAF=1).
    public var leafAnalysis: Result<LeafCallback, LeafRejection>? { OpsRegistry.shared.leafAnalysis(of: ops) }

    /// Unpatches, and returns once no thread is inside the closure. After a
    /// timeout the handle is detached but the closure may still be running;
    /// it is kept alive until it is not. With `waitForQuiescence: false` it
    /// returns after unpatching, and a later grace period reclaims the
    /// trampolines (for high attach/detach rates).
    public func detach(waitForQuiescence: Bool = true) throws(TraceError) {
        try OpsRegistry.shared.unregister(ops, waitForQuiescence: waitForQuiescence)
    }

    deinit {
        // The ops, and the closure box it keeps alive, are freed only after
        // quiescence (now, or at a later grace period).
        OpsRegistry.shared.destroy(ops)
    }
}

final class ClosureBox {
    let body: (FunctionCall) -> Void
    init(_ body: @escaping (FunctionCall) -> Void) { self.body = body }
}

/// The C callback behind every attached closure: the box is borrowed, not
/// retained, so concurrent calls do not contend on its reference count.
private let closureCallback: OpsCallback = { ip, parentIP, ops, regs in
    guard let ops, let data = ops.pointee.data, let regs else { return }
    // _withUnsafeGuaranteedRef: the registry keeps the box alive until
    // quiescence, so the closure may be called without a retain/release pair.
    Unmanaged<ClosureBox>.fromOpaque(data)._withUnsafeGuaranteedRef {
        $0.body(FunctionCall(site: ip, returnAddress: parentIP, registers: regs))
    }
}

public enum Tracer {
    /// Calls `body` at the entry of every function matching `patterns`
    /// (globs over raw and demangled names, or "0x…" addresses), except those
    /// matching `excluding`, on the calling thread, from the return of this
    /// call until `detach()`.
    public static func attach(
        _ patterns: [String], excluding: [String] = [],
        _ body: @escaping @Sendable (FunctionCall) -> Void
    ) throws(TraceError) -> TraceHandle {
        guard !patterns.isEmpty else { throw TraceError.invalidArgument("no function pattern") }
        let box = ClosureBox(body)
        let ops = try Ops(callback: closureCallback, data: Unmanaged.passUnretained(box).toOpaque(), flags: [], keepAlive: box)
        return try register(ops, patterns, excluding: excluding)
    }

    public static func attach(
        _ pattern: String, excluding: [String] = [],
        _ body: @escaping @Sendable (FunctionCall) -> Void
    ) throws(TraceError) -> TraceHandle {
        try attach([pattern], excluding: excluding, body)
    }

    /// Calls `callback`, a C-convention function (`lt_func` of livetrace.h:
    /// a C function, or a Swift closure or function converted to
    /// `@convention(c)`, which captures nothing), at the entry of every
    /// function matching `patterns` (every function with a site when empty)
    /// except those matching `excluding`; `callback` receives `data` as
    /// `ops.pointee.data`. The cheapest kind:
    /// without `flags`, a callback that is a small leaf (no call, no loop,
    /// no floating point, no thread-local; see `leafAnalysis`) is called
    /// from a leaf stub that saves only the registers it touches — about
    /// 1.6 ns a call, against 6 ns through the generic entry and 7 ns for a
    /// closure. Swift code is a leaf only when optimized (-O): a debug
    /// build's calls into the runtime send it through the generic entry,
    /// which counts the same calls.
    public static func attach(
        _ patterns: [String], excluding: [String] = [], callback: OpsCallback,
        data: UnsafeMutableRawPointer? = nil, flags: OpsFlags = []
    ) throws(TraceError) -> TraceHandle {
        try register(try Ops(callback: callback, data: data, flags: flags), patterns, excluding: excluding)
    }

    /// Gives `ops` its filter and registers it; the handle owns it from the
    /// start, so a pattern that does not parse or matches nothing frees it.
    private static func register(_ ops: Ops, _ patterns: [String], excluding: [String]) throws(TraceError) -> TraceHandle {
        let handle = TraceHandle(ops: ops)
        OpsRegistry.shared.adopt(ops)
        for pattern in patterns { try OpsRegistry.shared.addFilter(try FunctionPattern(parsing: pattern), to: ops) }
        for pattern in excluding { try OpsRegistry.shared.addFilter(try FunctionPattern(parsing: pattern), to: ops, exclude: true) }
        try OpsRegistry.shared.register(ops)
        return handle
    }

    public static func attach(
        _ pattern: String, excluding: [String] = [], callback: OpsCallback,
        data: UnsafeMutableRawPointer? = nil, flags: OpsFlags = []
    ) throws(TraceError) -> TraceHandle {
        try attach([pattern], excluding: excluding, callback: callback, data: data, flags: flags)
    }

    /// Live patching: from the return of this call, every call of the one
    /// function matching `function` runs `replacement` (an address of a
    /// function with the same signature) instead; calls already inside the
    /// old body finish there. Detach the handle to restore the original.
    public static func replace(_ function: String, with replacement: UnsafeRawPointer) throws(TraceError) -> TraceHandle {
        let ops = try OpsRegistry.shared.replace(try FunctionPattern(parsing: function), with: UInt(bitPattern: replacement))
        return TraceHandle(ops: ops)
    }

    /// Calls skipped by the per-thread recursion guard, over all threads.
    public static var skippedCalls: UInt64 { lt_skipped_calls() }
}
