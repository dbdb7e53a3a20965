// What the trace-reading commands share: the trace directory option, errors
// on stderr with the command's name, the progress bar.
import ArgumentParser
import Glibc
import LiveTraceRecording

struct TraceDirectoryOption: ParsableArguments {
    @Option(name: .shortAndLong, help: ArgumentHelp("The trace directory.", valueName: "dir"))
    var directory: String = "livetrace.data"
}

enum CommandOutput {
    /// `livetrace COMMAND: message` on stderr.
    static func error(_ command: String, _ message: String) {
        var line = "livetrace \(command): \(message)\n"
        line.withUTF8 { _ = Glibc.write(STDERR_FILENO, $0.baseAddress, $0.count) }
    }

    /// Prints every damage met, and says the results stop at it; status 1
    /// when there was any.
    static func reportDamage(_ command: String, _ damage: [String]) throws {
        guard !damage.isEmpty else { return }
        for message in damage { error(command, "\(message) (results up to the damage)") }
        throw ExitCode(1)
    }

    static func incompleteWarning(_ command: String, _ info: TraceInfo) {
        if !info.complete {
            error(command, "the trace is incomplete (recording still running, or not salvaged)")
        }
    }
}

/// A progress bar on stderr, drawn only when stderr is a terminal and the
/// command has run for more than a second (LIVETRACE_PROGRESS_AFTER=SECONDS
/// changes the delay: tests use 0); erased when done.
final class ProgressBar {
    private let start = ProgressBar.now()
    private let delay = getenv("LIVETRACE_PROGRESS_AFTER").flatMap { Double(String(cString: $0)) } ?? 1
    private var lastDraw: Double = 0
    private var drawn = false
    private let enabled = isatty(STDERR_FILENO) == 1

    static func now() -> Double {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return Double(ts.tv_sec) + Double(ts.tv_nsec) / 1e9
    }

    var callback: ((Int, Int) -> Void)? {
        guard enabled else { return nil }
        return { [self] done, total in update(done, total) }
    }

    func update(_ done: Int, _ total: Int) {
        let t = Self.now()
        guard t - start >= delay, t - lastDraw > 0.1, total > 0 else { return }
        lastDraw = t
        drawn = true
        let width = 40
        let filled = min(width, done * width / total)
        let percent = min(100, done * 100 / total)
        let bar = "\r[" + String(repeating: "#", count: filled) + String(repeating: " ", count: width - filled) + "] \(percent)%"
        var text = bar
        text.withUTF8 { _ = Glibc.write(STDERR_FILENO, $0.baseAddress, $0.count) }
    }

    func finish() {
        guard drawn else { return }
        var clear = "\r" + String(repeating: " ", count: 48) + "\r"
        clear.withUTF8 { _ = Glibc.write(STDERR_FILENO, $0.baseAddress, $0.count) }
    }
}

