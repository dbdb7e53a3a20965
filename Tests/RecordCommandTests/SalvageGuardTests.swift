// A trace whose recorded process still runs is never salvaged: its recorder
// owns the rings. The rule lives in the library (TraceDrain.salvage), so
// `livetrace recover` and any other caller get it alike.
import Foundation
import LiveTrace
import TestSupport
import XCTest

final class SalvageGuardTests: XCTestCase {
    func testARunningRecordingIsNotSalvagedByTheLibraryNorByRecover() throws {
        let program = try RecordFixtures.build("waits.c", output: "record-waits")
        let work = RecordFixtures.scratch("salvage-guard")
        defer { try? FileManager.default.removeItem(atPath: work) }
        let trace = work + "/trace"

        let record = Process()
        record.executableURL = URL(fileURLWithPath: Fixtures.livetraceExecutable)
        record.arguments = ["record", "-d", trace, "--", program]
        record.environment = ProcessInfo.processInfo.environment.merging(Fixtures.cacheEnvironment) { $1 }
        let input = Pipe(), output = Pipe()
        record.standardInput = input
        record.standardOutput = output
        record.standardError = FileHandle.nullDevice
        try record.run()
        defer { if record.isRunning { record.terminate() } }
        // The program says ready once its calls are recorded.
        let ready = output.fileHandleForReading.availableData
        XCTAssertTrue(String(decoding: ready, as: UTF8.self).hasPrefix("ready"), String(decoding: ready, as: UTF8.self))

        XCTAssertThrowsError(try TraceDrain.salvage(directory: trace)) { error in
            guard case let .recorderAlive(pid, _)? = error as? RecordingError else { return XCTFail("\(error)") }
            XCTAssertNotEqual(pid, 0)
            XCTAssertEqual(kill(pid_t(pid), 0), 0, "the pid named is a live process")
        }
        let recover = try Fixtures.run([Fixtures.livetraceExecutable, "recover", "-d", trace])
        XCTAssertNotEqual(recover.status, 0)
        XCTAssertTrue(recover.stderr.contains("is still running"), recover.stderr)
        XCTAssertTrue(FileManager.default.fileExists(atPath: trace + "/rings"), "the rings were left to their recorder")

        // The program ends; its recorder completes the trace, every call in it.
        try input.fileHandleForWriting.close()
        record.waitUntilExit()
        XCTAssertEqual(record.terminationStatus, 0)
        XCTAssertEqual(try RecordFixtures.calls(trace)["step"], 10)
    }
}
