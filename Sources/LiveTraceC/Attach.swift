// The attached session: `livetrace record -p PID` makes one thread of a
// running process call dlopen(liblivetrace.so) and then this library's
// `lt_attach_start(config)` (livetrace/AttachInjection.swift); everything
// after that goes over the control channel (PreloadControl.swift,
// AttachControl).
//
// lt_attach_start runs on the borrowed thread, which must be given back
// quickly and unchanged: it copies the configuration, starts the session
// thread (every asynchronous signal blocked in it, so signals sent to the
// process still reach the program's own threads) and returns. The session
// thread:
//   1. binds the process's marker (AttachControl.bindMarker): a second
//      session in the same process is refused;
//   2. connects to the CLI; refuses a process that already records (the
//      LD_PRELOAD shim or the C API hold the writer layer);
//   3. attaches to the CLI's ring file and starts the function graph, as the
//      LD_PRELOAD shim does (Preload.swift, startRecording);
//   4. reports "start", waits for "go" (the CLI captured the memory map);
//   5. waits for "detach" or the end of the connection (the CLI died);
//   6. stops the graph and gives relocated prologues their bytes back
//      (every site back to its original bytes, trampolines and relocated
//      stubs reclaimed after quiescence), detaches the writer layer (after which
//      no thread writes an event) and releases the ring file's pages, its
//      addresses kept for the next session (lt_record_release_area);
//   7. reports "detached", closes the connection and the marker, and ends.
// The library stays loaded (code of it may still be on a stack: a frame
// hooked before the detach returns through the return trampoline); a later
// attach's dlopen returns the same handle and calls lt_attach_start again.
//
// Configuration: "NAME=VALUE" lines with the LD_PRELOAD shim's variable
// names (PreloadEnvironment), LIVETRACE_RINGS and LIVETRACE_CONTROL required.
import CLiveTraceShims
import Glibc
import LiveTracePreload
import LiveTraceTrampolines
import Synchronization

/// Whether a session thread runs (set by lt_attach_start, cleared by the
/// thread as it ends).
private let attachRunning = Atomic<Bool>(false)

/// The marker socket while a session holds it (-1 otherwise). A child forked
/// during a session closes its copy (atfork): the name must leave with the
/// session, not live on in the child.
private let attachMarker = Atomic<Int32>(-1)
private let attachForkHandler = Atomic<Bool>(false)

/// Returns 0 when the session thread started; -LT_EBUSY while a session
/// runs; -LT_EINVAL for a configuration without rings or control.
@_cdecl("lt_attach_start")
public func livetrace_attach_start(_ config: UnsafePointer<CChar>?) -> Int32 {
    let savedErrno = errno
    defer { errno = savedErrno }
    guard let config else { return -Int32(LT_EINVAL) }
    var settings: [String: String] = [:]
    for line in String(cString: config).split(separator: "\n") {
        guard let equals = line.firstIndex(of: "=") else { continue }
        settings[String(line[..<equals])] = String(line[line.index(after: equals)...])
    }
    guard settings[PreloadEnvironment.rings] != nil, settings[PreloadEnvironment.control] != nil else {
        return -Int32(LT_EINVAL)
    }
    guard attachRunning.compareExchange(expected: false, desired: true, ordering: .acquiringAndReleasing).exchanged else {
        return -Int32(LT_EBUSY)
    }
    if !attachForkHandler.exchange(true, ordering: .acquiringAndReleasing) {
        pthread_atfork(nil, nil) {
            let fd = attachMarker.exchange(-1, ordering: .acquiringAndReleasing)
            if fd >= 0 { close(fd) }
        }
    }
    let box = Unmanaged.passRetained(AttachSession(settings: settings)).toOpaque()
    // The new thread inherits this mask: block every asynchronous signal
    // around pthread_create, then give the borrowed thread its own back.
    var blocked = sigset_t(), original = sigset_t()
    sigfillset(&blocked)
    for signal in [SIGSEGV, SIGBUS, SIGILL, SIGFPE] { sigdelset(&blocked, signal) }
    lt_sigmask_remove_protected(&blocked)
    pthread_sigmask(SIG_BLOCK, &blocked, &original)
    var attributes = pthread_attr_t()
    pthread_attr_init(&attributes)
    pthread_attr_setdetachstate(&attributes, Int32(PTHREAD_CREATE_DETACHED))
    var thread = pthread_t()
    let status = pthread_create(&thread, &attributes, { argument in
        let session = Unmanaged<AttachSession>.fromOpaque(argument!).takeRetainedValue()
        session.run()
        attachRunning.store(false, ordering: .releasing)
        return nil
    }, box)
    pthread_attr_destroy(&attributes)
    pthread_sigmask(SIG_SETMASK, &original, nil)
    if status != 0 {
        Unmanaged<AttachSession>.fromOpaque(box).release()
        attachRunning.store(false, ordering: .releasing)
        return -Int32(LT_ENOMEM)
    }
    return 0
}

private final class AttachSession {
    let settings: [String: String]

    init(settings: [String: String]) { self.settings = settings }

    private func setting(_ name: String) -> String? {
        guard let value = settings[name], !value.isEmpty else { return nil }
        return value
    }

    func run() {
        lt_record_thread_ignore(1)
        if let fd = Optional(open("/proc/thread-self/comm", O_WRONLY | O_CLOEXEC)), fd >= 0 {
            _ = "livetrace-attach".withCString { write(fd, $0, strlen($0)) }
            close(fd)
        }
        // Step 2 (connect first: every failure after it is reported).
        guard let controlName = setting(PreloadEnvironment.control),
              let control = try? ControlConnection.connect(to: controlName) else { return }
        defer { control.close() }
        // Step 1.
        guard let marker = AttachControl.bindMarker() else {
            report(control, .start, failure: PreloadFailure(code: -Int32(LT_EBUSY), message: "the process already holds an attached LiveTrace session"))
            return
        }
        attachMarker.store(marker, ordering: .releasing)
        defer {
            attachMarker.store(-1, ordering: .releasing)
            close(marker)
        }
        if lt_record_active_area() != nil {
            report(control, .start, failure: PreloadFailure(
                code: -Int32(LT_EBUSY),
                message: "the process already records (started by livetrace record -- PROGRAM, or through the C API)"))
            return
        }
        // Step 3.
        let graph: FunctionGraph
        switch startRecording(setting: setting, rings: setting(PreloadEnvironment.rings) ?? "") {
        case let .success(started): graph = started
        case let .failure(failure):
            report(control, .start, failure: failure)
            return
        }
        // Step 4.
        report(control, .start, failure: nil)
        let go = try? control.receive(timeoutMilliseconds: Int32(PreloadControlClient.replyTimeoutSeconds * 1000))
        // Step 5 (without a "go" the CLI is gone: stop at once).
        if go != nil {
            while let message = try? control.receive(), message != "detach" {}
        }
        // Step 6.
        var failure: PreloadFailure?
        do throws(TraceError) {
            try graph.stop()
            // Relocated prologues (functions without sites) get their
            // original bytes back; their stubs are freed after a grace period.
            try OpsRegistry.shared.restoreRelocatedFunctions()
            // Sites normalized from gcc's nops or `call __fentry__` get
            // the compiler's bytes back: the code is the file's.
            try OpsRegistry.shared.restoreOriginalSites()
        } catch {
            failure = PreloadFailure(code: error.cCode, message: "restoring the sites failed: \(error.description)")
        }
        let area = lt_record_active_area()
        let detached = lt_record_detach()
        if detached == 0, let area {
            // The ring file's pages go; its addresses stay reserved, holding
            // the rings that threads' writer states still point to
            // (lt_thread.area/ring: cleared only on a thread's next event),
            // and the next session's area is mapped there and hands those
            // rings to the same threads (lt_record_release_area): one
            // reservation however many sessions.
            _ = lt_record_release_area(area)
        } else if detached != 0, failure == nil {
            // Quiescence of the writers not proven: the mapping stays.
            failure = PreloadFailure(code: Int32(detached), message: "the writer layer did not detach cleanly (code \(detached)): the ring mapping stays")
        }
        // Step 7.
        report(control, .detached, failure: failure)
    }

    private func report(_ control: ControlConnection, _ verb: PreloadMessage.Verb, failure: PreloadFailure?) {
        let message = PreloadMessage(verb: verb, pid: getpid(), status: failure?.code ?? 0, text: failure?.message ?? "-")
        try? control.send(message.encoded)
    }
}
