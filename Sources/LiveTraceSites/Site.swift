/// The kinds of patchable site that compilers leave at function entries
/// (docs/ARCHITECTURE.md, "Site discovery"). Every usable kind has a *normal form*: one
/// 5-byte instruction at `Site.address` — a 5-byte nop when off, `call rel32`
/// to a trampoline when on.
///
/// Bytes at the site, before normalisation → normal form (off):
///
///     nop5             0f 1f 44 00 xx            → unchanged
///     nop1x5           90 90 90 90 90            → 0f 1f 44 00 00
///     callFentry       e8 r0 r1 r2 r3            → 0f 1f 44 00 00
///     callFentryGOT    ff 15 r0 r1 r2 r3         → 0f 1f 44 00 00 90
///                      (the 6th byte stays a 1-byte nop forever, so no
///                       return address ever lands inside an instruction)
///     patchable(N, M)  M nops before the symbol, N−M after it; the site is
///                      the first 5 bytes after the symbol (and after
///                      endbr64), in one of the nop forms above.
///     none             an ordinary prologue (full-dynamic patching).
public enum SiteKind: String, Sendable, Hashable, Codable, CaseIterable {
    case nop5 = "nop5"
    case nop1x5 = "nop1x5"
    case callFentry = "call-fentry"
    case callFentryGOT = "call-fentry-got"
    case patchable = "patchable"
    case none = "none"

    /// Length in bytes of the site as the compiler emitted it.
    public var compiledLength: Int {
        switch self {
        case .nop5, .nop1x5, .callFentry, .patchable: return 5
        case .callFentryGOT: return 6
        case .none: return 0
        }
    }
}

/// One site: where it is, what it is, whose it is.
///
/// A value type whose copy costs one retain: what the patcher reads per
/// site on every change (addresses, kinds, sizes) is held inline, and the
/// names, source location, patchable counts and rejection — read when a
/// site is listed, matched or reported — in one shared box, copied on
/// write. (An attach of 10,000 sites copies each site some twenty times;
/// with every field inline a copy was a 152-byte memmove and four
/// retains, a quarter of the attach: docs/ARCHITECTURE.md.)
public struct Site: Sendable, Hashable {
    /// Run-time address of the first byte of the 5-byte normal-form
    /// instruction (after `endbr64` when the function starts with one).
    public var address: UInt
    /// Address of the function symbol the site belongs to.
    public var functionAddress: UInt
    /// The function symbol's size in bytes (0: unknown); set for kind `none`,
    /// whose prologue relocation needs the whole body.
    public var functionSize: Int = 0
    public var kind: SiteKind
    /// The byte form found at `address`: equal to `kind`, except for
    /// `.patchable`, whose bytes after the symbol are `.nop5` (clang) or
    /// `.nop1x5` (gcc).
    public var form: SiteKind
    /// `endbr64` precedes the site.
    public var hasEndbr: Bool
    private var details: Details

    /// The fields read off the patching path; never mutated once shared.
    private final class Details: @unchecked Sendable {
        var symbol: String
        var function: String
        var patchableTotal: Int
        var patchableBefore: Int
        var sourceFile: String?
        var sourceLine: Int?
        var rejection: SiteRejection?

        init(symbol: String, function: String, patchableTotal: Int, patchableBefore: Int,
             sourceFile: String?, sourceLine: Int?, rejection: SiteRejection?) {
            self.symbol = symbol
            self.function = function
            self.patchableTotal = patchableTotal
            self.patchableBefore = patchableBefore
            self.sourceFile = sourceFile
            self.sourceLine = sourceLine
            self.rejection = rejection
        }

        func copy() -> Details {
            Details(symbol: symbol, function: function, patchableTotal: patchableTotal, patchableBefore: patchableBefore,
                    sourceFile: sourceFile, sourceLine: sourceLine, rejection: rejection)
        }

        func sameContents(as other: Details) -> Bool {
            self === other || (symbol == other.symbol && function == other.function
                && patchableTotal == other.patchableTotal && patchableBefore == other.patchableBefore
                && sourceFile == other.sourceFile && sourceLine == other.sourceLine && rejection == other.rejection)
        }
    }

    /// The box, made unique before a write (copy on write).
    private var writableDetails: Details {
        mutating get {
            if !isKnownUniquelyReferenced(&details) { details = details.copy() }
            return details
        }
    }

    /// Raw symbol name as found in the symbol table.
    public var symbol: String {
        get { details.symbol }
        set { writableDetails.symbol = newValue }
    }
    /// Demangled name (Swift and C++); equal to `symbol` for C.
    public var function: String {
        get { details.function }
        set { writableDetails.function = newValue }
    }
    /// For `patchable`: N and M of `-fpatchable-function-entry=N,M`.
    public var patchableTotal: Int {
        get { details.patchableTotal }
        set { writableDetails.patchableTotal = newValue }
    }
    public var patchableBefore: Int {
        get { details.patchableBefore }
        set { writableDetails.patchableBefore = newValue }
    }
    /// Source location from DWARF, when present.
    public var sourceFile: String? {
        get { details.sourceFile }
        set { writableDetails.sourceFile = newValue }
    }
    public var sourceLine: Int? {
        get { details.sourceLine }
        set { writableDetails.sourceLine = newValue }
    }
    /// Why the site may not be patched; nil when usable.
    public var rejection: SiteRejection? {
        get { details.rejection }
        set { writableDetails.rejection = newValue }
    }

    public var isUsable: Bool { details.rejection == nil }

    public init(
        address: UInt, kind: SiteKind, functionAddress: UInt, symbol: String,
        function: String, hasEndbr: Bool = false, patchableTotal: Int = 0,
        patchableBefore: Int = 0, sourceFile: String? = nil, sourceLine: Int? = nil,
        rejection: SiteRejection? = nil, form: SiteKind? = nil
    ) {
        self.address = address
        self.kind = kind
        self.functionAddress = functionAddress
        self.hasEndbr = hasEndbr
        self.form = form ?? kind
        details = Details(symbol: symbol, function: function, patchableTotal: patchableTotal, patchableBefore: patchableBefore,
                          sourceFile: sourceFile, sourceLine: sourceLine, rejection: rejection)
    }

    public static func == (lhs: Site, rhs: Site) -> Bool {
        lhs.address == rhs.address && lhs.functionAddress == rhs.functionAddress && lhs.functionSize == rhs.functionSize
            && lhs.kind == rhs.kind && lhs.form == rhs.form && lhs.hasEndbr == rhs.hasEndbr
            && lhs.details.sameContents(as: rhs.details)
    }

    public func hash(into hasher: inout Hasher) {
        hasher.combine(address)
        hasher.combine(functionAddress)
        hasher.combine(functionSize)
        hasher.combine(kind)
        hasher.combine(form)
        hasher.combine(hasEndbr)
        hasher.combine(details.symbol)
        hasher.combine(details.function)
        hasher.combine(details.patchableTotal)
        hasher.combine(details.patchableBefore)
        hasher.combine(details.sourceFile)
        hasher.combine(details.sourceLine)
        hasher.combine(details.rejection)
    }
}

/// Why a site is never written.
public enum SiteRejection: Sendable, Hashable, CustomStringConvertible {
    /// The bytes at the site do not match its kind's pattern.
    case bytesMismatch(expected: String, found: [UInt8])
    /// The listed address lies outside every executable segment.
    case outsideExecutableSegment
    /// `-fpatchable-function-entry=N,M` with fewer than 5 bytes after entry.
    case tooFewBytes(Int)
    /// No function symbol covers the site.
    case noFunction
    /// Any other reason, stated.
    case other(String)
    /// A function with no compiler-made entry site (kind `none`: Swift code,
    /// or C built without the flags); it needs full-dynamic patching.
    case noEntrySite
    /// A listed site that lies this many bytes into its function instead of
    /// at its entry (or right after its `endbr64`).
    case notAtFunctionEntry(offset: UInt64)
    /// A call at the entry whose target is not `__fentry__` (directly, through
    /// its PLT stub or its GOT slot).
    case callNotToFentry
    /// The bytes in memory differ from the object file's (live process only).
    case differsFromFile(file: [UInt8], memory: [UInt8])

    public var description: String {
        switch self {
        case let .bytesMismatch(expected, found):
            return "bytes \(found.map { String($0, radix: 16).leftPadded(to: 2) }.joined(separator: " ")) do not match \(expected)"
        case .outsideExecutableSegment: return "address outside every executable segment"
        case let .tooFewBytes(n): return "only \(n) patchable bytes after the entry (5 needed)"
        case .noFunction: return "no function symbol covers the site"
        case let .other(s): return s
        case .noEntrySite: return "no entry site: needs full-dynamic patching"
        case let .notAtFunctionEntry(offset): return "listed site is \(offset) bytes into its function, not at its entry"
        case .callNotToFentry: return "the call at the entry does not go to __fentry__"
        case let .differsFromFile(file, memory):
            return "bytes in memory \(memory.map { String($0, radix: 16).leftPadded(to: 2) }.joined(separator: " ")) differ from the file's \(file.map { String($0, radix: 16).leftPadded(to: 2) }.joined(separator: " "))"
        }
    }

    /// Short stable identifier used in summaries and JSON.
    public var code: String {
        switch self {
        case .bytesMismatch: return "bytes-mismatch"
        case .outsideExecutableSegment: return "outside-executable-segment"
        case .tooFewBytes: return "too-few-bytes"
        case .noFunction: return "no-function"
        case .other: return "other"
        case .noEntrySite: return "no-entry-site"
        case .notAtFunctionEntry: return "not-at-function-entry"
        case .callNotToFentry: return "call-not-to-fentry"
        case .differsFromFile: return "differs-from-file"
        }
    }
}

extension String {
    func leftPadded(to width: Int, with pad: Character = "0") -> String {
        count >= width ? self : String(repeating: pad, count: width - count) + self
    }
}
