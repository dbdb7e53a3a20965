// The LD_PRELOAD shim: liblivetrace.so preloaded into any dynamically linked
// program (plain C, or Swift with its own runtime: the runtime linked into
// this library keeps its symbols local, so the two do not clash) records the
// function graph of the functions its environment names.
//
// Start-up, from the loader's call of this library's .init_array entry
// (before the program's own constructors and before main):
//   1. nothing to do unless LIVETRACE_RINGS is set (the library then serves
//      the C API only);
//   2. attach to the ring area named by LIVETRACE_RINGS (lt_record_attach_env):
//      the CLI created it and drains it;
//   3. start the function graph (FunctionGraph.start): discover the sites of
//      every loaded object, register the graph's ops for LIVETRACE_FILTER
//      minus LIVETRACE_NOTRACE with depth limit LIVETRACE_DEPTH, patch;
//   4. tell the CLI (control channel, PreloadControl.swift) the outcome and
//      wait for its reply; without a CLI, report a failure on stderr instead.
//      Before step 2 the shim told the CLI that the program is loaded, so
//      the CLI captures the memory map while steps 2 and 3 run.
// At exit (atexit): tell the CLI again, so libraries dlopened since start
// are in objects.json; when the loader loaded and unloaded nothing since the
// loaded message (lt_loaded_objects_generation), the map the CLI captured then
// is complete and the exit costs no round trip.
//
// Nothing needs flushing, at exit or at a crash: every event is published
// into the shared ring when it is written (lt_ring.h), and the CLI drains
// what a dead process left. fork: the child's threads claim their own rings
// on their next event (lt_record.c's atfork handler) and the shadow stack is
// the child's copy. exec: the environment carries over, the new image loads
// this library again and starts over at step 1.
//
// A failure never harms the program: it runs untraced, and the failure is
// reported (step 4).
import CLiveTraceShims
import Glibc
import LiveTracePreload
import LiveTraceSites
import LiveTraceTrampolines

/// The loader calls the function pointers of .init_array after this
/// library's dependencies are initialised and before the program's
/// constructors. `@section` places the pointer there, `@used` keeps the
/// otherwise unreferenced constant.
@section(".init_array") @used
let livetracePreloadInitializer: @convention(c) () -> Void = livetracePreloadStart

/// Ownership: written once by the initializer (single-threaded: the loader
/// runs it before main), read by the atexit handler.
nonisolated(unsafe) private var preloadControlName: String?
/// The loader's generation when the loaded message was sent (same ownership).
nonisolated(unsafe) private var preloadStartGeneration: UInt64 = 0

private func livetracePreloadStart() {
    let savedErrno = errno
    defer { errno = savedErrno }
    // Step 1.
    guard let rings = getenv(PreloadEnvironment.rings), rings.pointee != 0 else { return }
    let control = environment(PreloadEnvironment.control)
    preloadStartGeneration = lt_loaded_objects_generation()
    if let control {
        try? PreloadControlClient.post(PreloadMessage(verb: .loaded, pid: getpid(), status: 0, text: "-"), to: control)
    }
    let outcome = startRecording()
    // Step 4.
    report(outcome, verb: .start, control: control)
    if control != nil, case .success = outcome {
        preloadControlName = control
        atexit {
            guard lt_loaded_objects_generation() != preloadStartGeneration else { return }
            report(.success(()), verb: .exit, control: preloadControlName)
        }
    }
}

struct PreloadFailure: Error {
    var code: Int32
    var message: String
}

private func environment(_ name: String) -> String? {
    guard let value = getenv(name) else { return nil }
    let text = String(cString: value)
    return text.isEmpty ? nil : text
}

private func startRecording() -> Result<Void, PreloadFailure> {
    startRecording(setting: environment, rings: environment(PreloadEnvironment.rings) ?? "").map { _ in }
}

/// Steps 2 and 3, for the shim at start-up (`setting` reads the environment)
/// and for an attached session (Attach.swift: the CLI's configuration).
func startRecording(setting: (String) -> String?, rings: String) -> Result<FunctionGraph, PreloadFailure> {
    let filters = PreloadEnvironment.splitList(setting(PreloadEnvironment.filter))
    let notrace = PreloadEnvironment.splitList(setting(PreloadEnvironment.notrace))
    var depth = FunctionGraph.stackCapacity
    if let text = setting(PreloadEnvironment.depth) {
        guard let value = Int(text), value >= 1, value <= FunctionGraph.stackCapacity else {
            return .failure(PreloadFailure(
                code: -Int32(LT_EINVAL),
                message: "\(PreloadEnvironment.depth)=\(text): not a depth in 1...\(FunctionGraph.stackCapacity)"))
        }
        depth = value
    }
    // Step 2.
    let attached = lt_record_attach_file(rings)
    guard attached == 0 else {
        let reason = attached > -1000 ? String(cString: strerror(-attached)) : "code \(attached)"
        return .failure(PreloadFailure(
            code: -Int32(LT_EINVAL),
            message: "cannot attach to the ring area \(rings): \(reason)"))
    }
    // Step 3 (files found without sites are remembered for the next start;
    // relocation, when asked for, reaches the functions without sites).
    SitelessCache.enable()
    OpsRegistry.shared.includeDynamic = setting(PreloadEnvironment.dynamic) == "1"
    do throws(TraceError) {
        return .success(try FunctionGraph.start(functions: filters, excluding: notrace, maxDepth: depth))
    } catch {
        _ = lt_record_detach()
        return .failure(PreloadFailure(code: error.cCode, message: error.description))
    }
}

private func report(_ outcome: Result<Void, PreloadFailure>, verb: PreloadMessage.Verb, control: String?) {
    let message: PreloadMessage
    switch outcome {
    case .success: message = PreloadMessage(verb: verb, pid: getpid(), status: 0, text: "-")
    case let .failure(failure): message = PreloadMessage(verb: verb, pid: getpid(), status: failure.code, text: failure.message)
    }
    if let control {
        do throws(SystemCallError) {
            try PreloadControlClient.send(message, to: control)
            return
        } catch {
            // No CLI listening (it died, or the variable was copied by hand):
            // fall through to stderr for a failure; a success needs no word.
        }
    }
    if message.status != 0 {
        let line = "livetrace: not recording pid \(message.pid): \(message.text)\n"
        _ = line.withCString { write(STDERR_FILENO, $0, strlen($0)) }
    }
}
