// The typed errors of trampolines and ops, with their stable C codes
// (livetrace.h, LT_E*).
import CLiveTraceShims
import LiveTraceSites

public enum TraceError: Error, Sendable, Equatable, CustomStringConvertible {
    /// A NULL or malformed argument: an empty glob, a bad address, an unknown flag.
    case invalidArgument(String)
    /// The filter matches no function with a usable site.
    case noMatchingFunction(filter: [String])
    /// Another MODIFY_RESUME ops already owns this function.
    case resumeConflict(function: String)
    case alreadyRegistered
    case notRegistered
    /// No free address range within ±2 GiB of `near`, or an allocation failed.
    case outOfMemory(near: UInt)
    /// The text poke refused or failed to write a site.
    case patchFailed(site: UInt, reason: String)
    /// A thread stayed inside a callback beyond the deadline.
    case quiescenceTimedOut(threads: [Int32])
    /// Register/unregister/destroy called from inside a callback.
    case calledFromCallback
    /// The sites of the process could not be read.
    case sitesUnavailable(String)
    /// A system call failed.
    case systemCall(SystemCallError)

    /// The negative LT_E* code the C API returns.
    public var cCode: Int32 {
        switch self {
        case .invalidArgument: return -Int32(LT_EINVAL)
        case .noMatchingFunction: return -Int32(LT_ENOENT)
        case .resumeConflict: return -Int32(LT_EBUSY)
        case .alreadyRegistered: return -Int32(LT_EALREADY)
        case .notRegistered: return -Int32(LT_ENOTREG)
        case .outOfMemory: return -Int32(LT_ENOMEM)
        case .patchFailed, .systemCall: return -Int32(LT_EPATCH)
        case .quiescenceTimedOut: return -Int32(LT_ETIMEDOUT)
        case .calledFromCallback: return -Int32(LT_EDEADLK)
        case .sitesUnavailable: return -Int32(LT_ESITES)
        }
    }

    public var description: String {
        switch self {
        case let .invalidArgument(what): return "invalid argument: \(what)"
        case let .noMatchingFunction(filter): return "no function with a usable site matches \(filter)"
        case let .resumeConflict(function): return "\(function) is already live-patched by another ops"
        case .alreadyRegistered: return "the ops is already registered"
        case .notRegistered: return "the ops is not registered"
        case let .outOfMemory(near): return "no JIT memory within ±2 GiB of 0x\(String(near, radix: 16))"
        case let .patchFailed(site, reason): return "patching the site at 0x\(String(site, radix: 16)) failed: \(reason)"
        case let .quiescenceTimedOut(threads): return "threads \(threads) stayed inside a trampoline past the deadline"
        case .calledFromCallback: return "called from inside a callback"
        case let .sitesUnavailable(why): return "the sites of the process could not be read: \(why)"
        case let .systemCall(error): return error.description
        }
    }
}
