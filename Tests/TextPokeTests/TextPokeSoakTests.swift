// `make soak` (LIVETRACE_SOAK=1 swift test --filter Soak): the seed's test and
// the hazards, many more rounds than the suite runs. Skipped otherwise.
import XCTest

final class TextPokeSoakTests: XCTestCase {
    func testSoakTransitionsUnderLoad() throws {
        try XCTSkipUnless(soak, "set LIVETRACE_SOAK=1 to run the soak")
        let seed = SeedTransitionTests(name: "soak", testClosure: { _ in })
        seed.setUp()
        try seed.testSwitchingBetweenTwoCallTargetsCountsEveryCallExactlyOnce()
        try seed.testNopCallTransitionsCountEveryCallMadeWhileStablyEnabled()
        try seed.testOldTargetReceivesNoCallAfterSwitchReturns()
        try seed.testSwitchingWithSignalFallbackSerializationCountsEveryCallExactlyOnce()
        seed.tearDown()
        let hazards = TrapHazardTests(name: "soak", testClosure: { _ in })
        hazards.setUp()
        try hazards.testFiveOneByteNopsAreNormalizedWhileThreadsRunThem()
        for _ in 0..<20 { try hazards.testThreadStoppedBetweenTheNopsIsMovedPastThem() }
        try hazards.testProgramBreakpointsReachTheProgramsHandlerDuringTransitions()
    }
}
