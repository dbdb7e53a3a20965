// Loading liblivetrace.so into a running process (`livetrace record -p PID`)
// and starting its attached session (LiveTraceC/Attach.swift). ptrace holds
// one thread for this only; the rest goes over the control channel.
//
// The borrowed thread, in order:
//   1. PTRACE_SEIZE + PTRACE_INTERRUPT: it stops wherever it was, in user
//      code or inside a system call; save its general registers and its
//      whole FP/vector state (NT_X86_XSTATE: dlopen clobbers xmm/ymm). It
//      is kept only at a safe point (below); otherwise it is given back as
//      it was and the next thread is tried, round after round;
//   2. the library path and the configuration are written below its red
//      zone (128 bytes under rsp), and under them the return address 0;
//   3. each call: rip = the function, rdi = the argument, rsp 16-byte
//      aligned before the pushed return address, orig_rax = -1 (the kernel
//      must not take the stopped system call for one to restart on this
//      resume); PTRACE_CONT; the return to address 0 faults, and the fault's
//      SIGSEGV stop (suppressed) hands back rax. Calls: dlopen(path,
//      RTLD_NOW) in libc (glibc ≥ 2.34), dlerror() when it failed, then
//      lt_attach_start(config) in the loaded library;
//   4. the registers as saved, with one rule applied (below), and the
//      FP/vector state go back; PTRACE_DETACH. Signals that arrived for the
//      thread while it was held were suppressed then and are sent again
//      with tgkill.
//
// The restart rule: a thread stopped inside a blocking system call that the
// interrupt broke has orig_rax = the call's number and rax = -ERESTARTSYS
// (512), -ERESTARTNOINTR (513), -ERESTARTNOHAND (514) or
// -ERESTART_RESTARTBLOCK (516). The kernel would restart it when no handler
// runs; it is restarted the same way by hand: rip −= 2 (back onto the
// 2-byte `syscall`), rax = orig_rax (or __NR_restart_syscall, 219, for
// RESTARTBLOCK, which resumes from the thread's restart block), and
// orig_rax = -1 so the kernel does not apply the rule a second time. The
// thread re-enters its call as if nothing happened: no EINTR, and no wake-up
// is lost (a pipe's data stays in the pipe until the call reads it).
//
// The safe point: dlopen takes the allocator's arena locks and the loader's
// lock, which are not recursive for the allocator; a thread stopped while it
// holds one would wait for itself inside dlopen, forever. Those locks are
// held only while the thread runs the C library's, the loader's or an
// allocator library's code. So a thread is borrowed only when
//   (a) it waits in a system call that blocks by nature (read, poll,
//       epoll_wait, nanosleep, accept, wait4, ...: the C library's thin
//       wrapper, never called with a lock dlopen needs), or
//   (b) its rip is outside every executable mapping of libc, ld.so and any
//       library whose name holds "malloc" (jemalloc, tcmalloc, mimalloc).
// Held anywhere else (inside malloc, inside futex — which may be an arena's
// lock wait —, mmap, brk), it is given back untouched and tried again a
// moment later. No safe point within `safePointTimeout` refuses the
// attach, the process untouched. Still out of reach: a lock dlopen needs
// held across user code (a constructor running inside another thread's
// dlopen, a dl_iterate_phdr callback) — the loader's lock is recursive for
// the thread that holds it, and rare in a running program.
import CLiveTraceShims
import Glibc
import LiveTrace
import LiveTraceSites

/// Why an injection failed (the process was restored before this is thrown).
struct InjectionError: Error, CustomStringConvertible {
    var description: String
}

extension ProcessMaps {
    /// The mappings of process `pid`; empty when they cannot be read (the
    /// refusals that follow name the reason).
    static func readOrEmpty(pid: pid_t) -> [ProcessMapping] {
        (try? read(pid: pid)) ?? []
    }

    /// The run-time address of the exported function `symbol` of the object
    /// mapped from a file whose path satisfies `matches`; nil when the
    /// object is not mapped or does not export it.
    static func exportedFunction(
        _ symbol: String, in mappings: [ProcessMapping], pid: pid_t, matches: (String) -> Bool
    ) -> (address: UInt64, path: String)? {
        // The executable mapping: a read-only mapping of the same file may
        // be someone's reading of it (LiveTrace's own site discovery maps
        // the files it reads), not the loader's.
        for mapping in mappings where mapping.executable && mapping.inode != 0 && matches(mapping.path) {
            // The file as the process sees it (its own mount namespace).
            let file = "/proc/\(pid)/root" + mapping.path
            guard let object = try? ElfObject(path: access(file, R_OK) == 0 ? file : mapping.path),
                  let segment = object.segments.first(where: { $0.isExecutable && $0.fileOffset & ~0xfff == mapping.offset }),
                  let value = try? object.exportedFunction(named: symbol) else { continue }
            let bias = UInt64(mapping.start) &- (segment.address & ~0xfff)
            return (bias &+ value, mapping.path)
        }
        return nil
    }
}

extension String {
    /// Without leading and trailing spaces, tabs and newlines (the blanks
    /// of /proc files).
    var trimmedOfBlanks: String {
        let blank: (Character) -> Bool = { $0 == " " || $0 == "\t" || $0 == "\n" }
        return String(drop(while: blank).reversed().drop(while: blank).reversed())
    }
}

/// The whole of a /proc file as text; "" when it cannot be read.
func readProcFile(_ path: String) -> String {
    ((try? SystemCall.readFile(path)).map { String(decoding: $0, as: UTF8.self) }) ?? ""
}

enum AttachInjection {
    private static let restartCodes: Set<Int64> = [-512, -513, -514, -516]
    private static let restartSyscall: UInt64 = 219
    private static let redZone: UInt64 = 128
    private static let callTimeout = Duration.seconds(20)
    static let safePointTimeout = Duration.seconds(2)

    /// System calls that block by nature, in which a thread holds no lock
    /// dlopen needs (x86-64 numbers): read, write, poll, pread64, readv,
    /// writev, select, pause, nanosleep, connect, accept, recvfrom,
    /// recvmsg, wait4, msgrcv, rt_sigtimedwait, rt_sigsuspend,
    /// io_getevents, semtimedop, clock_nanosleep, epoll_wait, waitid,
    /// pselect6, ppoll, epoll_pwait, accept4, recvmmsg, epoll_pwait2.
    static let waitingSystemCalls: Set<UInt64> = [
        0, 1, 7, 17, 19, 20, 23, 34, 35, 42, 43, 45, 47, 61, 70, 128, 130, 208, 220, 230, 232, 247, 270, 271, 281, 288, 299, 441,
    ]

    /// The executable ranges of code that may hold a lock dlopen needs: the
    /// C library, the loader, allocator libraries.
    static func lockHoldingCode(pid: pid_t) -> [(start: UInt64, end: UInt64)] {
        ProcessMaps.readOrEmpty(pid: pid).filter { mapping in
            guard mapping.executable, let name = mapping.path.split(separator: "/").last else { return false }
            return name.hasPrefix("libc.so") || name.hasPrefix("libc-") || name.hasPrefix("ld-linux") || name.hasPrefix("ld-") || name.contains("malloc")
        }.map { (UInt64($0.start), UInt64($0.end)) }
    }

    /// One of `tids` held at a safe point (above), `preferred` first each
    /// round; threads that exit meanwhile are skipped.
    private static func borrowAtSafePoint(pid: pid_t, preferred: pid_t) throws(InjectionError) -> HeldThread {
        let unsafe = lockHoldingCode(pid: pid)
        let deadline = ContinuousClock.now + safePointTimeout
        var rounds = 0
        while true {
            let others = ((try? SystemCall.listDirectory("/proc/\(pid)/task")) ?? nil)?.compactMap { pid_t($0) }.filter { $0 != preferred }.sorted() ?? []
            for tid in [preferred] + others {
                guard var thread = try? HeldThread.seize(pid: pid, tid: tid) else { continue }
                if thread.isAtSafePoint(outside: unsafe) { return thread }
                thread.release()
            }
            rounds += 1
            if ContinuousClock.now > deadline {
                throw InjectionError(description: "no thread stopped outside the C library, the loader and the allocator within \(safePointTimeout.components.seconds) s (\(rounds) rounds): loading the shim there could deadlock on a lock the thread holds; nothing was changed, try again")
            }
            usleep(useconds_t(min(rounds, 20) * 100))
        }
    }

    /// Loads `library` into `pid` through one of its threads (`tid` first,
    /// at a safe point) and calls lt_attach_start(config). Returns
    /// lt_attach_start's result.
    static func inject(pid: pid_t, tid: pid_t, dlopen: UInt64, dlerror: UInt64?, library: String, config: String) throws(InjectionError) -> Int32 {
        var thread = try borrowAtSafePoint(pid: pid, preferred: tid)
        defer { thread.release() }
        let handle = try thread.call(dlopen, argument: .string(library), second: UInt64(RTLD_NOW))
        guard handle != 0 else {
            var reason = "dlopen returned NULL"
            if let dlerror, let text = try? thread.call(dlerror, argument: .value(0)), text != 0,
               let message = thread.readString(at: text) {
                reason = message
            }
            throw InjectionError(description: "the process could not load \(library): \(reason)")
        }
        let libraryPath = realpath(library, nil).map { resolved in
            defer { free(resolved) }
            return String(cString: resolved)
        } ?? library
        let libraryIdentity = FileIdentity.of(path: library)
        guard let entry = ProcessMaps.exportedFunction("lt_attach_start", in: ProcessMaps.readOrEmpty(pid: pid), pid: pid, matches: { path in
            path == libraryPath || FileIdentity.of(path: path).map { identity in libraryIdentity.map { identity.isSameFile(as: $0) } ?? false } ?? false
        }) else {
            throw InjectionError(description: "\(library) is loaded but exports no lt_attach_start (an older build?)")
        }
        let status = try thread.call(entry.address, argument: .string(config))
        return Int32(truncatingIfNeeded: status)
    }

    /// Signals no thread may block while sites change: SIGTRAP (the kernel
    /// kills a process whose thread meets an int3 with SIGTRAP blocked) and
    /// the text poke's preferred sync signal, SIGRTMAX-2 (TextPoker.swift).
    /// Kernel sigset bits (signal n is bit n-1).
    static let protectedSignals: UInt64 = 1 << (UInt64(SIGTRAP) - 1) | 1 << (UInt64(lt_sys_sigrtmax() - 2) - 1)

    /// The threads of `pid` that block a protected signal, from
    /// /proc/PID/task/TID/status (SigBlk), without touching them.
    static func threadsBlockingProtectedSignals(pid: pid_t) -> [pid_t] {
        let tasks = ((try? SystemCall.listDirectory("/proc/\(pid)/task")) ?? nil) ?? []
        return tasks.compactMap { pid_t($0) }.filter { tid in
            guard let status = try? SystemCall.readFile("/proc/\(pid)/task/\(tid)/status"),
                  let mask = SystemCall.hexField("SigBlk:", in: status) else { return false }
            return mask & protectedSignals != 0
        }
    }

    /// Unblocks the protected signals in thread `tid` (PTRACE_SETSIGMASK,
    /// the thread stopped and given back as HeldThread does); returns the
    /// mask it had. The LD_PRELOAD shim keeps the same rule by interposing
    /// the mask functions (lt_sigmask.c); an attached process was never
    /// prepared, so its threads are fixed once at the attach.
    static func unblockProtectedSignals(pid: pid_t, tid: pid_t) throws(InjectionError) -> UInt64 {
        try setMask(pid: pid, tid: tid) { $0 & ~protectedSignals }
    }

    /// At the detach: the mask a thread had before the attach, if it still
    /// has the one the attach gave it.
    static func restoreMask(pid: pid_t, tid: pid_t, original: UInt64) {
        _ = try? setMask(pid: pid, tid: tid) { $0 == original & ~protectedSignals ? original : $0 }
    }

    private static func setMask(pid: pid_t, tid: pid_t, _ change: (UInt64) -> UInt64) throws(InjectionError) -> UInt64 {
        var thread = try HeldThread.seize(pid: pid, tid: tid)
        defer { thread.release() }
        var mask: UInt64 = 0
        let got = withUnsafeMutablePointer(to: &mask) { lt_ptrace(LT_PTRACE_GETSIGMASK, tid, 8, UInt(bitPattern: $0)) }
        guard got == 0 else { throw InjectionError(description: "ptrace(PTRACE_GETSIGMASK) of thread \(tid) failed") }
        var changed = change(mask)
        if changed != mask {
            let set = withUnsafeMutablePointer(to: &changed) { lt_ptrace(LT_PTRACE_SETSIGMASK, tid, 8, UInt(bitPattern: $0)) }
            guard set == 0 else { throw InjectionError(description: "ptrace(PTRACE_SETSIGMASK) of thread \(tid) failed") }
        }
        return mask
    }

    /// The thread held by ptrace.
    private struct HeldThread {
        /// Thread `tid` seized (PTRACE_SEIZE), stopped (PTRACE_INTERRUPT)
        /// and its registers saved; detached again if any step fails.
        static func seize(pid: pid_t, tid: pid_t) throws(InjectionError) -> HeldThread {
            let seized = lt_ptrace(LT_PTRACE_SEIZE, tid, 0, 0)
            guard seized == 0 else {
                throw InjectionError(description: "ptrace(PTRACE_SEIZE) of thread \(tid) failed: \(String(cString: strerror(Int32(-seized))))")
            }
            var thread = HeldThread(pid: pid, tid: tid)
            do throws(InjectionError) {
                try thread.interrupt()
                try thread.save()
            } catch {
                _ = lt_ptrace(LT_PTRACE_DETACH, tid, 0, 0)
                throw error
            }
            return thread
        }

        enum Argument {
            case value(UInt64)
            case string(String)
        }

        let pid: pid_t
        let tid: pid_t
        var saved = user_regs_struct()
        var xstate = [UInt8](repeating: 0, count: 64 * 1024)
        var xstateLength = 0
        /// Signals that arrived while held (suppressed, sent again at release).
        var pending: [Int32] = []
        var restored = false

        init(pid: pid_t, tid: pid_t) {
            self.pid = pid
            self.tid = tid
        }

        enum Stop {
            case event(Int32)
            case signal(Int32)
        }

        /// Waits for the next stop of the thread.
        func waitStop(deadline: ContinuousClock.Instant) throws(InjectionError) -> Stop {
            var status: Int32 = 0
            while true {
                let result: pid_t
                do throws(SystemCallError) {
                    result = try SystemCall.retrying("waitpid", subject: "\(tid)") { waitpid(tid, &status, Int32(LT_WALL) | WNOHANG) }
                } catch {
                    throw InjectionError(description: error.description)
                }
                if result == 0 {
                    if ContinuousClock.now > deadline { throw InjectionError(description: "thread \(tid) did not stop within \(AttachInjection.callTimeout.components.seconds) s") }
                    usleep(100)
                    continue
                }
                if status & 0xff != 0x7f {
                    throw InjectionError(description: "the process exited during the injection")
                }
                let signal = (status >> 8) & 0xff
                let event = (status >> 16) & 0xffff
                return event != 0 ? .event(signal) : .signal(signal)
            }
        }

        mutating func interrupt() throws(InjectionError) {
            let result = lt_ptrace(LT_PTRACE_INTERRUPT, tid, 0, 0)
            guard result == 0 else { throw InjectionError(description: "ptrace(PTRACE_INTERRUPT) failed: \(String(cString: strerror(Int32(-result))))") }
            let deadline = ContinuousClock.now + AttachInjection.callTimeout
            while true {
                switch try waitStop(deadline: deadline) {
                case .event: return
                case let .signal(signal):
                    // A signal reached the thread first: keep it for later and
                    // go on to the interrupt's stop.
                    pending.append(signal)
                    _ = lt_ptrace(LT_PTRACE_CONT, tid, 0, 0)
                }
            }
        }

        /// Whether the thread, as saved, holds no lock dlopen needs: it
        /// waits in a system call that blocks by nature, or runs outside
        /// `unsafe` (the C library, the loader, allocators).
        func isAtSafePoint(outside unsafe: [(start: UInt64, end: UInt64)]) -> Bool {
            if Int64(bitPattern: saved.orig_rax) >= 0 {
                return AttachInjection.waitingSystemCalls.contains(saved.orig_rax)
            }
            return !unsafe.contains { $0.start <= saved.rip && saved.rip < $0.end }
        }

        mutating func save() throws(InjectionError) {
            let regs = withUnsafeMutablePointer(to: &saved) { lt_ptrace(LT_PTRACE_GETREGS, tid, 0, UInt(bitPattern: $0)) }
            guard regs == 0 else { throw InjectionError(description: "ptrace(PTRACE_GETREGS) failed: \(String(cString: strerror(Int32(-regs))))") }
            let count = xstate.count
            let result = xstate.withUnsafeMutableBytes { buffer in
                var vector = iovec(iov_base: buffer.baseAddress, iov_len: count)
                let status = withUnsafeMutablePointer(to: &vector) { lt_ptrace(LT_PTRACE_GETREGSET, tid, UInt(LT_NT_X86_XSTATE), UInt(bitPattern: $0)) }
                return status == 0 ? vector.iov_len : 0
            }
            guard result > 0 else { throw InjectionError(description: "ptrace(PTRACE_GETREGSET, NT_X86_XSTATE) failed") }
            xstateLength = result
        }

        /// Writes `bytes` at `address` of the process.
        func write(_ bytes: [UInt8], at address: UInt64) throws(InjectionError) {
            let fd = open("/proc/\(tid)/mem", O_RDWR | O_CLOEXEC)
            guard fd >= 0 else { throw InjectionError(description: "cannot open /proc/\(tid)/mem: \(String(cString: strerror(errno)))") }
            defer { close(fd) }
            let written = bytes.withUnsafeBytes { pwrite(fd, $0.baseAddress, $0.count, off_t(Int64(bitPattern: address))) }
            guard written == bytes.count else { throw InjectionError(description: "cannot write the process's stack at 0x\(String(address, radix: 16))") }
        }

        func readString(at address: UInt64) -> String? {
            let fd = open("/proc/\(tid)/mem", O_RDONLY | O_CLOEXEC)
            guard fd >= 0 else { return nil }
            defer { close(fd) }
            var buffer = [UInt8](repeating: 0, count: 1024)
            let count = buffer.withUnsafeMutableBytes { pread(fd, $0.baseAddress, $0.count, off_t(Int64(bitPattern: address))) }
            guard count > 0 else { return nil }
            return String(decoding: buffer[0..<count].prefix { $0 != 0 }, as: UTF8.self)
        }

        /// Calls `function(argument, second)` on the thread; returns rax.
        mutating func call(_ function: UInt64, argument: Argument, second: UInt64 = 0) throws(InjectionError) -> UInt64 {
            var regs = saved
            var top = (saved.rsp &- AttachInjection.redZone) & ~15
            let first: UInt64
            switch argument {
            case let .value(value): first = value
            case let .string(text):
                let bytes = Array(text.utf8) + [0]
                top = (top &- UInt64(bytes.count)) & ~15
                try write(bytes, at: top)
                first = top
            }
            // rsp ≡ 8 (mod 16) at the entry, as after a call; the return
            // address 0 ends the call with a fault.
            regs.rsp = top &- 8
            try write([UInt8](repeating: 0, count: 8), at: regs.rsp)
            regs.rip = function
            regs.rdi = first
            regs.rsi = second
            regs.rax = 0
            regs.orig_rax = UInt64.max
            let set = withUnsafeMutablePointer(to: &regs) { lt_ptrace(LT_PTRACE_SETREGS, tid, 0, UInt(bitPattern: $0)) }
            guard set == 0 else { throw InjectionError(description: "ptrace(PTRACE_SETREGS) failed: \(String(cString: strerror(Int32(-set))))") }
            _ = lt_ptrace(LT_PTRACE_CONT, tid, 0, 0)
            let deadline = ContinuousClock.now + AttachInjection.callTimeout
            while true {
                switch try waitStop(deadline: deadline) {
                case .event:
                    _ = lt_ptrace(LT_PTRACE_CONT, tid, 0, 0)
                case let .signal(signal):
                    var now = user_regs_struct()
                    _ = withUnsafeMutablePointer(to: &now) { lt_ptrace(LT_PTRACE_GETREGS, tid, 0, UInt(bitPattern: $0)) }
                    if signal == SIGSEGV && now.rip == 0 { return now.rax }
                    if signal == SIGSEGV || signal == SIGBUS || signal == SIGILL || signal == SIGFPE {
                        throw InjectionError(description: "the injected call faulted (signal \(signal) at 0x\(String(now.rip, radix: 16)))")
                    }
                    pending.append(signal)
                    _ = lt_ptrace(LT_PTRACE_CONT, tid, 0, 0)
                }
            }
        }

        /// The registers and FP/vector state back (the restart rule applied),
        /// detach, and the signals held back sent again.
        mutating func release() {
            guard !restored else { return }
            restored = true
            var regs = saved
            let code = Int64(bitPattern: regs.rax)
            if Int64(bitPattern: regs.orig_rax) >= 0 && AttachInjection.restartCodes.contains(code) {
                regs.rip &-= 2
                regs.rax = code == -516 ? AttachInjection.restartSyscall : regs.orig_rax
                regs.orig_rax = UInt64.max
            }
            _ = withUnsafeMutablePointer(to: &regs) { lt_ptrace(LT_PTRACE_SETREGS, tid, 0, UInt(bitPattern: $0)) }
            let length = xstateLength
            _ = xstate.withUnsafeMutableBytes { buffer in
                var vector = iovec(iov_base: buffer.baseAddress, iov_len: length)
                return withUnsafeMutablePointer(to: &vector) { lt_ptrace(LT_PTRACE_SETREGSET, tid, UInt(LT_NT_X86_XSTATE), UInt(bitPattern: $0)) }
            }
            _ = lt_ptrace(LT_PTRACE_DETACH, tid, 0, 0)
            for signal in pending { _ = syscall_tgkill(pid, tid, signal) }
        }
    }
}

private func syscall_tgkill(_ pid: pid_t, _ tid: pid_t, _ signal: Int32) -> Int {
    lt_sys_tgkill(Int(pid), Int(tid), signal)
}
