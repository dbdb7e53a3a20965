// The function graph's own trampoline entry and return trampoline, whose
// common case runs in assembly (lt_tramp_entry_graph, the fast exit of
// lt_return_x86_64.S), must leave every register as the function left it:
// the argument registers and xmm0-7 at entry, and at the return everything
// the fast exit touches, return registers included.
import Foundation
import Glibc
import LiveTrace
import TestSupport
import XCTest

final class GraphRegisterTests: XCTestCase {
    typealias CallWithRegisters = @convention(c) (UnsafeRawPointer, UnsafeMutableRawPointer, UnsafeMutableRawPointer) -> Void
    typealias Host = @convention(c) (UnsafeRawPointer, UnsafeMutableRawPointer, UnsafeMutableRawPointer) -> Void

    /// The register image of lt_fix_call_with_regs: rax rbx rcx rdx rsi rdi
    /// r8 r9 r10 r12 r13 r14 r15 at 8-byte steps, a pad at 104, xmm0-7 from 112.
    static let imageSize = 240
    static let padRange = 104..<112
    /// What a return must keep whatever path it takes: rax rbx rcx rdx (0..<32),
    /// r8 (48..<56), r12-r15 (72..<104), xmm0-3 (112..<176); the full exit may
    /// use the other caller-saved registers as any C function may.
    static let returnKeptRanges = [0..<32, 48..<56, 72..<104, 112..<176]

    static func pattern(_ salt: UInt8) -> [UInt8] {
        (0..<imageSize).map { UInt8(truncatingIfNeeded: $0 &* 13 &+ Int(salt)) | 0x01 }
    }

    static func registers(_ image: [UInt8]) -> [UInt8] {
        Array(image[0..<padRange.lowerBound]) + Array(image[padRange.upperBound...])
    }

    static func kept(_ image: [UInt8]) -> [UInt8] {
        returnKeptRanges.flatMap { image[$0] }
    }

    var handle: UnsafeMutableRawPointer!

    override func setUpWithError() throws {
        handle = try GraphFixtures.library(
            "graph_regs.c", compiler: "clang", extraFlags: [Fixtures.source("trampolines/regs_harness.S")])
        GraphFixtures.nameFunctions(handle, ["g_regs_probe", "g_regs_host"])
    }

    /// Calls the probe with `pattern` in every register (through the host
    /// when `nested`) and returns the registers that came back.
    static func imageAfterProbe(_ handle: UnsafeMutableRawPointer, _ pattern: [UInt8], nested: Bool) throws -> [UInt8] {
        let input = UnsafeMutableRawPointer.allocate(byteCount: Self.imageSize, alignment: 16)
        let output = UnsafeMutableRawPointer.allocate(byteCount: Self.imageSize, alignment: 16)
        defer { input.deallocate(); output.deallocate() }
        input.copyMemory(from: pattern, byteCount: Self.imageSize)
        output.initializeMemory(as: UInt8.self, repeating: 0, count: Self.imageSize)
        let probe = UnsafeRawPointer(try XCTUnwrap(dlsym(handle, "g_regs_probe")))
        if nested {
            let host = try GraphFixtures.symbol(handle, "g_regs_host", as: Host.self)
            host(probe, input, output)
        } else {
            let call = try GraphFixtures.symbol(handle, "lt_fix_call_with_regs", as: CallWithRegisters.self)
            call(probe, input, output)
        }
        return Array(UnsafeRawBufferPointer(start: output, count: Self.imageSize))
    }

    /// A thread of its own: its first traced call takes the full path (no
    /// shadow stack yet), every later one the assembly fast path.
    func onFreshThread(_ body: @escaping @Sendable () -> Void) {
        let done = DispatchSemaphoreBox()
        let thread = Thread {
            body()
            done.signal()
        }
        thread.start()
        done.wait()
    }

    func testFastEntryAndExitKeepEveryRegisterWhileRecording() throws {
        let pattern = Self.pattern(5)
        XCTAssertEqual(Self.registers(try Self.imageAfterProbe(handle, pattern, nested: false)), Self.registers(pattern),
                       "the probe itself must not change a register")
        nonisolated(unsafe) let library = handle!
        nonisolated(unsafe) var images: [[UInt8]] = []
        nonisolated(unsafe) var failure: Error?
        let recorded = try recordGraph(["g_regs_*"]) {
            onFreshThread {
                do {
                    for nested in [false, false, true, true] { images.append(try Self.imageAfterProbe(library, pattern, nested: nested)) }
                } catch { failure = error }
            }
        }
        if let failure { throw failure }
        XCTAssertEqual(images.count, 4)
        // The thread's first call went through the full path: what a return keeps.
        XCTAssertEqual(Self.kept(images[0]), Self.kept(pattern), "first call (full entry and exit)")
        for (index, image) in images.enumerated().dropFirst() {
            XCTAssertEqual(Self.registers(image), Self.registers(pattern), "call \(index) (assembly fast paths)")
        }
        let lines = recorded.byThread.values.first { $0.contains("> g_regs_probe 0") } ?? []
        XCTAssertEqual(lines, [
            "> g_regs_probe 0", "< g_regs_probe 0", "> g_regs_probe 0", "< g_regs_probe 0",
            "> g_regs_host 0", "> g_regs_probe 1", "< g_regs_probe 1", "< g_regs_host 0",
            "> g_regs_host 0", "> g_regs_probe 1", "< g_regs_probe 1", "< g_regs_host 0",
        ])
    }

    func testFastEntryAndExitKeepEveryRegisterWithoutARecording() throws {
        // No ring area attached: the hooks run, nothing is stored.
        let pattern = Self.pattern(9)
        let graph = try FunctionGraph.start(functions: ["g_regs_*"], maxDepth: FunctionGraph.stackCapacity)
        nonisolated(unsafe) let library = handle!
        nonisolated(unsafe) var images: [[UInt8]] = []
        nonisolated(unsafe) var failure: Error?
        onFreshThread {
            do {
                for nested in [false, false, true] { images.append(try Self.imageAfterProbe(library, pattern, nested: nested)) }
            } catch { failure = error }
        }
        try graph.stop()
        if let failure { throw failure }
        XCTAssertEqual(Self.kept(images[0]), Self.kept(pattern), "first call (full entry and exit)")
        XCTAssertEqual(Self.registers(images[1]), Self.registers(pattern), "second call (assembly fast paths)")
        XCTAssertEqual(Self.registers(images[2]), Self.registers(pattern), "nested call (assembly fast paths)")
    }

    func testFramesPastTheDepthLimitKeepEveryRegister() throws {
        // Depth limit 1: the nested probe is hooked SILENT by the fast entry.
        let pattern = Self.pattern(17)
        nonisolated(unsafe) let library = handle!
        nonisolated(unsafe) var images: [[UInt8]] = []
        nonisolated(unsafe) var failure: Error?
        let recorded = try recordGraph(["g_regs_*"], maxDepth: 1) {
            onFreshThread {
                do {
                    for _ in 0..<2 { images.append(try Self.imageAfterProbe(library, pattern, nested: true)) }
                } catch { failure = error }
            }
        }
        if let failure { throw failure }
        XCTAssertEqual(Self.registers(images[1]), Self.registers(pattern), "a silent frame's entry and exit")
        let lines = recorded.byThread.values.first { $0.contains("> g_regs_host 0") } ?? []
        XCTAssertEqual(lines, ["> g_regs_host 0", "< g_regs_host 0", "> g_regs_host 0", "< g_regs_host 0"])
    }
}

/// A semaphore usable from a @Sendable closure.
final class DispatchSemaphoreBox: @unchecked Sendable {
    private let semaphore = DispatchSemaphore(value: 0)
    func signal() { semaphore.signal() }
    func wait() { semaphore.wait() }
}
