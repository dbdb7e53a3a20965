#if canImport(Glibc)
import Glibc
import LiveTraceSites
#endif
import CLiveTraceShims

/// Makes every thread of the process see freshly written code: after
/// `serializeAllCores()` returns, no core still executes instructions it
/// fetched before the call.
///
/// Mechanisms:
///   membarrier          MEMBARRIER_CMD_PRIVATE_EXPEDITED_SYNC_CORE (Linux
///                       4.16+), registered once; the kernel IPIs every core
///                       running one of our threads and serializes it.
///   signalEveryThread   fallback: send the sync signal to every other
///                       thread in /proc/self/task and wait until each has
///                       acknowledged from its handler (or has exited).
///                       Delivering a signal enters the kernel and the return
///                       to user space is an IRET, a serializing instruction.
///                       Cost: a signal round trip per thread; a system call
///                       the thread is blocked in is restarted (SA_RESTART),
///                       except those Linux never restarts (poll, epoll_wait,
///                       nanosleep...), which see EINTR.
/// The patcher's own core runs a serializing instruction after each step
/// (`lt_sys_serialize_this_core`: SERIALIZE, else `cpuid`).
public enum CoreSerializer {
    public enum Mechanism: String, Sendable, Hashable {
        case membarrier
        case signalEveryThread
    }

    /// How long a round waits for one thread's acknowledgement before the
    /// batch fails (a thread that blocked the sync signal with a raw system
    /// call never answers).
    static let acknowledgementTimeoutNanoseconds: UInt64 = 5_000_000_000

    /// Whether membarrier SYNC_CORE works here: queried, then registered.
    /// Computed once; the registration lasts for the process.
    static let membarrierAvailable: Bool = {
        guard let supported = try? Syscall.membarrier(Int32(LT_MEMBARRIER_CMD_QUERY)),
              supported & Int(LT_MEMBARRIER_CMD_PRIVATE_EXPEDITED_SYNC_CORE) != 0
        else { return false }
        return (try? Syscall.membarrier(Int32(LT_MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED_SYNC_CORE))) != nil
    }()

    /// The mechanism used when the caller does not force one.
    public static var preferredMechanism: Mechanism {
        membarrierAvailable ? .membarrier : .signalEveryThread
    }

    public static func serializeAllCores(using mechanism: Mechanism) throws(PatchProblem) {
        switch mechanism {
        case .membarrier:
            guard membarrierAvailable else {
                throw .protocolFailed("membarrier PRIVATE_EXPEDITED_SYNC_CORE is not available on this kernel")
            }
            do throws(SystemCallError) {
                _ = try Syscall.membarrier(Int32(LT_MEMBARRIER_CMD_PRIVATE_EXPEDITED_SYNC_CORE))
            } catch {
                throw .protocolFailed(error.description)
            }
        case .signalEveryThread:
            _ = try signalThreadsAndWait(skipThreadsInSystemCalls: false)
        }
        lt_sys_serialize_this_core()
    }

    /// Sends the sync signal to every other thread and waits until each has
    /// run its handler (which also moves threads out of the rescue regions
    /// of the published in-flight table). With `skipThreadsInSystemCalls`,
    /// threads blocked in a system call (per /proc/self/task/N/syscall) are
    /// not signalled: their PC is at a syscall instruction, not in our code.
    /// Returns the number of threads signalled.
    static func signalThreadsAndWait(skipThreadsInSystemCalls: Bool) throws(PatchProblem) -> Int {
        let me = Syscall.gettid()
        var tids: [Int32]
        do throws(SystemCallError) {
            tids = try Syscall.threadIDs().filter { $0 != me }
        } catch {
            throw .protocolFailed(error.description)
        }
        if skipThreadsInSystemCalls {
            tids = tids.filter { !isBlockedInSystemCall($0) }
        }
        tids.sort()
        if tids.isEmpty { return 0 }

        // Publish the request before the first signal; retire it after the
        // last acknowledgement (lt_trap.h, publication protocol).
        let tidBuffer = UnsafeMutablePointer<Int32>.allocate(capacity: tids.count)
        tidBuffer.initialize(from: tids, count: tids.count)
        let acked = UnsafeMutablePointer<UInt32>.allocate(capacity: tids.count)
        acked.initialize(repeating: 0, count: tids.count)
        let request = UnsafeMutablePointer<lt_ack_request>.allocate(capacity: 1)
        request.initialize(to: lt_ack_request(count: UInt64(tids.count), tids: tidBuffer, acked: acked))
        _ = lt_trap_exchange_ack_request(request)
        defer {
            _ = lt_trap_exchange_ack_request(nil)
            lt_trap_wait_for_readers()
            request.deallocate()
            acked.deallocate()
            tidBuffer.deallocate()
        }

        var pending: [Int] = []
        for (i, tid) in tids.enumerated() {
            do throws(SystemCallError) {
                if try Syscall.sendSync(to: tid) { pending.append(i) }
            } catch {
                throw .protocolFailed(error.description)
            }
        }
        let deadline = monotonicNanoseconds() + acknowledgementTimeoutNanoseconds
        var spins = 0
        while !pending.isEmpty {
            pending.removeAll { i in
                lt_trap_load_ack(request, UInt64(i)) != 0 || !Syscall.threadExists(tids[i])
            }
            if pending.isEmpty { break }
            // The threads we wait for may need this core to run their
            // handlers (more runnable threads than cores): give it up.
            spins += 1
            if spins > 16 { sched_yield() }
            if monotonicNanoseconds() > deadline {
                let late = pending.map { describeThread(tids[$0]) }.joined(separator: "; ")
                throw .protocolFailed("thread(s) \(late) did not acknowledge the sync signal (blocked by a raw system call?)")
            }
        }
        return tids.count
    }

    /// The sync signal to install: `preferred` unless some thread already
    /// blocks it (a thread that blocked it before we could protect it never
    /// acknowledges) or the program has a handler for it; then the highest
    /// free real-time signal above SIGRTMIN+3.
    static func chooseSyncSignal(preferred: Int32) -> Int32 {
        var blocked: UInt64 = 0
        for tid in (try? Syscall.threadIDs()) ?? [] {
            guard let status = try? SystemCall.readFile("/proc/self/task/\(tid)/status") else { continue }
            blocked |= SystemCall.hexField("SigBlk:", in: status) ?? 0
        }
        func free(_ signal: Int32) -> Bool {
            guard blocked & (UInt64(1) << UInt64(signal - 1)) == 0 else { return false }
            var current = sigaction()
            guard lt_sys_libc_sigaction(signal, nil, &current) == 0 else { return false }
            return current.__sigaction_handler.sa_handler == nil // SIG_DFL
        }
        if free(preferred) { return preferred }
        let rtmax = lt_sys_sigrtmax(), rtmin = lt_sys_sigrtmin()
        return stride(from: rtmax, to: rtmin + 3, by: -1).first(where: free) ?? preferred
    }

    /// "tid (name), blocked signals: mask" from /proc/self/task/N, for errors.
    static func describeThread(_ tid: Int32) -> String {
        let status = (try? SystemCall.readFile("/proc/self/task/\(tid)/status")).map { String(decoding: $0, as: UTF8.self) } ?? ""
        let fields = status.split(separator: "\n").filter { $0.hasPrefix("Name:") || $0.hasPrefix("SigBlk:") || $0.hasPrefix("State:") }
        return "\(tid) (\(fields.joined(separator: ", ").replacingTabs()))"
    }

    static func isBlockedInSystemCall(_ tid: Int32) -> Bool {
        if case .blocked? = try? TaskSyscall.of(tid) { return true }
        return false
    }

    static func monotonicNanoseconds() -> UInt64 {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return UInt64(ts.tv_sec) * 1_000_000_000 + UInt64(ts.tv_nsec)
    }
}

extension StringProtocol {
    fileprivate func replacingTabs() -> String {
        String(map { $0 == "\t" ? " " : $0 })
    }
}
