/// What /proc/self/task/TID/syscall says of a thread, the project's one
/// reader of that file (the text poke's serializer and quiescence both ask):
///
///     running                          on a CPU now: no PC to give
///     -1 SP PC                         off CPU, not in a system call
///     NR A1 A2 A3 A4 A5 A6 SP PC       blocked in system call NR
///
/// (numbers after NR in hex with 0x; PC is the user-space address the
/// thread resumes at.)
public enum TaskSyscall: Equatable, Sendable {
    case running
    case notInSystemCall(pc: UInt)
    case blocked(number: Int, pc: UInt)

    /// The state of thread `tid` of this process; nil when it has exited.
    public static func of(_ tid: Int32) throws(SystemCallError) -> TaskSyscall? {
        guard let bytes = try SystemCall.readFileIfPresent("/proc/self/task/\(tid)/syscall") else { return nil }
        return parse(bytes)
    }

    /// nil for text that is none of the three forms.
    public static func parse(_ bytes: [UInt8]) -> TaskSyscall? {
        let fields = bytes.split { $0 == UInt8(ascii: " ") || $0 == UInt8(ascii: "\n") }
            .map { String(decoding: $0, as: UTF8.self) }
        guard let first = fields.first else { return nil }
        if first == "running" { return .running }
        guard let number = Int(first), fields.count >= 3, let last = fields.last, last.hasPrefix("0x"),
              let pc = UInt(last.dropFirst(2), radix: 16) else { return nil }
        return number < 0 ? .notInSystemCall(pc: pc) : .blocked(number: number, pc: pc)
    }

    /// The PC a thread off CPU resumes at.
    public var pc: UInt? {
        switch self {
        case .running: return nil
        case let .notInSystemCall(pc), let .blocked(_, pc): return pc
        }
    }
}
