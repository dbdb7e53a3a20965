import LiveTraceSites

/// The instruction a site holds in normal form (docs/ARCHITECTURE.md, "Site discovery"):
/// a 5-byte nop, or `call rel32` / `jmp rel32` to a target within ±2 GiB.
/// (The trampolines use `jmp`: ARCHITECTURE.md, "Trampolines and ops".)
public enum SiteInstruction: Sendable, Hashable, CustomStringConvertible {
    case nop
    case call(UInt)
    case jump(UInt)

    /// The target of a call or jump.
    public var target: UInt? {
        switch self {
        case .nop: return nil
        case let .call(target), let .jump(target): return target
        }
    }

    public var description: String {
        switch self {
        case .nop: return "nop"
        case let .call(target): return "call 0x\(String(target, radix: 16))"
        case let .jump(target): return "jmp 0x\(String(target, radix: 16))"
        }
    }
}

/// One site changing to a new normal-form instruction.
public struct SiteTransition: Sendable, Hashable {
    public var site: Site
    public var to: SiteInstruction

    public init(site: Site, to: SiteInstruction) {
        self.site = site
        self.to = to
    }
}
