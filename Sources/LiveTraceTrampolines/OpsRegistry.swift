// The ops registry: the generic engine of the ftrace_ops model.
//
// A site's instruction follows from the registered ops that want it:
//
//     ops wanting the site   instruction at the site
//     0                      nop
//     1 (ops X)              jmp to X's per-function trampoline for the site
//                            (X's stub in a JIT region within reach of it)
//     n >= 2                 jmp to this site's iterator: a stub whose record
//                            is (lt_tramp_iterate, immutable list of the n ops)
//
// Every change of that set is one transition through the text poke; the
// poke's trap handler emulates the *new* jump, so each ops sees every call of
// its functions from the return of its registration to the start of its
// unregistration, exactly once. A list or stub is never modified once
// published: a new one replaces it, and the old one is retired.
//
// Protocol of one change (register, unregister, filter change):
//   1. Resolve the filter against the sites of the process, indexed once
//      per loaded-objects generation (RegistrySites.swift); check that no
//      function gets two MODIFY_RESUME ops.
//   2. Build every new stub and iterator list (nothing published yet).
//   3. One text-poke batch for every site whose instruction changes.
//   4. Commit the sites that changed; retire what they no longer call;
//      release what was built for sites that failed, and undo the change if
//      any site failed (the caller gets the error).
//   5. (unregister, destroy) Wait for a grace period (Quiescence.swift), then
//      free every retired stub, list and ops.
//
// Which per-function trampoline (step 2): an ops with no flags whose
// callback is a small leaf function (LeafCallbackX86_64.swift, analyzed once
// per ops and cached on it) gets a leaf stub (StubX86_64.leafStub) that calls
// the callback directly; every other ops gets the generic stub and its entry.
// The kind of stub changes nothing in the transitions above: a leaf stub is
// published, retired and reclaimed exactly like the generic one, and the
// reclaimer also watches the leaf callbacks' code (rule (c)).
// LIVETRACE_NO_LEAF=1 (read once) or `leafStubsEnabled = false` turns it off.
//
// Functions without a site (full-dynamic patching, opt-in: `includeDynamic`):
// the site list also holds every function of kind `none`, at its patch
// address (after endbr64). When an ops first wants one, its prologue is
// analyzed (PrologueRelocation), copied into a relocated stub and the entry
// relocated (TextPoker.relocate) before step 2; from then on the entry is a
// site in normal form whose "off" instruction is `jmp stub` instead of a nop,
// and whose trampolines resume at the stub instead of the site + 5. A
// relocated entry stays relocated (off) when its last ops leaves;
// `restoreRelocatedFunctions` gives the original bytes back and reclaims the
// stubs after a grace period. A function that cannot be relocated is never
// written: the reasons of the last resolution are in `dynamicRefusals`.
//
// Ownership, by type: every mutable fact of the registry — the sites it
// has touched, what each ops wants and owns (`Registration`), the JIT
// memory, what waits for a grace period — is a field of `Engine`, which
// lives inside the `Mutex` and is reachable only through it. What each site
// holds now is the text poke's record (`TextPoker.recordedInstructions`),
// never a copy kept here. `Ops` itself is immutable. Trampolines read
// lt_ops, lists and stubs without the lock, between E1 and E2.
import CLiveTraceShims
import Glibc
import LiveTracePatching
import LiveTraceSites
import Synchronization

public final class OpsRegistry: Sendable {
    /// The process's registry; it forgets the sites of objects that dlclose
    /// unmaps (lt_unload.h).
    public static let shared: OpsRegistry = {
        let registry = OpsRegistry()
        lt_unload_set_hook { start, end in OpsRegistry.shared.forgetSites(from: start, to: end) }
        return registry
    }()

    /// Where the sites come from: by default every object of this process.
    public typealias SiteProvider = @Sendable (_ isPatched: @escaping (UInt) -> Bool) throws(TraceError) -> [Site]

    /// A site the registry has touched: the ops that want it, in
    /// registration order, and the iterator it calls when there are two or
    /// more. Its instruction is the text poke's record.
    struct SiteState {
        var site: Site
        var ops: [Ops] = []
        var iterator: IteratorAllocation?
    }

    /// What the registry keeps of one ops from its first use (adopt, a
    /// filter, register) until `destroy`.
    struct Registration {
        let ops: Ops
        var filter: [FunctionPattern] = []
        var notrace: [FunctionPattern] = []
        var isRegistered = false
        /// A grace period completed after the last unregistration.
        var quiescedSinceUnregister = false
        /// Site addresses the ops is attached to (registered only).
        var attachedSites: Set<UInt> = []
        /// Its per-function trampoline of each site, by site address
        /// (registered only; a stub holds its site's resume address).
        var stubs: [UInt: JITSlot] = [:]
        /// Registration order, for the iterator lists.
        var order: UInt64 = 0
        /// The leaf analysis of the callback (LeafCallbackX86_64.swift), made
        /// once, at the first stub built for a lean ops with no flags.
        var leafAnalysis: Result<LeafCallback, LeafRejection>?
        /// The sites (keys of `stubs`) whose stub is a leaf stub.
        var leafStubSites: Set<UInt> = []

        init(_ ops: Ops) { self.ops = ops }
    }

    struct IteratorAllocation {
        var slot: JITSlot
        var list: UnsafeMutableRawPointer
    }

    struct Retired {
        var slots: [JITSlot] = []
        /// Code of the leaf callbacks whose stubs are among `slots`.
        var leafCode: [(UInt, UInt)] = []
        var lists: [UnsafeMutableRawPointer] = []
        var ops: [UnsafeMutablePointer<lt_ops>] = []
        /// Destroyed ops whose `keepAlive` the callback may still use.
        var keepAlive: [Ops] = []
        var isEmpty: Bool { slots.isEmpty && lists.isEmpty && ops.isEmpty }
        var count: Int { slots.count + lists.count + ops.count }
    }

    /// Counts for tests and diagnostics.
    public struct Statistics: Sendable {
        public var liveOps: Int
        public var registeredOps: Int
        public var patchedSites: Int
        public var jitRegions: Int
        public var jitFreeSlots: Int
        public var retiredItems: Int
        public var gracePeriods: Int
    }

    private let engine = Mutex(Engine())

    /// Retired items that trigger a grace period without a waiting unregister.
    static let retiredBatch = 256
    public static var retiredBatchSize: Int { retiredBatch }

    static let leafStubsFromEnvironment: Bool = {
        guard let value = getenv("LIVETRACE_NO_LEAF") else { return true }
        return String(cString: value) != "1"
    }()

    init() {}

    /// How long unregister waits for threads to leave the callbacks.
    public var quiescenceDeadline: Duration {
        get { engine.withLock { $0.deadline } }
        set { engine.withLock { $0.deadline = newValue } }
    }

    /// Whether filters also reach functions without a compiler-made site,
    /// by prologue relocation (off by default: it rewrites ordinary code).
    /// Set it before registering the ops that should reach them.
    public var includeDynamic: Bool {
        get { engine.withLock { $0.dynamic } }
        set { engine.withLock { $0.dynamic = newValue } }
    }

    /// The functions without sites that the last resolution wanted but
    /// could not relocate, and why.
    public var dynamicRefusals: [(site: Site, reason: RelocationRefusal)] {
        engine.withLock { $0.lastRefusals.map { (site: $0.0, reason: $0.1) } }
    }

    /// The entries relocated now (patch addresses).
    public var relocatedFunctions: [UInt] { engine.withLock { $0.relocations.keys.sorted() } }

    /// Gives the original bytes back to every relocated entry that no ops
    /// uses, then frees their stubs after a grace period.
    public func restoreRelocatedFunctions() throws(TraceError) {
        try guardNotInCallback()
        try withSitesStable { () throws(TraceError) in try engine.withLock { (e) throws(TraceError) in try e.restoreRelocatedFunctions() } }
    }

    /// Gives every site that no ops uses and that the text poke normalized
    /// from the compiler's bytes (gcc's five 1-byte nops, `call __fentry__`)
    /// those bytes back (TextPoker.restoreOriginal): with the relocated
    /// prologues restored too, the code is the file's again. A later
    /// registration normalizes them anew.
    public func restoreOriginalSites() throws(TraceError) {
        try guardNotInCallback()
        try withSitesStable { () throws(TraceError) in try engine.withLock { (e) throws(TraceError) in try e.restoreOriginalSites() } }
    }

    /// Whether stubs built from now on may be leaf stubs (benchmarks and
    /// tests compare both paths); stubs already published stay as they are.
    public var leafStubsEnabled: Bool {
        get { engine.withLock { $0.leafStubs } }
        set { engine.withLock { $0.leafStubs = newValue } }
    }

    /// The leaf analysis of an ops's callback, once a stub was built for it
    /// (nil before, or when the ops cannot take the leaf path: flags, the
    /// function graph's entry).
    public func leafAnalysis(of ops: Ops) -> Result<LeafCallback, LeafRejection>? {
        engine.withLock { $0.registrations[ObjectIdentifier(ops)]?.leafAnalysis }
    }

    /// How many 64-byte slots the stub of `ops` for the site at `address`
    /// takes (nil when it has none).
    public func stubSlotCount(at address: UInt, of ops: Ops) -> Int? {
        engine.withLock { $0.registrations[ObjectIdentifier(ops)]?.stubs[address]?.count }
    }

    /// Whether `target` is a leaf stub of `ops`.
    public func isLeafStub(_ target: UInt, of ops: Ops) -> Bool {
        engine.withLock { e in
            guard let r = e.registrations[ObjectIdentifier(ops)] else { return false }
            return r.stubs.contains { r.leafStubSites.contains($0.key) && e.jit.address(of: $0.value) == target }
        }
    }

    // MARK: Public operations

    /// Keeps `ops` alive until `destroy`; the C API's lt_ops_create.
    public func adopt(_ ops: Ops) {
        engine.withLock { $0.adopt(ops) }
    }

    /// Replaces where sites come from (tests; a preload shim reading files).
    public func setSiteProvider(_ provider: @escaping SiteProvider) {
        engine.withLock { e in
            e.siteProvider = provider
            e.usesDefaultProvider = false
            e.siteCache = nil
        }
    }

    public func addFilter(_ pattern: FunctionPattern, to ops: Ops, exclude: Bool = false) throws(TraceError) {
        try guardNotInCallback()
        try withSitesStable { () throws(TraceError) in try engine.withLock { (e) throws(TraceError) in
            try e.addFilter(pattern, to: ops, exclude: exclude)
        } }
    }

    /// Patches every function of the filter to call the ops (steps 1–4).
    public func register(_ ops: Ops) throws(TraceError) {
        try guardNotInCallback()
        try withSitesStable { () throws(TraceError) in try engine.withLock { (e) throws(TraceError) in try e.register(ops) } }
    }

    /// Unpatches, then waits until no thread is inside the ops (step 5).
    /// Without `waitForQuiescence` it returns after the unpatching: the
    /// callback may still be running on other threads, and what it used is
    /// reclaimed by a later grace period (one per `retiredBatch` retirements).
    public func unregister(_ ops: Ops, waitForQuiescence: Bool = true) throws(TraceError) {
        try guardNotInCallback()
        try withSitesStable { () throws(TraceError) in try engine.withLock { (e) throws(TraceError) in
            try e.unregister(ops, waitForQuiescence: waitForQuiescence)
        } }
    }

    /// Unregisters if needed, then frees the ops after quiescence (now, or at
    /// a later grace period when a thread is still inside it).
    public func destroy(_ ops: Ops) {
        guard (try? guardNotInCallback()) != nil else { return }
        let gate = lt_unload_gate_enter(UInt32.max)
        defer { lt_unload_gate_leave(gate) }
        engine.withLock { $0.destroy(ops) }
    }

    /// Live patching: every call of the one function matching `pattern`
    /// continues at `replacement` (same signature) from the return of this
    /// call on; `destroy` (or unregister) of the returned ops undoes it.
    public func replace(_ pattern: FunctionPattern, with replacement: UInt) throws(TraceError) -> Ops {
        guard replacement != 0 else { throw TraceError.invalidArgument("replacement address 0") }
        let ops = try Ops(callback: lt_tramp_replace_callback, data: UnsafeMutableRawPointer(bitPattern: replacement), flags: .modifyResume)
        do throws(TraceError) {
            try addFilter(pattern, to: ops)
            try guardNotInCallback()
            try withSitesStable { () throws(TraceError) in try engine.withLock { (e) throws(TraceError) in
                let sites = try e.loadSites(names: e.needsNames(ops))
                let wanted = try e.resolve(ops, in: sites)
                let functions = Set(wanted.compactMap { e.site(at: $0, in: sites)?.functionAddress })
                guard functions.count == 1 else {
                    throw TraceError.invalidArgument("\(pattern) matches \(functions.count) functions; a replacement needs exactly one")
                }
            } }
            try register(ops)
        } catch {
            destroy(ops)
            throw error
        }
        return ops
    }

    /// Frees what earlier timed-out grace periods left retired.
    public func collectGarbage() throws(TraceError) {
        try guardNotInCallback()
        try engine.withLock { (e) throws(TraceError) in try e.reclaim() }
    }

    public func isRegistered(_ ops: Ops) -> Bool {
        engine.withLock { $0.registrations[ObjectIdentifier(ops)]?.isRegistered ?? false }
    }

    /// The functions (sites) an ops is attached to now.
    public func attachedSites(of ops: Ops) -> [Site] {
        engine.withLock { e in
            (e.registrations[ObjectIdentifier(ops)]?.attachedSites ?? []).compactMap { e.siteStates[$0]?.site }.sorted { $0.address < $1.address }
        }
    }

    /// The instruction at a site, by the text poke's record (a nop where it
    /// has none).
    public func instruction(at address: UInt) -> SiteInstruction {
        TextPoker.shared.recordedInstructions(at: [address])[0] ?? .nop
    }

    /// The per-function trampoline of `ops` that `site` calls, or nil.
    public func isPerFunctionTrampoline(_ target: UInt, of ops: Ops) -> Bool {
        engine.withLock { e in
            e.registrations[ObjectIdentifier(ops)]?.stubs.values.contains { e.jit.address(of: $0) == target } ?? false
        }
    }

    public var statistics: Statistics {
        engine.withLock { e in
            let addresses = Array(e.siteStates.keys)
            let patched = TextPoker.shared.recordedInstructions(at: addresses).filter { ($0 ?? .nop) != .nop }.count
            return Statistics(
                liveOps: e.registrations.count,
                registeredOps: e.registrations.values.filter(\.isRegistered).count,
                patchedSites: patched,
                jitRegions: e.jit.regions.count,
                jitFreeSlots: e.jit.freeSlotCount,
                retiredItems: e.retired.slots.count + e.retired.lists.count + e.retired.ops.count,
                gracePeriods: e.gracePeriods)
        }
    }

    // MARK: Objects unloaded by dlclose

    /// How long a change waits for a dlclose in another thread (lt_unload.h).
    static let unloadGateTimeoutMilliseconds: UInt32 = 5000

    /// Runs a change that may poke sites with the unload gate entered: no
    /// dlclose unmaps an object meanwhile. Gate before `engine`, always.
    private func withSitesStable<T>(_ body: () throws(TraceError) -> T) throws(TraceError) -> T {
        let gate = lt_unload_gate_enter(Self.unloadGateTimeoutMilliseconds)
        guard gate >= 0 else {
            throw TraceError.sitesUnavailable("a dlclose in another thread did not finish within \(Self.unloadGateTimeoutMilliseconds) ms")
        }
        defer { lt_unload_gate_leave(gate) }
        return try body()
    }

    /// dlclose unmapped [start, end) (called by lt_unload.c with the gate
    /// closed): its sites are gone with their code, so the registry and the
    /// text poke forget them — no later change pokes those addresses — and retires the
    /// iterators only they called. The ops stay registered for their other
    /// functions; reloading the object does not re-attach them.
    func forgetSites(from start: UInt, to end: UInt) {
        engine.withLock { $0.forgetSites(from: start, to: end) }
    }

    private func guardNotInCallback() throws(TraceError) {
        if lt_thread_current_seq() & 1 == 1 { throw TraceError.calledFromCallback }
    }
}

// MARK: The engine (inside the registry's Mutex)

extension OpsRegistry {
    /// Every mutable fact of the registry; reachable only through
    /// `OpsRegistry.engine`'s lock.
    struct Engine {
        var registrations: [ObjectIdentifier: Registration] = [:]
        var nextOrder: UInt64 = 1
        var siteStates: [UInt: SiteState] = [:]
        var retired = Retired()
        let jit = JITMemory()
        var gracePeriods = 0
        var siteProvider: SiteProvider = OpsRegistry.processSites
        /// The indexed sites of the current loaded-objects generation
        /// (RegistrySites.swift); nil after anything that changes what is listed.
        var siteCache: RegistrySites?
        var deadline: Duration = .seconds(2)
        /// Leaf stubs for eligible callbacks; off when LIVETRACE_NO_LEAF=1.
        var leafStubs = OpsRegistry.leafStubsFromEnvironment
        /// Relocated entries by patch address.
        var relocations: [UInt: RelocatedStub] = [:]
        /// Verdicts of the functions without sites analyzed so far, by patch address.
        var dynamicVerdicts: [UInt: Result<PrologueRelocation, RelocationRefusal>] = [:]
        var dynamic = false
        var lastRefusals: [(Site, RelocationRefusal)] = []
        /// The per-function stubs built by the current change and staged in
        /// the JIT memory, not yet written (`change`, step 2).
        var stagedStubs: [(ops: Ops, site: UInt)] = []
        var usesDefaultProvider = true

        /// The registration of `ops`; a change through it makes it (and
        /// holds the ops) when the ops had none.
        subscript(ops: Ops) -> Registration {
            get { registrations[ObjectIdentifier(ops)] ?? Registration(ops) }
            _modify { yield &registrations[ObjectIdentifier(ops), default: Registration(ops)] }
        }

        /// Holds `ops` (and so its `keepAlive`) until `destroy`.
        mutating func adopt(_ ops: Ops) {
            if registrations[ObjectIdentifier(ops)] == nil { registrations[ObjectIdentifier(ops)] = Registration(ops) }
        }

        func order(of ops: Ops) -> UInt64 { registrations[ObjectIdentifier(ops)]?.order ?? 0 }

        // MARK: Operations

        mutating func restoreRelocatedFunctions() throws(TraceError) {
            let idle = relocations.filter { siteStates[$0.key]?.ops.isEmpty ?? true }
            guard !idle.isEmpty else { return }
            // In address order, which the text poke's batch takes without sorting.
            let entries = idle.keys.sorted().map { idle[$0]!.entry }
            let result = TextPoker.shared.restore(entries)
            let failed = Set((result.failed + result.skipped).map(\.site.address))
            for (address, stub) in idle where !failed.contains(address) {
                relocations[address] = nil
                siteStates[address] = nil
                retired.slots.append(stub.slot)
            }
            try reclaim(always: true)
            if let first = (result.failed + result.skipped).first {
                throw TraceError.patchFailed(site: first.site.address, reason: first.problem.description)
            }
        }

        func restoreOriginalSites() throws(TraceError) {
            var idle: [UInt] = []
            for (address, state) in siteStates where state.ops.isEmpty && relocations[address] == nil { idle.append(address) }
            // In address order, which the text poke's batch takes without sorting.
            idle.sort()
            let recorded = TextPoker.shared.recordedInstructions(at: idle)
            let sites = zip(idle, recorded).compactMap { ($0.1 ?? .nop) == .nop ? siteStates[$0.0]?.site : nil }
            guard !sites.isEmpty else { return }
            let result = TextPoker.shared.restoreOriginal(sites)
            if let first = (result.failed + result.skipped).min(by: { $0.site.address < $1.site.address }) {
                throw TraceError.patchFailed(site: first.site.address, reason: "restoring the compiler's bytes: \(first.problem.description)")
            }
        }

        mutating func addFilter(_ pattern: FunctionPattern, to ops: Ops, exclude: Bool) throws(TraceError) {
            try checkAlive(ops)
            let before = (self[ops].filter, self[ops].notrace)
            if exclude { self[ops].notrace.append(pattern) } else { self[ops].filter.append(pattern) }
            guard self[ops].isRegistered else { return }
            let sites = try loadSites(names: needsNames(ops))
            do throws(TraceError) {
                try change(ops, to: try resolve(ops, in: sites), sites: sites)
            } catch {
                (self[ops].filter, self[ops].notrace) = before
                if let previous = try? resolve(ops, in: sites) { try? change(ops, to: previous, sites: sites) }
                throw error
            }
        }

        mutating func register(_ ops: Ops) throws(TraceError) {
            try checkAlive(ops)
            if self[ops].isRegistered { throw TraceError.alreadyRegistered }
            let sites = try loadSites(names: needsNames(ops))
            let wanted = try resolve(ops, in: sites)
            self[ops].quiescedSinceUnregister = false
            self[ops].order = nextOrder
            nextOrder += 1
            self[ops].isRegistered = true
            do throws(TraceError) {
                try change(ops, to: wanted, sites: sites)
            } catch {
                try? change(ops, to: [], sites: nil)
                self[ops].isRegistered = false
                retireStubs(of: ops)
                throw error
            }
        }

        mutating func unregister(_ ops: Ops, waitForQuiescence: Bool) throws(TraceError) {
            try checkAlive(ops)
            guard self[ops].isRegistered else { throw TraceError.notRegistered }
            try change(ops, to: [], sites: nil)
            self[ops].isRegistered = false
            retireStubs(of: ops)
            if waitForQuiescence {
                try reclaim(always: true)
                self[ops].quiescedSinceUnregister = true
            } else if retired.count >= OpsRegistry.retiredBatch {
                try? reclaim()
            }
        }

        mutating func destroy(_ ops: Ops) {
            guard !ops.isDestroyed else { return }
            if self[ops].isRegistered {
                if (try? change(ops, to: [], sites: nil)) == nil { return }
                self[ops].isRegistered = false
                retireStubs(of: ops)
            }
            let quiesced = registrations.removeValue(forKey: ObjectIdentifier(ops))?.quiescedSinceUnregister ?? false
            ops.markDestroyed()
            ops.raw.pointee.magic = 0
            if quiesced {
                // A grace period ended after its last publication: nothing
                // can reach it any more.
                free(ops.raw)
            } else {
                retired.ops.append(ops.raw)
                retired.keepAlive.append(ops)
                if retired.count >= OpsRegistry.retiredBatch { try? reclaim() }
            }
        }

        mutating func forgetSites(from start: UInt, to end: UInt) {
            TextPoker.shared.forgetSites(from: start, to: end)
            let gone = siteStates.keys.filter { $0 >= start && $0 < end }
            guard !gone.isEmpty else { return }
            for address in gone {
                guard let state = siteStates.removeValue(forKey: address) else { continue }
                for ops in state.ops { registrations[ObjectIdentifier(ops)]?.attachedSites.remove(address) }
                if let iterator = state.iterator { retire(iterator) }
            }
            siteCache = nil
        }

        // MARK: Steps 1-5

        func checkAlive(_ ops: Ops) throws(TraceError) {
            if ops.isDestroyed { throw TraceError.invalidArgument("the ops was destroyed") }
        }

        /// The sites of the current generation, indexed once per generation
        /// (and per provider and `includeDynamic`).
        /// The sites of the loaded objects, from the cache while no object
        /// came or went. `names`: the sites' demangled names are needed (a
        /// glob is matched against them); without, the full-dynamic listing
        /// skips demangling (a sixth of `livetrace record`'s start on a Swift
        /// program of 63,000 functions, whose default filter is the main
        /// executable's address ranges) and a site's `function` is its raw
        /// symbol. A later request that needs names lists them anew.
        mutating func loadSites(names: Bool = true) throws(TraceError) -> RegistrySites {
            let generation = lt_loaded_objects_generation()
            if let cached = siteCache, cached.generation == generation, cached.includesDynamic == dynamic, cached.demangled || !names {
                return cached
            }
            let patched = Set(siteStates.keys)
            let list: [Site]
            var demangled = true
            if dynamic && usesDefaultProvider {
                demangled = names
                list = try OpsRegistry.processSites(includeDynamic: true, demangle: names) { patched.contains($0) }
            } else {
                list = try siteProvider { patched.contains($0) }
            }
            let sites = RegistrySites(generation: generation, list: list, includeDynamic: dynamic, demangled: demangled)
            siteCache = sites
            return sites
        }

        /// Whether `ops`'s patterns match names (a glob), not only addresses
        /// or the main executable's ranges.
        func needsNames(_ ops: Ops) -> Bool {
            (self[ops].filter + self[ops].notrace).contains { if case .glob = $0 { true } else { false } }
        }

        /// The site a change sees at `address`: the registry's own once it has
        /// one there (it outlives the bytes discovery reads), else the listed one;
        /// an unusable listed site only where the registry has one.
        func site(at address: UInt, in sites: RegistrySites?) -> Site? {
            guard let sites else { return nil }
            if let listed = sites.listed[address] { return siteStates[address]?.site ?? listed }
            return sites.unusable[address] != nil ? siteStates[address]?.site : nil
        }

        /// The addresses `ops` wants: its filter's matches (every listed site
        /// when empty) minus its notrace's, usable, of the entry kind it takes.
        /// Functions without sites get their relocation verdict here (once per
        /// function); the refused ones go to `lastRefusals`.
        mutating func resolve(_ ops: Ops, in sites: RegistrySites) throws(TraceError) -> Set<UInt> {
            var candidates: Set<UInt>
            if self[ops].filter.isEmpty {
                candidates = sites.allAddresses
            } else {
                candidates = []
                for pattern in self[ops].filter { candidates.formUnion(sites.addresses(matching: pattern)) }
            }
            for pattern in self[ops].notrace where !candidates.isEmpty { candidates.subtract(sites.addresses(matching: pattern)) }
            var wanted = Set<UInt>(minimumCapacity: candidates.count)
            var refusals: [(Site, RelocationRefusal)] = []
            let tracer = dynamic ? OpsRegistry.tracerCodeRanges : []
            // One growth for a filter over a whole program's functions
            // (63,000 for swift-format: growing one by one rehashed the
            // verdicts seventeen times).
            if dynamic { dynamicVerdicts.reserveCapacity(dynamicVerdicts.count + candidates.count) }
            for address in candidates {
                guard let site = site(at: address, in: sites), ops.wantsEntryKind(of: site) else { continue }
                if site.kind == .none && relocations[address] == nil {
                    if dynamicVerdicts[address] == nil {
                        if tracer.contains(where: { $0.0 <= site.functionAddress && site.functionAddress < $0.1 }) {
                            dynamicVerdicts[address] = .failure(.tracerCode)
                        } else if let refusal = RelocationRefusal.refusal(forSymbol: site.symbol) {
                            dynamicVerdicts[address] = .failure(refusal)
                        } else {
                            dynamicVerdicts[address] = PrologueRelocation.analyze(functionAt: site.functionAddress, size: site.functionSize)
                        }
                    }
                    if case let .failure(reason)? = dynamicVerdicts[address] {
                        refusals.append((site, reason))
                        continue
                    }
                }
                wanted.insert(address)
            }
            lastRefusals = refusals.sorted { $0.0.address < $1.0.address }
            if wanted.isEmpty { throw TraceError.noMatchingFunction(filter: self[ops].filter.map(\.description)) }
            return wanted
        }

        /// Relocates the entries of `addresses` (functions without sites, with a
        /// verdict) that are not relocated yet: stubs first, then one batch.
        mutating func relocateEntries(_ addresses: [UInt], sites: RegistrySites?) throws(TraceError) {
            guard !dynamicVerdicts.isEmpty else { return }
            var wanted: [PrologueRelocation] = []
            for address in addresses where relocations[address] == nil {
                guard case let .success(relocation)? = dynamicVerdicts[address], let site = site(at: address, in: sites), site.kind == .none else { continue }
                wanted.append(relocation)
            }
            var firstError: TraceError?
            let built = jit.placeRelocatedStubs(wanted, { $0 }) { _, error in
                if firstError == nil { firstError = error }
            }
            if let firstError {
                for stub in built { jit.free(stub.slot) }
                throw firstError
            }
            if built.isEmpty { return }
            let result = TextPoker.shared.relocate(built.map(\.entry))
            let failed = Dictionary((result.failed + result.skipped).map { ($0.site.address, $0.problem.description) }, uniquingKeysWith: { a, _ in a })
            for stub in built {
                if failed[stub.relocation.patchAddress] != nil { jit.free(stub.slot) } else { relocations[stub.relocation.patchAddress] = stub }
            }
            if let (address, reason) = failed.min(by: { $0.key < $1.key }) {
                throw TraceError.patchFailed(site: address, reason: "relocating the prologue: \(reason)")
            }
        }

        /// The instruction of a site no ops wants: a nop, or for a relocated
        /// entry the jump to its stub.
        func offInstruction(at address: UInt) -> SiteInstruction {
            relocations[address].map { .jump($0.address) } ?? .nop
        }



        /// Steps 1–4 for one ops whose wanted set becomes `wanted`.
        mutating func change(_ ops: Ops, to wanted: Set<UInt>, sites: RegistrySites?) throws(TraceError) {
            let adding = wanted.subtracting(self[ops].attachedSites)
            let removing = self[ops].attachedSites.subtracting(wanted)
            // Step 1: one MODIFY_RESUME ops per function.
            if ops.flags.contains(.modifyResume) {
                for address in adding {
                    if siteStates[address]?.ops.contains(where: { $0 !== ops && $0.flags.contains(.modifyResume) }) == true {
                        throw TraceError.resumeConflict(function: siteStates[address]?.site.function ?? "0x" + String(address, radix: 16))
                    }
                }
            }
            // Step 2: the new ops set of every affected site, and its target.
            let added = adding.sorted(), removed = removing.sorted()
            try relocateEntries(added, sites: sites)
            struct Plan { var state: SiteState; var instruction: SiteInstruction; var built: IteratorAllocation?; var adds: Bool }
            // Both sets in address order, merged: no third set to hash.
            var affected: [(address: UInt, adds: Bool)] = []
            affected.reserveCapacity(added.count + removed.count)
            var a = 0, r = 0
            while a < added.count || r < removed.count {
                if r == removed.count || (a < added.count && added[a] < removed[r]) {
                    affected.append((added[a], true)); a += 1
                } else {
                    affected.append((removed[r], false)); r += 1
                }
            }
            var plans: [Plan] = []
            var transitions: [SiteTransition] = []
            plans.reserveCapacity(affected.count)
            transitions.reserveCapacity(affected.count)
            let recorded = TextPoker.shared.recordedInstructions(at: affected.map(\.address))
            // Only sites being added can have `ops` as their one ops.
            let lone = PerFunctionStubs(ops: ops, leaf: added.isEmpty ? nil : leafCallback(of: ops))
            do throws(TraceError) {
                for ((address, adds), current) in zip(affected, recorded) {
                    guard var state = siteStates[address] ?? site(at: address, in: sites).map({ SiteState(site: $0) }) else { continue }
                    if adds {
                        state.ops.append(ops)
                        if state.ops.count > 1 { state.ops.sort { order(of: $0) < order(of: $1) } }
                    } else {
                        state.ops.removeAll { $0 === ops }
                    }
                    var plan = Plan(state: state, instruction: .nop, built: nil, adds: adds)
                    switch state.ops.count {
                    case 0:
                        plan.instruction = offInstruction(at: address)
                    case 1 where state.ops[0] === ops:
                        plan.instruction = .jump(try perFunctionStub(lone, for: state.site))
                    case 1:
                        plan.instruction = .jump(try perFunctionStub(of: state.ops[0], for: state.site))
                    default:
                        let iterator = try buildIterator(state.ops, for: state.site)
                        plan.built = iterator
                        plan.instruction = .jump(jit.address(of: iterator.slot))
                    }
                    plans.append(plan)
                    if plan.instruction != current ?? offInstruction(at: address) {
                        transitions.append(SiteTransition(site: state.site, to: plan.instruction))
                    }
                }
                // The stubs are written, in runs, before a site can jump to them.
                try jit.flushStaged()
                stagedStubs = []
            } catch {
                jit.discardStaged()
                dropStagedStubs()
                for plan in plans { if let built = plan.built { release(built) } }
                throw error
            }
            // Step 3: one batch.
            let result = transitions.isEmpty ? BatchResult() : TextPoker.shared.apply(transitions)
            var failures: [UInt: String] = [:]
            for outcome in result.failed + result.skipped { failures[outcome.site.address] = outcome.problem.description }
            // Step 4: commit what changed, release what was built for failures.
            var attached = self[ops].attachedSites
            self[ops].attachedSites = []
            if !added.isEmpty {
                attached.reserveCapacity(attached.count + added.count)
                siteStates.reserveCapacity(siteStates.count + added.count)
            }
            for i in plans.indices {
                let address = plans[i].state.site.address
                if !failures.isEmpty && failures[address] != nil {
                    if let built = plans[i].built { release(built) }
                    continue
                }
                plans[i].state.iterator = plans[i].built
                if let old = siteStates.updateValue(plans[i].state, forKey: address)?.iterator { retire(old) }
                if plans[i].adds { attached.insert(address) } else { attached.remove(address) }
            }
            self[ops].attachedSites = attached
            if let (address, reason) = failures.min(by: { $0.key < $1.key }) {
                // The caller undoes the sites that did change.
                throw TraceError.patchFailed(site: address, reason: reason)
            }
        }

        /// The per-function trampoline of `ops` for `site`, built on first use
        /// (kept until the ops is unregistered): a leaf stub when the callback
        /// allows it, else the generic stub.
        mutating func perFunctionStub(of ops: Ops, for site: Site) throws(TraceError) -> UInt {
            try perFunctionStub(PerFunctionStubs(ops: ops, leaf: leafCallback(of: ops)), for: site)
        }

        /// What a change asks once for all the per-function stubs of one ops:
        /// the ops and its leaf callback (each a look-up of its registration).
        struct PerFunctionStubs {
            let ops: Ops
            let leaf: LeafCallback?
        }

        mutating func perFunctionStub(_ stubs: PerFunctionStubs, for site: Site) throws(TraceError) -> UInt {
            let ops = stubs.ops
            if let slot = self[ops].stubs[site.address] { return jit.address(of: slot) }
            if let leaf = stubs.leaf, let address = try leafStub(of: ops, callback: leaf, for: site) {
                return address
            }
            let slot = try jit.allocate(near: site.address)
            let address = jit.address(of: slot)
            let bytes = StubX86_64.stub(
                at: address, regionBase: jit.regions[slot.region].base,
                function: UInt(bitPattern: unsafeBitCast(ops.raw.pointee.func, to: UnsafeRawPointer.self)),
                ops: UInt(bitPattern: ops.raw), resume: resumeAddress(of: site), site: site.address, entry: ops.entry)
            jit.stage(bytes, in: slot)
            self[ops].stubs[site.address] = slot
            stagedStubs.append((ops, site.address))
            return address
        }

        /// The eligible leaf callback of `ops`: only a lean ops without flags (no
        /// SAVE_REGS, no MODIFY_RESUME, not the function graph) can take the leaf
        /// path. The analysis runs once per ops.
        mutating func leafCallback(of ops: Ops) -> LeafCallback? {
            guard leafStubs, ops.flags.isEmpty, ops.entry == .lean else { return nil }
            if self[ops].leafAnalysis == nil {
                let entry = UInt(bitPattern: unsafeBitCast(ops.raw.pointee.func, to: UnsafeRawPointer.self))
                self[ops].leafAnalysis = LeafCallbackAnalysis.analyze(entry)
            }
            guard case let .success(leaf)? = self[ops].leafAnalysis else { return nil }
            return leaf
        }

        /// A leaf stub in one slot, or two contiguous ones when it needs them;
        /// nil when it fits neither (the caller builds the generic stub).
        mutating func leafStub(of ops: Ops, callback: LeafCallback, for site: Site) throws(TraceError) -> UInt? {
            for count in 1...2 {
                let slot = try jit.allocate(near: site.address, slots: count)
                let address = jit.address(of: slot)
                let bytes = StubX86_64.leafStub(
                    at: address, site: site.address, resume: resumeAddress(of: site),
                    ops: UInt(bitPattern: ops.raw), callback: callback)
                guard bytes.count <= count * JITMemory.slotSize else {
                    jit.free(slot)
                    continue
                }
                jit.stage(bytes, in: slot)
                self[ops].stubs[site.address] = slot
                self[ops].leafStubSites.insert(site.address)
                stagedStubs.append((ops, site.address))
                return address
            }
            return nil
        }

        /// Where a traced call continues after its trampoline: the instruction
        /// after the site as the compiler emitted it (a 6-byte `call
        /// *__fentry__@GOTPCREL(%rip)`'s sixth byte is the `nop` of its normal
        /// form, or, while the batch that first enables it is in flight, still
        /// the old displacement's last byte: `TextPoker.fused`), or a
        /// relocated entry's stub.
        func resumeAddress(of site: Site) -> UInt {
            relocations[site.address]?.address
                ?? site.address + UInt(max(site.kind.compiledLength, X86SiteEncoding.normalLength))
        }

        /// A new iterator for `list` (immutable once the site calls it).
        func buildIterator(_ list: [Ops], for site: Site) throws(TraceError) -> IteratorAllocation {
            let size = MemoryLayout<UInt64>.stride * (1 + list.count)
            guard let memory = malloc(size) else { throw TraceError.outOfMemory(near: site.address) }
            memory.storeBytes(of: UInt64(list.count), as: UInt64.self)
            for (i, ops) in list.enumerated() {
                memory.storeBytes(of: UInt(bitPattern: ops.raw), toByteOffset: 8 * (i + 1), as: UInt.self)
            }
            let slot: JITSlot
            do throws(TraceError) { slot = try jit.allocate(near: site.address) } catch { free(memory); throw error }
            let address = jit.address(of: slot)
            let bytes = StubX86_64.stub(
                at: address, regionBase: jit.regions[slot.region].base,
                function: lt_tramp_iterate_address(), ops: UInt(bitPattern: memory),
                resume: resumeAddress(of: site), site: site.address, entry: .full)
            jit.stage(bytes, in: slot)
            return IteratorAllocation(slot: slot, list: memory)
        }

        /// The stubs of a change that failed before step 3: never written nor
        /// published, so their slots are free at once and no later change may
        /// reuse them.
        mutating func dropStagedStubs() {
            for (ops, site) in stagedStubs {
                guard let slot = registrations[ObjectIdentifier(ops)]?.stubs.removeValue(forKey: site) else { continue }
                registrations[ObjectIdentifier(ops)]?.leafStubSites.remove(site)
                jit.free(slot)
            }
            stagedStubs = []
        }

        /// Never published: free at once.
        func release(_ iterator: IteratorAllocation) {
            jit.free(iterator.slot)
            free(iterator.list)
        }

        mutating func retire(_ iterator: IteratorAllocation) {
            retired.slots.append(iterator.slot)
            retired.lists.append(iterator.list)
        }

        mutating func retireStubs(of ops: Ops) {
            if !self[ops].leafStubSites.isEmpty, case let .success(leaf)? = self[ops].leafAnalysis {
                retired.leafCode += OpsRegistry.ranges(of: leaf)
            }
            retired.slots.append(contentsOf: self[ops].stubs.values)
            self[ops].stubs = [:]
            self[ops].leafStubSites = []
        }


        /// The code rule (c) of the grace period checks: the JIT regions, and
        /// the leaf callbacks that published or retired leaf stubs can run.
        var quiescenceCodeRanges: [(UInt, UInt)] {
            var ranges = jit.ranges + retired.leafCode
            for registration in registrations.values where !registration.leafStubSites.isEmpty {
                if case let .success(leaf)? = registration.leafAnalysis { ranges += OpsRegistry.ranges(of: leaf) }
            }
            return ranges
        }

        /// Step 5: a grace period, then free everything retired before it.
        mutating func reclaim(always: Bool = false) throws(TraceError) {
            guard always || !retired.isEmpty else { return }
            let batch = retired
            try Quiescence.synchronize(codeRanges: quiescenceCodeRanges, deadline: deadline)
            gracePeriods += 1
            retired = Retired()
            for slot in batch.slots { jit.free(slot) }
            for list in batch.lists { free(list) }
            for ops in batch.ops { free(ops) }
        }
    }
}

extension OpsRegistry {
    /// The tracer's own executable code: the mappings of the file that holds
    /// the trampolines (its functions are never relocated).
    static let tracerCodeRanges: [(UInt, UInt)] = {
        let entry = lt_tramp_entry_address()
        guard let own = (try? ProcessMaps.read())?.first(where: { $0.start <= entry && entry < $0.end }) else { return [] }
        return executableMappings(of: own.path)
    }()

    /// The executable mappings of the file at `path`.
    static func executableMappings(of path: String) -> [(UInt, UInt)] {
        ((try? ProcessMaps.read()) ?? []).filter { $0.path == path && $0.executable }.map { ($0.start, $0.end) }
    }

    /// Where a thread running a leaf callback can be: its decoded code.
    static func ranges(of leaf: LeafCallback) -> [(UInt, UInt)] {
        leaf.codeRanges.map { ($0.lowerBound, $0.upperBound + 1) }
    }

    // MARK: Default site provider

    /// Every usable site of every object loaded in this process.
    @Sendable static func processSites(_ isPatched: @escaping (UInt) -> Bool) throws(TraceError) -> [Site] {
        try processSites(includeDynamic: false, isPatched)
    }

    /// With `includeDynamic`, the functions without sites (kind `none`) too.
    static func processSites(includeDynamic: Bool, demangle: Bool = true, _ isPatched: @escaping (UInt) -> Bool) throws(TraceError) -> [Site] {
        let options = DiscoveryOptions(sourceLines: false, demangle: demangle, includeFunctionsWithoutSites: includeDynamic)
        do throws(DiscoveryError) {
            let table = try SiteTable.currentProcess(options: options, isOwnedByPatcher: isPatched)
            return includeDynamic ? table.sites + table.functionsWithoutSites : table.sites
        } catch {
            throw TraceError.sitesUnavailable(String(describing: error))
        }
    }
}
