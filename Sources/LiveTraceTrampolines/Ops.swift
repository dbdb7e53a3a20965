// Ops: one tracing client (ftrace's ftrace_ops) — a callback, a filter, flags.
//
// The callback and its data live in a C `struct lt_ops` (lt_tramp.h) that the
// trampolines read without a lock; it is freed only after quiescence.
import CLiveTraceShims
import LiveTraceSites
import Synchronization

/// One element of a filter: a glob over function names (raw symbol or
/// demangled), the address of a function or of its site, or every function
/// of the main executable.
public enum FunctionPattern: Sendable, Hashable, CustomStringConvertible {
    case glob(String)
    case address(UInt)
    case mainExecutable

    /// The spelling of `.mainExecutable` in filters (no function name
    /// starts with '@').
    public static let mainExecutableSpelling = "@main-executable"

    /// Parses "0x…" as an address, "@main-executable", anything else as a glob.
    public init(parsing text: String) throws(TraceError) {
        let trimmed = text.trimmingSpaces
        guard !trimmed.isEmpty else { throw TraceError.invalidArgument("empty function pattern") }
        if trimmed.hasPrefix("0x") || trimmed.hasPrefix("0X") {
            guard let value = UInt(trimmed.dropFirst(2), radix: 16) else {
                throw TraceError.invalidArgument("malformed address \(trimmed)")
            }
            self = .address(value)
        } else if trimmed == Self.mainExecutableSpelling {
            self = .mainExecutable
        } else {
            self = .glob(trimmed)
        }
    }

    func matches(_ site: Site) -> Bool {
        switch self {
        case let .glob(pattern):
            let glob = Glob(pattern)
            return glob.matches(site.function) || glob.matches(site.symbol)
        case let .address(a):
            return site.functionAddress == a || site.address == a
        case .mainExecutable:
            return Self.mainExecutableRanges.contains { $0.0 <= site.functionAddress && site.functionAddress < $0.1 }
        }
    }

    /// The executable mappings of /proc/self/exe (read once: the main
    /// executable never moves).
    static let mainExecutableRanges: [(UInt, UInt)] = {
        guard let exe = try? SystemCall.readLink("/proc/self/exe") else { return [] }
        return OpsRegistry.executableMappings(of: exe)
    }()

    public var description: String {
        switch self {
        case let .glob(g): return g
        case let .address(a): return "0x" + String(a, radix: 16)
        case .mainExecutable: return Self.mainExecutableSpelling
        }
    }
}

public struct OpsFlags: OptionSet, Sendable, Hashable {
    public let rawValue: UInt32
    public init(rawValue: UInt32) { self.rawValue = rawValue }
    /// The callback reads the registers (always saved; accepted for ftrace compatibility).
    public static let saveRegisters = OpsFlags(rawValue: UInt32(LT_OPS_SAVE_REGS))
    /// The callback may redirect the call (live patching); one such ops per function.
    public static let modifyResume = OpsFlags(rawValue: UInt32(LT_OPS_MODIFY_RESUME))
    public static let all: OpsFlags = [.saveRegisters, .modifyResume]
}

/// The C signature of every callback.
public typealias OpsCallback = @convention(c) (UInt, UInt, UnsafeMutablePointer<lt_ops>?, UnsafeMutablePointer<lt_regs>?) -> Void

/// A tracing client. Create, set a filter, register with `OpsRegistry.shared`.
///
/// Immutable: what the registry keeps of an ops (filter, stubs, sites,
/// registration) is its `OpsRegistry.Registration`, inside the registry's
/// lock. `raw` is allocated at init, written only before its first
/// publication (and its magic at destroy), and freed by the registry after
/// quiescence.
public final class Ops: @unchecked Sendable {
    public let raw: UnsafeMutablePointer<lt_ops>
    public let flags: OpsFlags
    /// The permanent entry its per-function trampolines jump to: the full one
    /// for LT_OPS_SAVE_REGS or LT_OPS_MODIFY_RESUME, the lean one otherwise,
    /// or the function graph's own.
    let entry: StubX86_64.Entry
    /// nil: every function its filter matches; true: only the entry-only
    /// ones (`EntryOnly.isSwiftAsync`), false: all but those. The function
    /// graph's two ops split its functions this way (FunctionGraph.swift).
    let entryOnlyFunctions: Bool?
    /// An object the callback's data points into (a closure box): it lives
    /// as long as this ops, which the registry keeps until the ops is
    /// reclaimed.
    public let keepAlive: AnyObject?
    private let destroyed = Atomic<Bool>(false)

    public convenience init(callback: OpsCallback, data: UnsafeMutableRawPointer?, flags: OpsFlags, keepAlive: AnyObject? = nil) throws(TraceError) {
        try self.init(callback: callback, data: data, flags: flags, entry: nil, entryOnlyFunctions: nil, keepAlive: keepAlive)
    }

    /// `entry` nil: the full entry for LT_OPS_SAVE_REGS or
    /// LT_OPS_MODIFY_RESUME, the lean one otherwise.
    init(callback: OpsCallback, data: UnsafeMutableRawPointer?, flags: OpsFlags,
         entry: StubX86_64.Entry?, entryOnlyFunctions: Bool?, keepAlive: AnyObject? = nil) throws(TraceError) {
        guard OpsFlags.all.isSuperset(of: flags) else {
            throw TraceError.invalidArgument("unknown ops flags 0x\(String(flags.rawValue, radix: 16))")
        }
        guard let memory = calloc(1, MemoryLayout<lt_ops>.stride) else { throw TraceError.outOfMemory(near: 0) }
        raw = memory.bindMemory(to: lt_ops.self, capacity: 1)
        raw.pointee.func = callback
        raw.pointee.data = data
        raw.pointee.flags = flags.rawValue
        raw.pointee.magic = LT_OPS_MAGIC
        self.flags = flags
        self.entry = entry ?? (flags.isDisjoint(with: [.saveRegisters, .modifyResume]) ? .lean : .full)
        self.entryOnlyFunctions = entryOnlyFunctions
        self.keepAlive = keepAlive
        raw.pointee.owner = Unmanaged.passUnretained(self).toOpaque()
    }

    /// Destroyed (OpsRegistry.destroy): `raw` is freed or awaits its grace
    /// period, and no registry call accepts the ops again.
    var isDestroyed: Bool { destroyed.load(ordering: .acquiring) }

    func markDestroyed() { destroyed.store(true, ordering: .releasing) }

    /// The Ops behind a C pointer handed out by the C API.
    public static func from(_ pointer: UnsafeMutablePointer<lt_ops>?) -> Ops? {
        guard let pointer, pointer.pointee.magic == LT_OPS_MAGIC, let owner = pointer.pointee.owner else { return nil }
        return Unmanaged<Ops>.fromOpaque(owner).takeUnretainedValue()
    }

    /// Whether `site`, matched by the filter and not by notrace
    /// (RegistrySites.addresses(matching:)), is one this ops takes: usable,
    /// and of the entry kind it asked for.
    func wantsEntryKind(of site: Site) -> Bool {
        guard site.isUsable else { return false }
        if let entryOnlyFunctions { return EntryOnly.isSwiftAsync(site.symbol) == entryOnlyFunctions }
        return true
    }
}

extension String {
    var trimmingSpaces: String {
        var s = Substring(self)
        while s.first == " " || s.first == "\t" { s.removeFirst() }
        while s.last == " " || s.last == "\t" || s.last == "\n" { s.removeLast() }
        return String(s)
    }
}

import Glibc
