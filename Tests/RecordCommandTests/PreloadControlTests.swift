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
        var messages: [PreloadMessage] = []
        let server = try PreloadControlServer { messages.append($0) }
        defer { server.stop() }
        // The client blocks until the reply: it runs on a thread of its own,
        // the server on this one, as in the CLI's wait for the program.
        let sent = PreloadMessage(verb: .exit, pid: 7, status: 0, text: "-")
        let returned = sendOnAThreadOfItsOwn(sent, to: server.name)
        var ready = pollfd(fd: server.descriptor, events: Int16(POLLIN), revents: 0)
        XCTAssertEqual(poll(&ready, 1, 5000), 1, "the connection is ready")
        server.serveWaiting()
        XCTAssertEqual(messages, [sent])
        wait(for: [returned], timeout: 5)
    }

    func testPostedMessageIsServedAfterItsSenderClosedAndBeforeALaterOne() throws {
        var messages: [PreloadMessage] = []
        let server = try PreloadControlServer { messages.append($0) }
        defer { server.stop() }
        // The shim's loaded message: posted and closed before anyone accepts
        // it; then its start message, which waits for the reply.
        let loaded = PreloadMessage(verb: .loaded, pid: 9, status: 0, text: "-")
        let start = PreloadMessage(verb: .start, pid: 9, status: 0, text: "-")
        try PreloadControlClient.post(loaded, to: server.name)
        let returned = sendOnAThreadOfItsOwn(start, to: server.name)
        while messages.count < 2 {
            var ready = pollfd(fd: server.descriptor, events: Int16(POLLIN), revents: 0)
            guard poll(&ready, 1, 5000) == 1 else {
                XCTFail("no connection within 5 s; served: \(messages)")
                break
            }
            server.serveWaiting()
        }
        XCTAssertEqual(messages, [loaded, start])
        wait(for: [returned], timeout: 5)
    }

    /// `PreloadControlClient.send` (which blocks until the reply) on a
    /// thread of its own; the expectation is fulfilled when it returned.
    private func sendOnAThreadOfItsOwn(_ message: PreloadMessage, to name: String) -> XCTestExpectation {
        let returned = expectation(description: "the client returned")
        Thread.detachNewThread {
            do {
                try PreloadControlClient.send(message, to: name)
            } catch {
                XCTFail("the client failed: \(error)")
            }
            returned.fulfill()
        }
        return returned
    }

    func testServingWithNothingWaitingReturnsAtOnce() throws {
        var messages: [PreloadMessage] = []
        let server = try PreloadControlServer { messages.append($0) }
        defer { server.stop() }
        server.serveWaiting()
        XCTAssertEqual(messages, [])
    }

    func testClientFailsClearlyWhenNobodyListens() {
        XCTAssertThrowsError(try PreloadControlClient.send(
            PreloadMessage(verb: .start, pid: 1, status: 0, text: "-"), to: "livetrace-nobody-\(getpid())")) { error in
            XCTAssertTrue("\(error)".contains("connect"), "\(error)")
        }
    }
}
