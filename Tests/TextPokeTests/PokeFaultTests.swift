// The text poke's failure path, through its fault-injection seam
// (TextPoker.Configuration.faults): each write and serialization of the
// protocol fails in turn while worker threads call the site flat out. Every
// failed batch must leave the site exactly as it was (the old call, read
// back from memory) or, when even the rollback fails, report the batch
// wedged with the site still emulated, never a torn instruction; and every
// call the workers made is counted by exactly one target (the fixture's own
// counters).
import Foundation
import LiveTrace
import TestSupport
import XCTest

final class PokeFaultTests: XCTestCase {
    let poker = TextPoker.shared

    override func setUp() {
        super.setUp()
        poker.configuration = TextPoker.Configuration()
    }

    override func tearDown() {
        poker.configuration = TextPoker.Configuration()
        XCTAssertTrue(poker.retryRollback(), "no batch left wedged")
        super.tearDown()
    }

    private func callBytes(_ site: UInt, _ target: UInt) -> [UInt8] {
        let rel = Int32(truncatingIfNeeded: Int64(bitPattern: UInt64(target)) - Int64(bitPattern: UInt64(site + 5)))
        return [X86SiteEncoding.callRel32Opcode] + withUnsafeBytes(of: rel.littleEndian) { Array($0) }
    }

    /// On a loaded machine a worker may not have run yet: wait (10 s at
    /// most) until each has made a call, so checkCounts judges every one.
    private func letEveryWorkerCall(_ seed: SeedFixture, workers: Int) {
        let deadline = Date().addingTimeInterval(10)
        while (0..<workers).contains(where: { seed.counter($0, .made) == 0 }) && Date() < deadline { usleep(1000) }
    }

    private func checkCounts(_ seed: SeedFixture, workers: Int, file: StaticString = #filePath, line: UInt = #line) {
        for w in 0..<workers {
            let made = seed.counter(w, .made)
            XCTAssertGreaterThan(made, 0, "worker \(w) made no call", file: file, line: line)
            XCTAssertEqual(made, seed.counter(w, .a) + seed.counter(w, .b), "worker \(w): every call counted once", file: file, line: line)
        }
    }

    func testEveryFailingStepRollsTheSiteBackToItsOldInstruction() throws {
        let seed = try SeedFixture()
        XCTAssertEqual(poker.apply([SiteTransition(site: seed.site, to: .call(seed.targetA))]).patchedCount, 1)
        let old = callBytes(seed.site.address, seed.targetA)
        let workers = seed.start(plainWorkers: 2)
        defer { seed.stop() }
        let failing: [TextPoker.Step] = [.writeInt3, .serializeAfterInt3, .writeTail, .serializeAfterTail, .writeHead, .serializeAfterHead]
        for step in failing {
            for _ in 0..<20 {
                poker.configuration.faults = TextPoker.PokeFaults { $0 == step ? "injected" : nil }
                let result = poker.apply([SiteTransition(site: seed.site, to: .call(seed.targetB))])
                XCTAssertEqual(result.failedCount, 1, "\(step)")
                XCTAssertTrue(result.failed.first?.problem.description.contains(step.rawValue) == true, "\(step): \(result.failed)")
                XCTAssertNil(poker.wedgedReason, "\(step): the rollback succeeded")
                XCTAssertEqual(CodeWriter.read(seed.site.address, count: 5), old, "\(step): the old call, byte for byte")
                XCTAssertEqual(poker.currentInstruction(at: seed.site), .call(seed.targetA), "\(step)")
            }
        }
        // The seam off, the same transition succeeds: nothing was left behind.
        poker.configuration.faults = nil
        XCTAssertEqual(poker.apply([SiteTransition(site: seed.site, to: .call(seed.targetB))]).patchedCount, 1)
        XCTAssertEqual(CodeWriter.read(seed.site.address, count: 5), callBytes(seed.site.address, seed.targetB))
        letEveryWorkerCall(seed, workers: workers)
        seed.stop()
        checkCounts(seed, workers: workers)
        XCTAssertEqual(poker.apply([SiteTransition(site: seed.site, to: .nop)]).patchedCount, 1)
    }

    func testAFailedRollbackWedgesTheBatchWithTheSiteStillEmulatedUntilItIsRetried() throws {
        let seed = try SeedFixture()
        XCTAssertEqual(poker.apply([SiteTransition(site: seed.site, to: .call(seed.targetA))]).patchedCount, 1)
        let old = callBytes(seed.site.address, seed.targetA)
        let workers = seed.start(plainWorkers: 2)
        defer { seed.stop() }

        // Step 3's write fails, and so does the rollback's OLD[0].
        poker.configuration.faults = TextPoker.PokeFaults { $0 == .writeTail || $0 == .rollbackHead ? "injected" : nil }
        let wedging = poker.apply([SiteTransition(site: seed.site, to: .call(seed.targetB))])
        XCTAssertEqual(wedging.failedCount, 1)
        XCTAssertNotNil(poker.wedgedReason)
        // In flight: int3 over the old call's first byte, the rest old; the
        // trap handler emulates the site meanwhile.
        XCTAssertEqual(CodeWriter.read(seed.site.address, count: 5), [X86SiteEncoding.int3] + old.dropFirst())
        let trapsBefore = poker.trapCounters.emulated_calls
        let madeBefore = seed.totalMade()
        let deadline = Date().addingTimeInterval(10)
        while seed.totalMade() < madeBefore + 1000 && Date() < deadline { usleep(1000) }
        XCTAssertGreaterThan(poker.trapCounters.emulated_calls, trapsBefore, "threads kept calling through the emulated site")

        // No further batch runs while wedged, and says why.
        let refused = poker.apply([SiteTransition(site: seed.site, to: .nop)])
        XCTAssertEqual(refused.patchedCount, 0)
        XCTAssertTrue("\(refused.failed) \(refused.skipped)".contains("an earlier batch could not complete"), "\(refused.failed) \(refused.skipped)")
        // Still failing: the retry says so and changes nothing.
        XCTAssertFalse(poker.retryRollback())
        XCTAssertNotNil(poker.wedgedReason)

        // The cause gone, the retry restores the old bytes and batches run again.
        poker.configuration.faults = nil
        XCTAssertTrue(poker.retryRollback())
        XCTAssertNil(poker.wedgedReason)
        XCTAssertEqual(CodeWriter.read(seed.site.address, count: 5), old)
        XCTAssertEqual(poker.apply([SiteTransition(site: seed.site, to: .call(seed.targetB))]).patchedCount, 1)
        letEveryWorkerCall(seed, workers: workers)
        seed.stop()
        checkCounts(seed, workers: workers)
        XCTAssertEqual(poker.apply([SiteTransition(site: seed.site, to: .nop)]).patchedCount, 1)
    }
}
