// Sys.writeFileAtomically (info.json, objects.json): a reader sees the old
// content or the new, whole, never a missing or partial file, while the
// file is replaced (by a name exchange where the file system allows it).
import Foundation
import Synchronization
import XCTest
@testable import LiveTraceRecording

final class AtomicWriteTests: XCTestCase {
    private func scratch(_ name: String) -> String {
        let directory = NSTemporaryDirectory() + "livetrace-atomic-\(name)-\(getpid())"
        try? FileManager.default.removeItem(atPath: directory)
        try? FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        addTeardownBlock { try? FileManager.default.removeItem(atPath: directory) }
        return directory
    }

    func testAReplacedFileHoldsTheNewBytesAndNothingIsLeftBeside() throws {
        let directory = scratch("replace")
        let path = directory + "/info.json"
        try Sys.writeFileAtomically(path, Array("first".utf8))
        let opened = open(path, O_RDONLY)
        defer { close(opened) }
        try Sys.writeFileAtomically(path, Array("second, longer".utf8))
        XCTAssertEqual(try String(contentsOfFile: path, encoding: .utf8), "second, longer")
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: directory), ["info.json"])
        // A reader that had the old file open keeps reading the old bytes.
        var buffer = [UInt8](repeating: 0, count: 64)
        let count = read(opened, &buffer, buffer.count)
        XCTAssertEqual(String(decoding: buffer.prefix(max(0, count)), as: UTF8.self), "first")
    }

    func testReadersNeverSeeAMissingOrPartialFileWhileItIsReplaced() throws {
        let directory = scratch("readers")
        let path = directory + "/objects.json"
        let small = [UInt8](repeating: UInt8(ascii: "x"), count: 1_000)
        let large = [UInt8](repeating: UInt8(ascii: "y"), count: 20_000)
        try Sys.writeFileAtomically(path, small)
        final class Done: Sendable { let flag = Atomic<Bool>(false) }
        let done = Done()
        let writer = Thread {
            for round in 0..<2_000 { try? Sys.writeFileAtomically(path, round % 2 == 0 ? large : small) }
            done.flag.store(true, ordering: .releasing)
        }
        writer.start()
        var reads = 0, bad: [String] = []
        while !done.flag.load(ordering: .acquiring) || reads < 100 {
            let fd = open(path, O_RDONLY)
            guard fd >= 0 else {
                bad.append("open failed: errno \(errno)")
                break
            }
            var bytes: [UInt8] = []
            var chunk = [UInt8](repeating: 0, count: 65_536)
            while case let n = read(fd, &chunk, chunk.count), n > 0 { bytes += chunk[..<n] }
            close(fd)
            if bytes != small && bytes != large { bad.append("\(bytes.count) bytes") }
            reads += 1
        }
        XCTAssertEqual(bad, [], "after \(reads) reads")
        XCTAssertGreaterThan(reads, 100)
        while !done.flag.load(ordering: .acquiring) { usleep(1_000) }
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: directory), ["objects.json"])
    }
}
