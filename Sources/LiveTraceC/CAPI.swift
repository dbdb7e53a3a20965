// The C API of livetrace.h, over the ops registry. Every entry point turns a
// TraceError into its negative LT_E* code; none of them traps on bad input.
// (lt_ops_data, lt_regs_set_resume, lt_strerror and lt_skipped_calls are in
// C, lt_tramp.c: callbacks call them on the hot path.)
import CLiveTraceShims
import LiveTraceTrampolines

// @_cdecl gives these Swift functions the C symbol names fixed by the issue;
// it is the only way to export a C entry point from Swift 6.3.

@_cdecl("lt_ops_create")
public func livetrace_ops_create(_ function: OpsCallback?, _ data: UnsafeMutableRawPointer?, _ flags: UInt32) -> UnsafeMutablePointer<lt_ops>? {
    guard let function else { return nil }
    guard let ops = try? Ops(callback: function, data: data, flags: OpsFlags(rawValue: flags)) else { return nil }
    OpsRegistry.shared.adopt(ops)
    return ops.raw
}

@_cdecl("lt_ops_set_filter")
public func livetrace_ops_set_filter(_ raw: UnsafeMutablePointer<lt_ops>?, _ glob: UnsafePointer<CChar>?) -> Int32 {
    addPattern(raw, glob, exclude: false)
}

@_cdecl("lt_ops_set_notrace")
public func livetrace_ops_set_notrace(_ raw: UnsafeMutablePointer<lt_ops>?, _ glob: UnsafePointer<CChar>?) -> Int32 {
    addPattern(raw, glob, exclude: true)
}

@_cdecl("lt_ops_register")
public func livetrace_ops_register(_ raw: UnsafeMutablePointer<lt_ops>?) -> Int32 {
    guard let ops = Ops.from(raw) else { return -Int32(LT_EINVAL) }
    return code { () throws(TraceError) in try OpsRegistry.shared.register(ops) }
}

@_cdecl("lt_ops_unregister")
public func livetrace_ops_unregister(_ raw: UnsafeMutablePointer<lt_ops>?) -> Int32 {
    guard let ops = Ops.from(raw) else { return -Int32(LT_EINVAL) }
    return code { () throws(TraceError) in try OpsRegistry.shared.unregister(ops) }
}

@_cdecl("lt_ops_destroy")
public func livetrace_ops_destroy(_ raw: UnsafeMutablePointer<lt_ops>?) {
    guard let ops = Ops.from(raw) else { return }
    OpsRegistry.shared.destroy(ops)
}

@_cdecl("lt_replace_function")
public func livetrace_replace_function(_ function: UnsafePointer<CChar>?, _ replacement: UInt, _ error: UnsafeMutablePointer<Int32>?) -> UnsafeMutablePointer<lt_ops>? {
    func fail(_ e: TraceError) -> UnsafeMutablePointer<lt_ops>? {
        error?.pointee = e.cCode
        return nil
    }
    guard let function, replacement != 0 else { return fail(.invalidArgument("NULL function name or replacement")) }
    do throws(TraceError) {
        let ops = try OpsRegistry.shared.replace(try FunctionPattern(parsing: String(cString: function)), with: replacement)
        error?.pointee = 0
        return ops.raw
    } catch {
        return fail(error)
    }
}

private func addPattern(_ raw: UnsafeMutablePointer<lt_ops>?, _ glob: UnsafePointer<CChar>?, exclude: Bool) -> Int32 {
    guard let ops = Ops.from(raw), let glob else { return -Int32(LT_EINVAL) }
    return code { () throws(TraceError) in
        try OpsRegistry.shared.addFilter(try FunctionPattern(parsing: String(cString: glob)), to: ops, exclude: exclude)
    }
}

private func code(_ body: () throws(TraceError) -> Void) -> Int32 {
    do throws(TraceError) {
        try body()
        return 0
    } catch {
        return error.cCode
    }
}

@_cdecl("lt_include_dynamic")
public func livetrace_include_dynamic(_ on: Int32) -> Int32 {
    let previous = OpsRegistry.shared.includeDynamic
    OpsRegistry.shared.includeDynamic = on != 0
    return previous ? 1 : 0
}

@_cdecl("lt_restore_relocated")
public func livetrace_restore_relocated() -> Int32 {
    code { () throws(TraceError) in try OpsRegistry.shared.restoreRelocatedFunctions() }
}
