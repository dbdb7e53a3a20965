#ifndef LT_SYS_H
#define LT_SYS_H
/* Thin wrappers for the system calls Swift cannot reach: syscall() is
 * variadic and not importable, and a few glibc entry points are interposed by
 * lt_sigmask.c so the patcher needs the real ones under other names.
 *
 * Convention: every lt_sys_* function returns the kernel's result, or
 * -errno on failure (never sets errno), and is async-signal-safe. The Swift
 * side (Syscalls.swift) retries EINTR and turns -errno into a typed error
 * that names the call. */
#include <stdint.h>
#include <signal.h>
#include <sys/types.h>

/* membarrier(2): cmd is one of the MEMBARRIER_CMD_* values below. */
long lt_sys_membarrier(int cmd, unsigned int flags);
enum {
    LT_MEMBARRIER_CMD_QUERY = 0,
    LT_MEMBARRIER_CMD_PRIVATE_EXPEDITED = (1 << 3),
    LT_MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED = (1 << 4),
    LT_MEMBARRIER_CMD_PRIVATE_EXPEDITED_SYNC_CORE = (1 << 5),
    LT_MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED_SYNC_CORE = (1 << 6),
};

/* A full memory barrier on every running thread of the process: membarrier
 * PRIVATE_EXPEDITED, registering the process on first use (one flag for the
 * whole library). EINTR is retried. 0 or -errno. */
long lt_sys_membarrier_private_expedited(void);

/* gettid(2) and tgkill(2). lt_sys_gettid_raw is the same system call as an
 * inline `syscall` instruction, for code that may not call libc (the
 * trampolines' slot claim, which runs between a site's call and E1). */
long lt_sys_gettid(void);
static inline long lt_sys_gettid_raw(void) {
    long tid;
    __asm__ volatile("syscall" : "=a"(tid) : "a"(186L /* SYS_gettid */) : "rcx", "r11", "memory");
    return tid;
}
long lt_sys_tgkill(long tgid, long tid, int sig);

/* rt_sigprocmask(2) on the calling thread, bypassing every interposition
 * (this is what setcontext/swapcontext and raw syscalls do). */
long lt_sys_rt_sigprocmask(int how, const sigset_t *set, sigset_t *old);

/* glibc's own sigaction (its exported alias __sigaction), bypassing the
 * interposed sigaction of lt_sigmask.c: what libc-internal callers such as
 * signal() would reach without our interposition. Returns 0 or -errno. */
long lt_sys_libc_sigaction(int sig, const struct sigaction *act, struct sigaction *old);

/* Sends SIGTRAP to the calling thread (raise(SIGTRAP)), and executes an
 * int3 instruction that is not a LiveTrace site: the program's own
 * breakpoints, for tests. */
void lt_sys_raise_sigtrap(void);
void lt_sys_execute_int3(void);

/* SIGRTMAX and SIGRTMIN as glibc computes it at run time (macros Swift cannot import). */
int lt_sys_sigrtmax(void);
int lt_sys_sigrtmin(void);

/* A serializing instruction usable in user mode (SERIALIZE, else CPUID);
 * the patcher runs it on its own core after each step. */
void lt_sys_serialize_this_core(void);

/* renameat2(AT_FDCWD, from, AT_FDCWD, to, RENAME_EXCHANGE): both names stay,
 * their files swapped atomically (Swift does not import renameat2). */
long lt_sys_rename_exchange(const char *from, const char *to);

#endif
