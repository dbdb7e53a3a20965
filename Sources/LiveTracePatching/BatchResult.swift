import LiveTraceSites

/// Why a site of a batch was not written (skipped: the request itself rules
/// it out) or could not be written (failed: the machine said no).
public enum PatchProblem: Error, Sendable, Hashable, CustomStringConvertible {
    /// Discovery rejected the site; it is never written.
    case rejectedSite(SiteRejection)
    /// No normal form exists for this kind (full-dynamic patching is elsewhere).
    case unsupportedKind(SiteKind)
    /// The same address appears twice in one batch.
    case duplicateInBatch
    /// The call target is farther than ±2 GiB from the site.
    case targetOutOfRange(target: UInt)
    /// The bytes found are not what the site's kind or recorded state promises.
    case bytesMismatch(expected: String, found: [UInt8])
    /// Reading or writing the code failed.
    case codeAccessFailed(String)
    /// The protocol could not run: handler installation, serialization, or a
    /// thread that never acknowledged.
    case protocolFailed(String)

    public var description: String {
        switch self {
        case let .rejectedSite(r): return "rejected by discovery: \(r)"
        case let .unsupportedKind(k): return "no normal form for site kind \(k.rawValue)"
        case .duplicateInBatch: return "site appears twice in the batch"
        case let .targetOutOfRange(t): return "call target 0x\(String(t, radix: 16)) is out of rel32 range"
        case let .bytesMismatch(expected, found):
            return "found \(found.map { String($0, radix: 16) }.joined(separator: " ")), expected \(expected)"
        case let .codeAccessFailed(s): return "code access failed: \(s)"
        case let .protocolFailed(s): return "text poke protocol failed: \(s)"
        }
    }
}

/// A site and why it was not patched.
public struct SiteOutcome: Sendable, Hashable {
    public var site: Site
    public var problem: PatchProblem
}

/// The result of one batch: every site of the request lands in exactly one
/// of `patched`, `unchanged`, `skipped`, `failed`.
public struct BatchResult: Sendable {
    /// Sites that now hold the requested instruction after a transition.
    public var patched: [Site] = []
    /// Sites that already held the requested instruction (nothing written).
    public var unchanged: [Site] = []
    /// Sites the request rules out (rejected, unsupported, duplicate).
    public var skipped: [SiteOutcome] = []
    /// Sites whose bytes or whose write said no; their bytes are unchanged.
    public var failed: [SiteOutcome] = []
    /// Serializations performed, and by which mechanism.
    public var serializations = 0
    public var serializationMechanism: CoreSerializer.Mechanism? = nil
    /// Threads moved out of five 1-byte nops before they were rewritten.
    public var threadsRescued = 0
    /// Our SIGTRAP or sync handler had been replaced and was reinstalled.
    public var handlerReinstalled = false

    /// Sites that now hold the requested instruction and that `patched`
    /// does not list: `TextPoker.relocate` and `restore` list none (a batch
    /// of 60,000 relocated entries, which the caller holds, would copy
    /// 60,000 sites for nothing); failures are listed as always.
    public var patchedUnlisted = 0

    public var patchedCount: Int { patched.count + patchedUnlisted }
    public var unchangedCount: Int { unchanged.count }
    public var skippedCount: Int { skipped.count }
    public var failedCount: Int { failed.count }
    /// True when nothing failed (skipped sites are the caller's business).
    public var succeeded: Bool { failed.isEmpty }

    public init() {}
}
