// The control channel between `livetrace record` and the LD_PRELOAD shim:
// message encoding, and a real round trip over the abstract socket.
import Foundation
import LiveTracePreload
import XCTest

final class PreloadControlTests: XCTestCase {
    func testMessageRoundTripKeepsSpacesInTheText() {
        let message = PreloadMessage(verb: .start, pid: 42, status: -2, text: "no function matches [foo bar]")
        XCTAssertEqual(PreloadMessage(decoding: message.encoded), message)
        XCTAssertNil(PreloadMessage(decoding: "start x 0 -"))
        XCTAssertNil(PreloadMessage(decoding: "begin 1 0 -"))
        XCTAssertNil(PreloadMessage(decoding: ""))
    }

    func testServerSeesTheMessageBeforeTheClientReturns() throws {
        final class Box: @unchecked Sendable {
            let lock = NSLock()
            var messages: [PreloadMessage] = []
        }
        let box = Box()
        let server = try PreloadControlServer { message in
            box.lock.lock()
            box.messages.append(message)
            box.lock.unlock()
        }
        defer { server.stop() }
        let sent = PreloadMessage(verb: .exit, pid: 7, status: 0, text: "-")
        try PreloadControlClient.send(sent, to: server.name)
        box.lock.lock()
        XCTAssertEqual(box.messages, [sent])
        box.lock.unlock()
    }

    func testClientFailsClearlyWhenNobodyListens() {
        XCTAssertThrowsError(try PreloadControlClient.send(
            PreloadMessage(verb: .start, pid: 1, status: 0, text: "-"), to: "livetrace-nobody-\(getpid())")) { error in
            XCTAssertTrue("\(error)".contains("connect"), "\(error)")
        }
    }
}
