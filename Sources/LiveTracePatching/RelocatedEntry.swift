import LiveTraceSites

/// A function entry whose prologue was relocated into a stub (full-dynamic
/// patching): what the text poke needs to make its first 5 bytes a site in
/// normal form, and to give them back.
///
/// Byte layouts at the patch address A (after `endbr64` when present), for
/// moved bytes of length L ≥ 5 (`push rbp; mov rbp, rsp; sub rsp, 0x10` here):
///
///     original          55 48 89 e5 48 83 ec 10       (L = 8)
///     owned, off        e9 s0 s1 s2 s3 83 ec 10       jmp stub: "continue at
///                                                     the stub"; A+5..A+L keep
///                                                     their original bytes
///     owned, on         e8/e9 t0 t1 t2 t3 83 ec 10    call/jmp trampoline,
///                                                     whose resume is the stub
///     stub              55 48 89 e5 48 83 ec 10 e9 <A+L>
///
/// Off is `jmp stub`, not the original bytes: the per-function and iterator
/// trampolines switch it like any normal-form site (`TextPoker.apply`), and
/// only `TextPoker.restore` writes the original bytes back. The bytes after
/// A+5 are never written: a thread that resumes at one of their boundaries
/// (say, when returning from a signal handler that interrupted it there)
/// still runs the original instruction.
///
/// It holds no names (a batch of 60,000 copies no String): the text poke's
/// outcomes name an entry by its site's address, and the caller, who knows
/// the function, names it in a report.
public struct RelocatedEntry: Sendable, Hashable {
    /// The patch address (after `endbr64` when present).
    public var address: UInt
    /// The function's symbol address.
    public var functionAddress: UInt
    public var hasEndbr: Bool
    /// The moved bytes as the function holds them unpatched (L ≥ 5).
    public var original: PrologueRelocation.ShortBytes
    /// The relocated stub's address.
    public var stub: UInt
    /// For each offset in the moved bytes, the offset in the stub of the
    /// instruction starting there; 0xff where no instruction starts.
    public var stubOffsets: PrologueRelocation.ShortBytes

    /// `stubOffsets`: the offset in the stub of each moved instruction, in
    /// order (`PrologueRelocation.appendStub`).
    public init(relocation: PrologueRelocation, stub: UInt, stubOffsets: PrologueRelocation.ShortBytes) {
        address = relocation.patchAddress
        functionAddress = relocation.functionAddress
        hasEndbr = relocation.hasEndbr
        original = relocation.movedBytes
        self.stub = stub
        var map = PrologueRelocation.ShortBytes(repeating: 0xff, count: relocation.relocatedLength)
        for (index, offset) in stubOffsets.prefix(relocation.instructions.count).enumerated() { map[relocation.offset(ofInstruction: index)] = offset }
        self.stubOffsets = map
    }

    /// The site (kind `none`, no rejection, unnamed) at the patch address:
    /// what the text poke's outcomes and transitions carry.
    public var site: Site {
        var site = Self.unnamedSite
        site.address = address
        site.functionAddress = functionAddress
        site.hasEndbr = hasEndbr
        return site
    }

    /// Copied, not initialized, for each site: Site's initializer is not
    /// inlined across modules and costs more than the copy.
    private static let unnamedSite = Site(address: 0, kind: .none, functionAddress: 0, symbol: "", function: "")
}
