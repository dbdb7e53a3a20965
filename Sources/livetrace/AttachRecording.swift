// `livetrace record -p PID [-F GLOB]... [-N GLOB]... [-P GLOB]... [-D DEPTH] [-d DIR] [--duration TIME]`:
// loads the shim into a running process, records, and leaves the process as
// it was (docs/ARCHITECTURE.md, "Attaching to a running process").
//
// The run, in order:
//   1. refuse before anything is touched, naming the pid and why
//      (AttachCheck): no such process, not permitted (Yama's ptrace_scope,
//      the process's owner, another tracer), not x86-64, statically linked,
//      no dlopen in its C library, already holding a LiveTrace session;
//   2. the trace directory, the signals that end the recording (SIGINT,
//      SIGTERM, SIGHUP: taken through a signalfd), the RecordingSession and
//      the control listener;
//   3. the injection (AttachInjection.swift): dlopen(liblivetrace.so), then
//      lt_attach_start(configuration) on one borrowed thread;
//   4. the session reports "start" (every site patched: the "recording"
//      line); the memory map is captured; "go";
//   5. wait for a signal, --duration, the process's exit (pidfd) or the end
//      of the session's connection;
//   6. "detach", and the session's "detached" (sites restored, rings
//      released); finish the trace (marked salvaged when the process exited
//      while attached); -t; one summary line saying how long it was attached.
import CLiveTraceShims
import Glibc
import LiveTrace
import LiveTracePreload

/// What step 1 found out about the process.
struct AttachTarget {
    var pid: pid_t
    /// The thread to borrow: the main thread unless it is gone.
    var tid: pid_t
    var executable: String
    var command: [String]
    var dlopen: UInt64
    var dlerror: UInt64?
    /// Whether the executable has a usable site; discovery runs on its own
    /// thread while the rest of the attach is prepared (`SiteCheck`).
    var hasSites: SiteCheck?
}

/// The executable's site discovery (10,000 functions: several ms), run on a
/// thread of its own from the refusal checks until the session's filter is
/// chosen, beside the checks, the trace directory and the ring area. The
/// thread starts with every signal blocked: SIGINT and SIGTERM must reach
/// the signalfd `attach` reads, never end the command in this thread.
final class SiteCheck: @unchecked Sendable {
    private let path: String
    private var thread = pthread_t()
    /// The thread runs and has not been joined.
    private var pending = false
    private var done = false
    /// Written by the thread before it ends, read after pthread_join.
    private var result = false

    init(path: String) {
        self.path = path
        var all = sigset_t(), original = sigset_t()
        sigfillset(&all)
        pthread_sigmask(SIG_BLOCK, &all, &original)
        let box = Unmanaged.passRetained(self).toOpaque()
        pending = pthread_create(&thread, nil, { argument in
            let check = Unmanaged<SiteCheck>.fromOpaque(argument!).takeRetainedValue()
            check.result = check.discover()
            return nil
        }, box) == 0
        if !pending { Unmanaged<SiteCheck>.fromOpaque(box).release() }
        pthread_sigmask(SIG_SETMASK, &original, nil)
    }

    private func discover() -> Bool {
        // Only whether a usable site exists: no names, no sorted copy.
        let table = SiteTable(files: [path], options: DiscoveryOptions(sourceLines: false, demangle: false, includeFunctionsWithoutSites: false))
        return table.objects.contains(where: { $0.sites.contains(where: \.isUsable) })
    }

    /// The answer: waits for the thread, or discovers here when it could
    /// not start.
    var value: Bool {
        if pending {
            pthread_join(thread, nil)
            pending = false
            done = true
        }
        if !done {
            result = discover()
            done = true
        }
        return result
    }
}

enum AttachCheck {
    static func refuse(_ pid: pid_t, _ why: String) -> RecordFailure {
        .badProgram("cannot attach to pid \(pid): \(why)")
    }

    /// `discoverSites`: whether the executable's sites are looked for (only
    /// without a filter does it matter).
    static func check(_ pid: pid_t, discoverSites: Bool) throws(RecordFailure) -> AttachTarget {
        guard pid > 0, kill(pid, 0) == 0 || errno == EPERM, access("/proc/\(pid)/status", F_OK) == 0 else {
            throw refuse(pid, "no such process")
        }
        guard pid != getpid() else { throw refuse(pid, "it is this livetrace process") }
        let status = readProcFile("/proc/\(pid)/status")
        func field(_ name: String) -> String? {
            status.split(separator: "\n").first { $0.hasPrefix(name + ":") }
                .map { String($0.dropFirst(name.count + 1)).trimmedOfBlanks }
        }
        if field("State")?.hasPrefix("Z") == true { throw refuse(pid, "the process has exited (a zombie)") }
        if let tracer = field("TracerPid"), tracer != "0" {
            throw refuse(pid, "not permitted: it is already traced by pid \(tracer) (a debugger or another tracer); detach that first")
        }
        if let text = try? String(contentsOfFile: "/proc/sys/kernel/yama/ptrace_scope", encoding: .utf8),
           let scope = Int(text.trimmedOfBlanks) {
            if scope >= 3 { throw refuse(pid, "not permitted: Yama's kernel.yama.ptrace_scope is \(scope), which forbids every ptrace attach") }
            if scope >= 1 && geteuid() != 0 {
                throw refuse(pid, "not permitted: Yama's kernel.yama.ptrace_scope is \(scope) (only \(scope == 1 ? "a parent or CAP_SYS_PTRACE" : "CAP_SYS_PTRACE") may attach); run as root, or set it to 0")
            }
        }
        // The kernel's own ptrace access check, without attaching.
        let probe = open("/proc/\(pid)/mem", O_RDONLY | O_CLOEXEC)
        guard probe >= 0 else {
            throw refuse(pid, "not permitted: \(String(cString: strerror(errno))) (it belongs to another user, or is not dumpable)")
        }
        close(probe)
        let exe = "/proc/\(pid)/exe"
        let executable = (try? SystemCall.readLink(exe)) ?? exe
        let object: ElfObject
        do throws(DiscoveryError) {
            object = try ElfObject(path: exe)
        } catch {
            if case let .unsupported(_, reason) = error { throw refuse(pid, "\(executable) is not x86-64: \(reason)") }
            throw refuse(pid, "\(executable) cannot be read as an ELF program: \(error)")
        }
        guard object.section(named: ".interp") != nil else {
            throw refuse(pid, "\(executable) is statically linked: there is no dynamic loader to load the shim with")
        }
        let siteCheck = discoverSites ? SiteCheck(path: exe) : nil
        if let environ = try? SystemCall.readFile("/proc/\(pid)/environ"),
           environ.split(separator: 0).contains(where: { $0.starts(with: Array((PreloadEnvironment.rings + "=").utf8)) }) {
            throw refuse(pid, "it already holds a LiveTrace session (it runs under livetrace record -- PROGRAM)")
        }
        if case let sockets = readProcFile("/proc/net/unix"),
           sockets.split(separator: "\n").contains(where: { $0.hasSuffix(" @" + AttachControl.markerName(pid: pid)) }) {
            throw refuse(pid, "it already holds an attached LiveTrace session (another livetrace record -p)")
        }
        let mappings = ProcessMaps.readOrEmpty(pid: pid)
        let isLibc: (String) -> Bool = { path in
            let name = path.split(separator: "/").last.map(String.init) ?? ""
            return name.hasPrefix("libc.so") || name.hasPrefix("libc-")
        }
        guard let dlopen = ProcessMaps.exportedFunction("dlopen", in: mappings, pid: pid, matches: isLibc) else {
            throw refuse(pid, "its C library exports no dlopen (glibc 2.34 or newer is needed)")
        }
        let dlerror = ProcessMaps.exportedFunction("dlerror", in: mappings, pid: pid, matches: isLibc)
        let tasks = ((try? SystemCall.listDirectory("/proc/\(pid)/task")) ?? nil) ?? []
        let live = tasks.compactMap { pid_t($0) }.filter { tid in
            let text = readProcFile("/proc/\(pid)/task/\(tid)/stat")
            guard let close = text.lastIndex(of: ")") else { return false }
            let state = String(text[text.index(after: close)...]).trimmedOfBlanks.first
            return state != "Z" && state != "X"
        }.sorted()
        guard let tid = live.contains(pid) ? pid : live.first else { throw refuse(pid, "it has no live thread") }
        let cmdline = (try? SystemCall.readFile("/proc/\(pid)/cmdline")) ?? []
        let command = cmdline.split(separator: 0).map { String(decoding: $0, as: UTF8.self) }
        return AttachTarget(
            pid: pid, tid: tid, executable: executable, command: command.isEmpty ? [executable] : command,
            dlopen: dlopen.address, dlerror: dlerror?.address, hasSites: siteCheck)
    }
}

extension RecordArguments {
    private enum Ending {
        case signal(Int32), duration, exited, sessionEnded
    }

    func attach(pid: pid_t) throws(RecordFailure) -> Int32 {
        // Step 1.
        let target = try AttachCheck.check(pid, discoverSites: filter.isEmpty && dynamicPatterns.isEmpty)
        let minTimeNs = minTime.flatMap(RecordCommand.parseDuration) ?? 0
        let durationNs = duration.flatMap(RecordCommand.parseDuration)
        let library = try ShimLibrary.locate()
        // Step 2.
        try TraceDirectory.prepare(directory)
        var ending = sigset_t()
        sigemptyset(&ending)
        for signal in [SIGINT, SIGTERM, SIGHUP] { sigaddset(&ending, signal) }
        pthread_sigmask(SIG_BLOCK, &ending, nil)
        let signals = lt_signalfd(&ending)
        SitelessCache.enable()
        let existed = access(directory, F_OK) == 0
        let session: RecordingSession
        do throws(RecordingError) {
            session = try RecordingSession.start(
                directory: directory, command: target.command, ringCapacity: bufferEvents,
                waitTimeoutMicroseconds: UInt32(waitMilliseconds * 1000))
        } catch {
            TraceWriter.removeRecording(in: directory, createdDirectory: !existed)
            throw .traceDirectory("cannot create the trace in \(directory): \(error)")
        }
        try? session.programStarted(pid: pid)
        func abandon(_ failure: RecordFailure) -> RecordFailure {
            _ = try? session.finish(programDied: false)
            TraceWriter.removeRecording(in: directory, createdDirectory: !existed)
            return failure
        }
        let listener: AttachControl.Listener
        do throws(SystemCallError) {
            listener = try AttachControl.Listener()
        } catch {
            throw abandon(.system("cannot open the control channel: \(error)"))
        }
        defer { listener.close() }
        // Whether the executable has a site matters only without a filter.
        let mainByRelocation = target.hasSites.map { !$0.value } ?? false
        if mainByRelocation {
            RecordOutput.warning("\(target.executable): no function has an entry site: tracing the program's own functions by relocating their prologues")
        }
        let relocating = !dynamicPatterns.isEmpty || mainByRelocation
        let shim = ShimReports(tracerLibrary: FileIdentity.of(path: library), relocating: relocating)
        shim.mainPid.store(pid, ordering: .releasing)
        var settings = [
            PreloadEnvironment.rings: session.area.path,
            PreloadEnvironment.control: listener.name,
        ]
        let functions = mainByRelocation ? [FunctionPattern.mainExecutableSpelling] : filter + dynamicPatterns
        if !functions.isEmpty { settings[PreloadEnvironment.filter] = PreloadEnvironment.joinList(functions) }
        if relocating { settings[PreloadEnvironment.dynamic] = "1" }
        if !notrace.isEmpty { settings[PreloadEnvironment.notrace] = PreloadEnvironment.joinList(notrace) }
        if let depth { settings[PreloadEnvironment.depth] = String(depth) }
        let config = settings.map { "\($0.key)=\($0.value)" }.joined(separator: "\n")
        let pidfd = lt_pidfd_open(pid)
        defer { if pidfd >= 0 { close(pidfd) } }
        // Step 3 (threads blocking SIGTRAP first: the patching would kill them).
        let began = ContinuousClock.now
        var unblocked: [(tid: pid_t, mask: UInt64)] = []
        defer { for thread in unblocked { AttachInjection.restoreMask(pid: pid, tid: thread.tid, original: thread.mask) } }
        let started: Int32
        do throws(InjectionError) {
            for tid in AttachInjection.threadsBlockingProtectedSignals(pid: pid) {
                unblocked.append((tid, try AttachInjection.unblockProtectedSignals(pid: pid, tid: tid)))
            }
            started = try AttachInjection.inject(
                pid: pid, tid: target.tid, dlopen: target.dlopen, dlerror: target.dlerror,
                library: library, config: config)
        } catch {
            throw abandon(.system("cannot attach to pid \(pid): \(error.description); the process was left as it was"))
        }
        let injected = ContinuousClock.now
        guard started == 0 else {
            let why = started == -Int32(LT_EBUSY) ? "it already holds an attached LiveTrace session" : "the shim refused the session (code \(started))"
            throw abandon(.badProgram("cannot attach to pid \(pid): \(why)"))
        }
        // Its map now (the shim loaded, its objects settled): the capture
        // names the trace from it if the process exits before step 4 reads it.
        let earlierMap = ProcessMaps.readOrEmpty(pid: pid)
        shim.earlierMap.withLock { $0 = earlierMap.isEmpty ? nil : earlierMap }
        // Step 4.
        let connection: ControlConnection
        let message: PreloadMessage
        do throws(SystemCallError) {
            connection = try listener.accept(timeoutMilliseconds: 30_000)
            guard let text = try connection.receive(timeoutMilliseconds: 60_000), let decoded = PreloadMessage(decoding: text) else {
                connection.close()
                throw SystemCallError(call: "recv", subject: "control socket", errno: EPIPE)
            }
            message = decoded
        } catch {
            throw abandon(.system("pid \(pid) loaded the shim but its session did not report: \(error)"))
        }
        defer { connection.close() }
        guard message.status == 0 else {
            throw abandon(.system("pid \(pid) runs untraced: \(message.text)"))
        }
        let reported = ContinuousClock.now
        // Events are recorded from the session's "start" on (every site is
        // patched by then): the line says so before the capture, which only
        // names them.
        RecordOutput.summary("recording pid \(pid) (\(target.executable)) into \(directory); \(durationNs == nil ? "Ctrl-C detaches" : "detaching after \(duration ?? "")")")
        shim.received(message, session: session)
        try? connection.send("go")
        let attachedAt = ContinuousClock.now
        // Step 5.
        let reason = waitForEnd(signals: signals, pidfd: pidfd, connection: connection, durationNs: durationNs)
        // Step 6.
        let detachStarted = ContinuousClock.now
        var detachProblem: String?
        var detachTime: Duration?
        if case .exited = reason {} else if case .sessionEnded = reason {
            detachProblem = "the session in pid \(pid) ended on its own"
        } else {
            do throws(SystemCallError) {
                try connection.send("detach")
                if let text = try connection.receive(timeoutMilliseconds: 60_000), let reply = PreloadMessage(decoding: text) {
                    detachTime = ContinuousClock.now - detachStarted
                    if reply.status != 0 { detachProblem = "pid \(pid): \(reply.text)" }
                } else if kill(pid, 0) == 0 {
                    detachProblem = "the session in pid \(pid) closed without confirming the detach"
                }
            } catch {
                detachProblem = "the detach request to pid \(pid) failed: \(error)"
            }
        }
        let exited = kill(pid, 0) != 0 && errno == ESRCH || isExited(pidfd)
        let attachedFor = ContinuousClock.now - attachedAt
        let summary: DrainSummary
        do throws(RecordingError) {
            summary = try session.finish(programDied: exited)
        } catch {
            RecordOutput.error("the trace in \(directory) is incomplete: \(error)")
            return 1
        }
        let (summaryEvents, summaryFunctions, summaryBytes, filtered) =
            RecordOutput.applyTimeFilter(summary, directory: directory, minTimeNs: minTimeNs, as: minTime)
        for line in shim.problems(programPid: pid) { RecordOutput.warning(line) }
        if let detachProblem { RecordOutput.warning(detachProblem) }
        var line = "attached to pid \(pid) for \(Self.seconds(attachedFor)) s (attach \(Self.milliseconds(attachedAt - began)) ms: "
        line += "load \(Self.milliseconds(injected - began)), patch \(Self.milliseconds(reported - injected)), map \(Self.milliseconds(attachedAt - reported))"
        if let detachTime { line += ", detach \(Self.milliseconds(detachTime)) ms" }
        line += "): \(summary.threads) thread\(summary.threads == 1 ? "" : "s"), \(summaryEvents) events\(filtered), "
        line += "\(summaryFunctions) functions, \(summary.lost) events lost, \(RecordOutput.size(summaryBytes)) in \(directory)"
        if exited { line += "; pid \(pid) exited while attached (the trace is complete up to its exit)" }
        RecordOutput.summary(line)
        return 0
    }

    /// Whole units of `duration` with `digits` decimals, rounded half up.
    private static func decimal(_ duration: Duration, unitNanoseconds: Int64, digits: Int) -> String {
        let nanoseconds = duration.components.seconds * 1_000_000_000 + duration.components.attoseconds / 1_000_000_000
        var scale: Int64 = 1
        for _ in 0..<digits { scale *= 10 }
        let scaled = (nanoseconds * scale + unitNanoseconds / 2) / unitNanoseconds
        let fraction = String(scaled % scale)
        return "\(scaled / scale)." + String(repeating: "0", count: digits - fraction.count) + fraction
    }

    private static func seconds(_ duration: Duration) -> String {
        decimal(duration, unitNanoseconds: 1_000_000_000, digits: 2)
    }

    private static func milliseconds(_ duration: Duration) -> String {
        decimal(duration, unitNanoseconds: 1_000_000, digits: 1)
    }

    private func isExited(_ pidfd: Int32) -> Bool {
        guard pidfd >= 0 else { return false }
        var entry = pollfd(fd: pidfd, events: Int16(POLLIN), revents: 0)
        return poll(&entry, 1, 0) == 1
    }

    private func waitForEnd(signals: Int32, pidfd: Int32, connection: ControlConnection, durationNs: UInt64?) -> Ending {
        let deadline = durationNs.map { ContinuousClock.now + .nanoseconds(Int64(clamping: $0)) }
        while true {
            var entries = [
                pollfd(fd: signals, events: Int16(POLLIN), revents: 0),
                pollfd(fd: pidfd, events: Int16(POLLIN), revents: 0),
                pollfd(fd: connection.fd, events: Int16(POLLIN), revents: 0),
            ]
            var timeout: Int32 = -1
            if let deadline {
                let left = deadline - ContinuousClock.now
                if left <= .zero { return .duration }
                timeout = Int32(clamping: left.components.seconds * 1000 + left.components.attoseconds / 1_000_000_000_000_000 + 1)
            }
            let ready = poll(&entries, nfds_t(entries.count), timeout)
            if ready < 0 { continue }
            if entries[0].revents != 0 {
                return .signal(lt_signalfd_read(signals))
            }
            if entries[1].revents != 0 { return .exited }
            if entries[2].revents != 0 {
                // Nothing else is sent during the session: the process died
                // (give its exit a moment to show) or the session ended.
                var exitEntry = pollfd(fd: pidfd, events: Int16(POLLIN), revents: 0)
                return pidfd >= 0 && poll(&exitEntry, 1, 1000) == 1 ? .exited : .sessionEnded
            }
        }
    }
}
