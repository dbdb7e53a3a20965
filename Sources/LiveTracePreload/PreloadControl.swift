// The LD_PRELOAD shim's configuration and its control channel to
// `livetrace record`.
//
// Configuration: environment variables, set by the CLI (or by hand) and
// inherited across fork and exec, so every image of the program re-reads
// them (`PreloadEnvironment`).
//
// Control channel: an abstract-namespace SOCK_SEQPACKET socket named by
// LIVETRACE_CONTROL. It exists so the CLI captures the program's memory map
// and symbols (objects.json) at the moments they are complete, while the
// program is alive and waiting:
//
//   shim (in the program)                    CLI (PreloadControlServer)
//   1. constructor: connect, send
//      "loaded PID 0 -", close without
//      waiting                            ───▶ capture /proc/PID/maps (main
//                                               program only) while the shim
//   2. attach rings, patch                      goes on; its reply finds the
//                                               connection closed
//   3. connect, send "start PID STATUS TEXT" ─▶ (connections are served in
//                                               order: the capture is done)
//   4. wait for the reply (bounded)      ◀──── reply "go"
//   5. close, return to the loader: main runs
//   6. at exit(): "exit PID 0 -" as in 3-4 (libraries dlopened since step 1;
//      only when the loader loaded or unloaded an object since step 1)
//
// Step 1 lets the capture (about 0.8 ms for a small C program: the map and
// the symbols of its objects) overlap the shim's discovery and patching
// instead of holding the program after them. The map is complete at step 1:
// the loader mapped every object before it ran the first constructor; an
// object dlopened later by a constructor is caught at exit (step 6).
//
// STATUS is 0 or the negative LT_E* code of the start-up failure; TEXT says
// what failed, so the CLI prints it (the shim itself never writes to the
// program's stdout or stderr when a CLI listens). The socket is SOCK_CLOEXEC
// and closed before main: the program never sees it. If no CLI answers
// within `replyTimeout`, the shim goes on alone: the program is never held.
import Glibc
import LiveTraceSites

/// The control channel's calls retry EINTR through the system-call layer
/// (SystemCalls.swift); a failure is its SystemCallError, as it is.
private func retrying<T: BinaryInteger>(_ call: String, _ subject: String, _ body: () -> T) throws(SystemCallError) -> T {
    try SystemCall.retrying(call, subject: subject, body, failed: { $0 < 0 })
}

/// The environment variables the shim reads.
public enum PreloadEnvironment {
    /// Ring-area file to attach (lt_record_attach_env). Its presence turns the shim on.
    public static let rings = "LIVETRACE_RINGS"
    /// `;`-separated globs of the functions to trace (-F); unset or empty: every function with a site.
    public static let filter = "LIVETRACE_FILTER"
    /// `;`-separated globs of the functions not to trace (-N).
    public static let notrace = "LIVETRACE_NOTRACE"
    /// Depth limit (-D), a decimal number ≥ 1.
    public static let depth = "LIVETRACE_DEPTH"
    /// "1": filters also reach functions without sites, by prologue
    /// relocation (`record -P`; OpsRegistry.includeDynamic).
    public static let dynamic = "LIVETRACE_DYNAMIC"
    /// Abstract socket name of the CLI's control channel.
    public static let control = "LIVETRACE_CONTROL"
    /// Separator of the glob lists.
    public static let listSeparator: Character = ";"

    public static func joinList(_ globs: [String]) -> String {
        globs.joined(separator: String(listSeparator))
    }

    public static func splitList(_ value: String?) -> [String] {
        guard let value else { return [] }
        return value.split(separator: listSeparator).map(String.init).filter { !$0.isEmpty }
    }
}

/// One message of the shim.
public struct PreloadMessage: Equatable, Sendable {
    /// loaded/start/exit: the LD_PRELOAD shim; start/detached: an attached
    /// session (`record -p`, AttachControl below).
    public enum Verb: String, Sendable { case loaded, start, exit, detached }
    public var verb: Verb
    public var pid: Int32
    /// 0, or the negative LT_E* code of a start-up failure.
    public var status: Int32
    /// What failed, or "-".
    public var text: String

    public init(verb: Verb, pid: Int32, status: Int32, text: String) {
        self.verb = verb
        self.pid = pid
        self.status = status
        self.text = text.isEmpty ? "-" : text
    }

    /// "VERB PID STATUS TEXT" (TEXT may hold spaces).
    public var encoded: String { "\(verb.rawValue) \(pid) \(status) \(text)" }

    public init?(decoding line: String) {
        let parts = line.split(separator: " ", maxSplits: 3, omittingEmptySubsequences: false)
        guard parts.count == 4, let verb = Verb(rawValue: String(parts[0])),
              let pid = Int32(parts[1]), let status = Int32(parts[2]) else { return nil }
        self.init(verb: verb, pid: pid, status: status, text: String(parts[3]))
    }
}

/// An abstract-namespace unix socket address: sun_path[0] = 0, then the name.
private func withAbstractAddress<R>(
    _ name: String, _ body: (UnsafePointer<sockaddr>, socklen_t) -> R
) -> R {
    var address = sockaddr_un()
    address.sun_family = sa_family_t(AF_UNIX)
    let bytes = Array(name.utf8.prefix(MemoryLayout.size(ofValue: address.sun_path) - 1))
    withUnsafeMutableBytes(of: &address.sun_path) { path in
        path[0] = 0
        for (index, byte) in bytes.enumerated() { path[index + 1] = byte }
    }
    let length = socklen_t(MemoryLayout<sa_family_t>.size + 1 + bytes.count)
    return withUnsafePointer(to: &address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { body($0, length) }
    }
}

private func sendMessage(_ fd: Int32, _ text: String) throws(SystemCallError) {
    let bytes = Array(text.utf8)
    _ = try retrying("send", "control socket") {
        bytes.withUnsafeBytes { Glibc.send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
    }
}

private func receiveMessage(_ fd: Int32) throws(SystemCallError) -> String {
    var buffer = [UInt8](repeating: 0, count: 4096)
    let count = try retrying("recv", "control socket") {
        buffer.withUnsafeMutableBytes { Glibc.recv(fd, $0.baseAddress, $0.count, 0) }
    }
    return String(decoding: buffer[0..<count], as: UTF8.self)
}

/// The shim's side: one message, one bounded wait for the reply.
public enum PreloadControlClient {
    public static let replyTimeoutSeconds = 10

    /// Sends `message` to the listener named `name` and waits for its reply.
    /// Throws when nobody listens or the reply does not come in time.
    public static func send(_ message: PreloadMessage, to name: String) throws(SystemCallError) {
        let fd = try retrying("socket", "AF_UNIX") { socket(AF_UNIX, Int32(SOCK_SEQPACKET.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0) }
        defer { close(fd) }
        var timeout = timeval(tv_sec: replyTimeoutSeconds, tv_usec: 0)
        _ = try retrying("setsockopt", "SO_RCVTIMEO") {
            setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        }
        _ = try retrying("connect", "@" + name) { withAbstractAddress(name) { connect(fd, $0, $1) } }
        try sendMessage(fd, message.encoded)
        _ = try receiveMessage(fd)
    }

    /// Sends `message` to the listener named `name` without waiting for a
    /// reply: the message stays queued on the connection after it is closed,
    /// and the listener serves connections in the order they came.
    public static func post(_ message: PreloadMessage, to name: String) throws(SystemCallError) {
        let fd = try retrying("socket", "AF_UNIX") { socket(AF_UNIX, Int32(SOCK_SEQPACKET.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0) }
        defer { close(fd) }
        _ = try retrying("connect", "@" + name) { withAbstractAddress(name) { connect(fd, $0, $1) } }
        try sendMessage(fd, message.encoded)
    }
}

/// The CLI's side: a listening socket that the CLI's main thread serves
/// while it waits for the program (`serveWaiting` when `descriptor` polls
/// readable): each connection's message goes to `handler` (which runs while
/// the program waits), then the reply. No thread of its own: none to start,
/// and none to wake and join at the end.
public final class PreloadControlServer {
    public let name: String
    /// The listening socket (non-blocking), to poll for readability.
    public let descriptor: Int32
    private let handler: (PreloadMessage) -> Void

    /// Listens on a fresh abstract name derived from this process's pid.
    public init(handler: @escaping (PreloadMessage) -> Void) throws(SystemCallError) {
        // Unique per listener: the pid, and the monotonic clock for several
        // listeners of one process.
        var now = timespec()
        clock_gettime(CLOCK_MONOTONIC, &now)
        let name = "livetrace-\(getpid())-\(String(now.tv_sec, radix: 16))\(String(now.tv_nsec, radix: 16))"
        self.name = name
        self.handler = handler
        let fd = try retrying("socket", "AF_UNIX") {
            socket(AF_UNIX, Int32(SOCK_SEQPACKET.rawValue) | Int32(SOCK_CLOEXEC.rawValue) | Int32(SOCK_NONBLOCK.rawValue), 0)
        }
        do throws(SystemCallError) {
            _ = try retrying("bind", "@" + name) { withAbstractAddress(name) { bind(fd, $0, $1) } }
            _ = try retrying("listen", "@" + name) { listen(fd, 16) }
        } catch {
            close(fd)
            throw error
        }
        descriptor = fd
    }

    /// Serves every connection already waiting, one at a time, and returns
    /// when none is left.
    public func serveWaiting() {
        while true {
            let connection: Int32
            do throws(SystemCallError) {
                connection = try SystemCall.retrying("accept", subject: "control socket") { accept(descriptor, nil, nil) }
            } catch {
                if error.errno == ECONNABORTED { continue }
                return // EAGAIN: nothing waiting
            }
            // Accepted on the thread that spawns, after the spawn: no exec
            // can inherit it before FD_CLOEXEC is set. Blocking (accept does
            // not pass the listener's O_NONBLOCK on), with a bounded wait
            // for the message.
            _ = fcntl(connection, F_SETFD, FD_CLOEXEC)
            var timeout = timeval(tv_sec: 5, tv_usec: 0)
            setsockopt(connection, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
            if let text = try? receiveMessage(connection), let message = PreloadMessage(decoding: text) {
                handler(message)
                try? sendMessage(connection, "go")
            }
            close(connection)
        }
    }

    /// Stops listening: a shim that connects later finds nobody (it runs on
    /// and says nothing for a success).
    public func stop() {
        close(descriptor)
    }
}

// MARK: - the attached session's channel (`livetrace record -p PID`)
//
// One connection for the whole session; its end is the detach request:
//
//   shim's session thread (in the process)     CLI (AttachControl.Listener)
//   1. attach rings, patch
//   2. connect, send "start PID STATUS TEXT" ─▶ capture /proc/PID/maps
//   3. wait for the reply (bounded)       ◀──── "go"
//   4. record; wait on the connection     ◀──── "detach" (Ctrl-C, --duration),
//                                               or the connection closes (the
//                                               CLI died)
//   5. unpatch, wait for quiescence, release the rings
//   6. send "detached PID STATUS TEXT", close ─▶ the trace is finished
//
// The process's own marker "@livetrace-attached-PID" is bound (not listened
// on) by the session thread while a session holds the process: a second
// attach sees it in /proc/net/unix and is refused before anything is touched.

/// A connected control socket (either side of an attached session).
public final class ControlConnection: @unchecked Sendable {
    public let fd: Int32

    init(fd: Int32) { self.fd = fd }

    /// The shim's side: connects to the listener named `name`.
    public static func connect(to name: String) throws(SystemCallError) -> ControlConnection {
        let fd = try retrying("socket", "AF_UNIX") { socket(AF_UNIX, Int32(SOCK_SEQPACKET.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0) }
        do throws(SystemCallError) {
            _ = try retrying("connect", "@" + name) { withAbstractAddress(name) { Glibc.connect(fd, $0, $1) } }
        } catch {
            Glibc.close(fd)
            throw error
        }
        return ControlConnection(fd: fd)
    }

    public func send(_ text: String) throws(SystemCallError) { try sendMessage(fd, text) }

    /// The next message; nil when the other side closed. `timeoutMilliseconds`
    /// nil waits for ever; a timeout throws ETIMEDOUT.
    public func receive(timeoutMilliseconds: Int32? = nil) throws(SystemCallError) -> String? {
        if let timeoutMilliseconds {
            var entry = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            let ready = try retrying("poll", "control socket") { poll(&entry, 1, timeoutMilliseconds) }
            if ready == 0 { throw SystemCallError(call: "poll", subject: "control socket", errno: ETIMEDOUT) }
        }
        var buffer = [UInt8](repeating: 0, count: 4096)
        let count = try retrying("recv", "control socket") {
            buffer.withUnsafeMutableBytes { Glibc.recv(fd, $0.baseAddress, $0.count, 0) }
        }
        if count == 0 { return nil }
        return String(decoding: buffer[0..<count], as: UTF8.self)
    }

    public func close() { Glibc.close(fd) }
}

public enum AttachControl {
    /// The abstract name a session in process `pid` holds while it runs.
    public static func markerName(pid: Int32) -> String { "livetrace-attached-\(pid)" }

    /// Binds the marker of this process; nil when another session holds it.
    public static func bindMarker() -> Int32? {
        let fd = socket(AF_UNIX, Int32(SOCK_SEQPACKET.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { return nil }
        if withAbstractAddress(markerName(pid: getpid()), { bind(fd, $0, $1) }) != 0 {
            Glibc.close(fd)
            return nil
        }
        return fd
    }

    /// The CLI's side: one listener, one accepted connection.
    public final class Listener: @unchecked Sendable {
        public let name: String
        private let fd: Int32

        public init() throws(SystemCallError) {
            var now = timespec()
            clock_gettime(CLOCK_MONOTONIC, &now)
            let name = "livetrace-attach-\(getpid())-\(String(now.tv_sec, radix: 16))\(String(now.tv_nsec, radix: 16))"
            let fd = try retrying("socket", "AF_UNIX") { socket(AF_UNIX, Int32(SOCK_SEQPACKET.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0) }
            do throws(SystemCallError) {
                _ = try retrying("bind", "@" + name) { withAbstractAddress(name) { bind(fd, $0, $1) } }
                _ = try retrying("listen", "@" + name) { listen(fd, 4) }
            } catch {
                Glibc.close(fd)
                throw error
            }
            self.name = name
            self.fd = fd
        }

        /// The session's connection; throws ETIMEDOUT when none came in time.
        public func accept(timeoutMilliseconds: Int32) throws(SystemCallError) -> ControlConnection {
            var entry = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            let ready = try retrying("poll", "@" + name) { poll(&entry, 1, timeoutMilliseconds) }
            if ready == 0 { throw SystemCallError(call: "accept", subject: "@" + name, errno: ETIMEDOUT) }
            let connection = try retrying("accept", "@" + name) { Glibc.accept(fd, nil, nil) }
            _ = fcntl(connection, F_SETFD, FD_CLOEXEC)
            return ControlConnection(fd: connection)
        }

        public func close() { Glibc.close(fd) }
    }
}
