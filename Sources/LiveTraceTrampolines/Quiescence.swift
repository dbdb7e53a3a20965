// Quiescence: proof that no thread is inside, or about to enter, a retired
// trampoline, list or ops, so that it may be freed or reused.
//
// The trampoline side is in lt_tramp_x86_64.S (steps E1/E2 on the thread's
// slot sequence). The reclaimer side, after the sites stopped calling the
// retired code (the text poke serialized every core):
//
//   R1  membarrier(PRIVATE_EXPEDITED): every running thread's earlier stores
//       (its E1/E2 increments) are globally visible; pairs with E1/E2.
//   R2  list the threads (/proc/self/task) and snapshot every slot's seq.
//       A thread has one slot per execution context that made a traced
//       call (its normal flow, each nested signal handler: lt_context.h);
//       the rules below hold for each of its slots.
//   R3  a thread is quiescent when
//         (a) its seq was odd and has changed: it left the callback section
//             it was in, and it cannot re-enter retired code (unreachable
//             since the poke);
//         (b) its seq was even and advanced by 2 or more: if it was between a
//             site's call and E1 at R2, that call has completed;
//         (c) its seq is unchanged and even and the kernel shows it blocked
//             (/proc/self/task/T/syscall) with its PC outside lt_tramp_text
//             and the JIT regions: it is not between a site's call and E1,
//             and it has not entered anything since R2;
//         (d) it has exited;
//         (f) (per slot) the slot belongs to the execution context of a
//             signal handler that has returned (lt_thread_slot.active is
//             0): a context is left only after its last E2, and whatever
//             it does once entered again cannot reach code retired before
//             R1. (A handler's context is entered only when the context it
//             interrupts is inside a section, whose slot rule (a) covers.)
//         (e) its seq is unchanged and even, and it has run for at least
//             `windowCPUBound` of CPU time since R3 first looked at it
//             (/proc/self/task/T/schedstat): the stretch between a site's
//             call and E1 is some twenty straight-line instructions with no
//             system call, and a fault there that sleeps is seen by (c), so
//             a thread that ran that long has left it — unless a signal
//             handler interrupted it there and ran as long (see below).
//       Threads without a slot (never traced) are judged by (c), (d), (e).
//
// The one case the rules cannot see: a signal handler that interrupts a
// thread between a site's call and E1 and then computes for longer than
// `windowCPUBound` (rule e) or blocks (rule c: the PC seen is the
// handler's). (Its traced calls advance its own context's slot, not the
// interrupted one's, so they cannot satisfy rule b.) Signals delivered in
// that window of a few nanoseconds, while a grace period runs, are the
// residual risk.
// Leaf stubs (StubX86_64.leafStub) have no E1/E2: a thread runs the stub
// and the leaf callback with its seq untouched. Rules (a)/(b) stay sound for
// it: a leaf callback calls nothing, so a seq that moved (E1/E2 of a generic
// trampoline, or the end of the callback section it was nested in) means
// the thread left the leaf code first. Rules (c)/(d)/(e) see it otherwise:
// `codeRanges` also holds the decoded code of every leaf callback that has
// a published or retired leaf stub (a thread preempted or faulting there
// shows its PC in /proc/self/task/T/syscall), and the window between the
// site's jump and leaving the leaf stub is bounded by the stub plus at most
// 64 loop-free instructions of the callback, well under `windowCPUBound`.
// The same signal-handler blind spot applies to that window.
//   R4  repeat R3 with a growing pause until every thread is quiescent, or
//       the deadline passes: then nothing is freed (the retired items wait
//       for the next grace period) and the caller gets a timeout.
//
// Never a guess: a running thread whose seq does not move is waited for.
import CLiveTraceShims
import Glibc
import LiveTraceSites

enum Quiescence {
    /// One thread at R2: the seq of each of its slots (a slot per
    /// execution context: its normal flow and each nested signal handler
    /// that made a traced call, lt_context.h).
    struct ThreadSnapshot {
        var tid: Int32
        var slots: [(index: Int, seq: UInt64)]
        /// On-CPU nanoseconds when R3 first found the thread running.
        var cpuBaseline: UInt64?
    }

    /// Rule (e): CPU time after which a running thread is past the window.
    static let windowCPUBound: UInt64 = 1_000_000

    /// Waits for a grace period (R1–R4). `codeRanges` are the JIT regions
    /// and the code of the leaf callbacks with published or retired stubs.
    static func synchronize(codeRanges: [(UInt, UInt)], deadline: Duration = .seconds(2)) throws(TraceError) {
        if lt_thread_current_seq() & 1 == 1 { throw TraceError.calledFromCallback }
        try Sys.membarrier()                                             // R1
        let me = Sys.gettid()
        guard let taskNames = try Sys.listDirectory("/proc/self/task") else {
            throw TraceError.sitesUnavailable("/proc/self/task is missing")
        }
        let slotsOfTid = currentSlots()                                  // R2
        var pending: [ThreadSnapshot] = []
        for name in taskNames {
            guard let tid = Int32(name), tid != me else { continue }
            let slots = (slotsOfTid[tid] ?? []).map { (index: $0, seq: lt_slot_load_seq(lt_thread_slot_at(Int32($0)))) }
            pending.append(ThreadSnapshot(tid: tid, slots: slots, cpuBaseline: nil))
        }
        let ranges = codeRanges + [(lt_tramp_text_start(), lt_tramp_text_end())]
        let clock = ContinuousClock()
        let start = clock.now
        var pause = 20                                                   // µs
        while true {
            var stillPending: [ThreadSnapshot] = []
            for var thread in pending where try !isQuiescent(&thread, codeRanges: ranges) {   // R3
                stillPending.append(thread)
            }
            pending = stillPending
            if pending.isEmpty { return }
            if clock.now - start > deadline {                            // R4
                throw TraceError.quiescenceTimedOut(threads: pending.map(\.tid))
            }
            if pause < 100 { sched_yield() } else { usleep(UInt32(pause)) }
            pause = min(pause * 2, 2000)
        }
    }

    /// The slots in use, by thread.
    private static func currentSlots() -> [Int32: [Int]] {
        var slotsOfTid: [Int32: [Int]] = [:]
        for i in 0..<Int(LT_THREAD_SLOTS) {
            let tid = lt_slot_load_tid(lt_thread_slot_at(Int32(i)))
            if tid != 0 { slotsOfTid[tid, default: []].append(i) }
        }
        return slotsOfTid
    }

    /// A thread is quiescent when each of its slots is: (a) odd at R2 and
    /// changed since, (b) advanced by 2 or more, or (d) freed; and when
    /// slots are left that are even and unchanged (or it had none), (c) or
    /// (e) holds for the thread.
    private static func isQuiescent(_ thread: inout ThreadSnapshot, codeRanges: [(UInt, UInt)]) throws(TraceError) -> Bool {
        let hadSlots = !thread.slots.isEmpty
        var undetermined: [(index: Int, seq: UInt64)] = []
        for slot in thread.slots {
            let pointer = lt_thread_slot_at(Int32(slot.index))
            if lt_slot_load_tid(pointer) != thread.tid { continue }      // (d) exited, slot freed
            if lt_slot_load_active(pointer) == 0 { continue }            // (f) a handler's context, returned
            let seq = lt_slot_load_seq(pointer)
            if slot.seq & 1 == 1 {                                       // (a)
                if seq == slot.seq { return false }
                continue
            }
            if seq >= slot.seq &+ 2 { continue }                         // (b)
            if seq != slot.seq { return false }                          // entered since R2: wait for E2
            undetermined.append(slot)
        }
        thread.slots = undetermined
        if hadSlots && undetermined.isEmpty { return true }
        // (c) / (d): what the kernel says of the thread.
        let state: TaskSyscall?
        do {
            guard let read = try TaskSyscall.of(thread.tid) else { return true }   // exited
            state = read
        } catch {
            throw TraceError.systemCall(error)
        }
        guard let pc = state?.pc else {
            // "running". A thread that had no slot at R2 and claimed one
            // since is judged from now on by (a)/(b) from its first seen seq:
            // whatever it was doing at R2 ends before that seq advances by 2.
            if !hadSlots, let claimed = currentSlots()[thread.tid] {
                thread.slots = claimed.map { (index: $0, seq: lt_slot_load_seq(lt_thread_slot_at(Int32($0)))) }
                thread.cpuBaseline = nil
                return false
            }
            // (e): running, seqs unchanged (or no slot): how long has it run?
            guard let cpu = try cpuTime(of: thread.tid) else { return true }   // exited
            guard let baseline = thread.cpuBaseline else {
                thread.cpuBaseline = cpu
                return false
            }
            return cpu &- baseline >= windowCPUBound
        }
        return !codeRanges.contains { pc >= $0.0 && pc < $0.1 }
    }
}

extension Quiescence {
    /// On-CPU nanoseconds of a thread (first field of schedstat); nil when
    /// the thread is gone.
    static func cpuTime(of tid: Int32) throws(TraceError) -> UInt64? {
        guard let text = try Sys.readFile("/proc/self/task/\(tid)/schedstat") else { return nil }
        let first = text.prefix { $0 != UInt8(ascii: " ") }
        guard let value = UInt64(String(decoding: first, as: UTF8.self)) else {
            throw TraceError.sitesUnavailable("unreadable /proc/self/task/\(tid)/schedstat")
        }
        return value
    }
}
