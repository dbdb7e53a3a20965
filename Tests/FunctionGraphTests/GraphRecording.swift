// In-process recording for the function-graph tests: a ring area in shared
// anonymous memory, attached with lt_record_attach (the real writer), read
// back ring by ring after lt_record_detach. Event addresses are named from
// the fixtures' symbols, so a sequence reads as "> g_leaf 2", "< g_leaf 2", and "<! g_f 1"
// for an exit flagged unwound.
import CLiveTraceShims
import Foundation
import Glibc
import LiveTrace
import LiveTraceRecording
import TestSupport
import XCTest

struct GraphFixtureError: Error, CustomStringConvertible {
    var description: String
}

enum GraphFixtures {
    nonisolated(unsafe) private static var loaded: [String: UnsafeMutableRawPointer] = [:]
    private static let lock = NSLock()

    /// Compiles `source` (under Tests/Fixtures/graph) into a shared library
    /// with an entry site on every function and dlopens it once.
    static func library(_ source: String, compiler: String, extraFlags: [String] = []) throws -> UnsafeMutableRawPointer {
        lock.lock()
        defer { lock.unlock() }
        if let handle = loaded[source] { return handle }
        let output = "libgraph-\(source.replacingOccurrences(of: ".", with: "-")).so"
        let path = try Fixtures.compile(
            ["graph/\(source)"], compiler: compiler,
            flags: ["-O0", "-g", "-fpatchable-function-entry=5", "-shared", "-fPIC", "-pthread"] + extraFlags,
            output: output)
        guard let handle = dlopen(path, RTLD_NOW | RTLD_GLOBAL) else {
            throw GraphFixtureError(description: "dlopen \(path): \(String(cString: dlerror()))")
        }
        loaded[source] = handle
        return handle
    }

    nonisolated(unsafe) private static var names: [UInt64: String] = [:]

    /// Registers the names of a fixture's functions (by dlsym), so events
    /// read back name them; an address without a name prints in hex.
    static func nameFunctions(_ handle: UnsafeMutableRawPointer, _ functionNames: [String]) {
        lock.lock()
        defer { lock.unlock() }
        for name in functionNames {
            if let address = dlsym(handle, name) { names[UInt64(UInt(bitPattern: address))] = name }
        }
    }

    /// Registers names given by symbol: [symbol: name to print].
    static func nameFunctions(_ handle: UnsafeMutableRawPointer, _ symbolNames: [String: String]) {
        lock.lock()
        defer { lock.unlock() }
        for (symbol, name) in symbolNames {
            if let address = dlsym(handle, symbol) { names[UInt64(UInt(bitPattern: address))] = name }
        }
    }

    static func name(of address: UInt64) -> String {
        lock.lock()
        defer { lock.unlock() }
        return names[address] ?? "0x" + String(address, radix: 16)
    }

    static func symbol<T>(_ handle: UnsafeMutableRawPointer, _ name: String, as type: T.Type) throws -> T {
        guard let address = dlsym(handle, name) else { throw GraphFixtureError(description: "fixture symbol \(name) missing") }
        return unsafeBitCast(address, to: type)
    }
}

struct GraphEvent: Equatable {
    var pid: UInt64
    var tid: UInt64
    /// The ring (one per execution context of a thread: lt_context.h).
    var ring: UInt32
    var line: String
}

/// One recording into a fresh ring area. Areas are never unmapped (a writer
/// may still hold its address after detach: lt_record.c), so each test leaks
/// its area's address space, which is small.
final class GraphRecording {
    let area: UnsafeMutableRawPointer
    let size: Int

    /// `capacity` in records: the deepest test stores 8192 events and the
    /// metadata records before its first (lt_ring.h).
    init(rings: UInt32 = 64, capacity: UInt32 = 1 << 14) throws {
        size = lt_ring_area_size(rings, capacity)
        guard let mapped = mmap(nil, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0),
              mapped != MAP_FAILED else { throw GraphFixtureError(description: "mmap of the ring area: errno \(errno)") }
        area = mapped
        var tsc: UInt64 = 0, ns: UInt64 = 0
        lt_record_calibration_pair(&tsc, &ns)
        let initialized = lt_ring_area_init(area, size, rings, capacity, 0, tsc, ns, 1_000_000)
        guard initialized == 0 else { throw GraphFixtureError(description: "lt_ring_area_init: \(initialized)") }
        let attached = lt_record_attach(area, size)
        guard attached == 0 else { throw GraphFixtureError(description: "lt_record_attach: \(attached)") }
    }

    /// Detaches, then returns every stored event in ring order; fails when
    /// an event was lost.
    func finish() throws -> [GraphEvent] {
        let detached = lt_record_detach()
        guard detached == 0 else { throw GraphFixtureError(description: "lt_record_detach: \(detached)") }
        let header = area.assumingMemoryBound(to: lt_area_header.self)
        guard header.pointee.lost_without_ring == 0 else {
            throw GraphFixtureError(description: "\(header.pointee.lost_without_ring) events lost without a ring")
        }
        var events: [GraphEvent] = []
        for index in 0..<header.pointee.ring_count {
            let ring = lt_area_ring(header, index)!
            guard ring.pointee.state != LT_RING_FREE.rawValue else { continue }
            guard ring.pointee.lost_total == 0 else {
                throw GraphFixtureError(description: "ring \(index) lost \(ring.pointee.lost_total) events")
            }
            let stored = lt_ring_records(ring)!
            var decoder = RecordDecoder()
            for position in 0..<Int(ring.pointee.head) {
                guard let event = try decoder.decode(stored[position]) else { continue }
                events.append(GraphEvent(pid: ring.pointee.pid, tid: ring.pointee.tid, ring: index, line: Self.describe(event)))
            }
        }
        return events
    }

    static func describe(_ event: TraceEvent) -> String {
        let name = GraphFixtures.name(of: event.address)
        switch event.kind {
        case .entry: return "> \(name) \(event.depth)"
        case .exit: return "\(event.isUnwound ? "<!" : "<") \(name) \(event.depth)"
        case .lost: return "? lost \(event.address)"
        }
    }
}

/// Records the function graph of `patterns` while `body` runs; returns the
/// event lines of every thread, by thread id.
func recordGraph(
    _ patterns: [String], maxDepth: Int = FunctionGraph.stackCapacity, _ body: () throws -> Void
) throws -> (byThread: [UInt64: [String]], events: [GraphEvent]) {
    let recording = try GraphRecording()
    let graph: FunctionGraph
    do {
        graph = try FunctionGraph.start(functions: patterns, maxDepth: maxDepth)
    } catch {
        _ = try? recording.finish()
        throw error
    }
    var failure: Error?
    do { try body() } catch { failure = error }
    try graph.stop()
    let events = try recording.finish()
    if let failure { throw failure }
    var byThread: [UInt64: [String]] = [:]
    for event in events { byThread[event.tid, default: []].append(event.line) }
    return (byThread, events)
}

/// The expected lines of a call of `fib(n)` at `depth`, by the definition.
func expectedFib(_ n: Int, depth: Int, name: String = "g_fib") -> [String] {
    var lines = ["> \(name) \(depth)"]
    if n >= 2 {
        lines += expectedFib(n - 1, depth: depth + 1, name: name)
        lines += expectedFib(n - 2, depth: depth + 1, name: name)
    }
    lines.append("< \(name) \(depth)")
    return lines
}

func currentThreadID() -> UInt64 { UInt64(lt_sys_gettid()) }
