/* Interposed signal-mask and sigaction entry points; see
 * include/lt_sigmask.h for what they promise and what stays out of reach.
 * All are async-signal-safe (the originals are): raw system calls for the
 * masks, glibc's __sigaction for dispositions. */
#define _GNU_SOURCE
#include "lt_sigmask.h"
#include "lt_sys.h"
#include "lt_trap.h"
#include "lt_context.h"
#include <stdatomic.h>
#include <stdint.h>
#include <dlfcn.h>
#include <errno.h>
#include <string.h>

/* glibc's internal signals (SIGCANCEL, SIGSETXID): its pthread_sigmask never
 * blocks them, and neither may ours, since it replaces it. */
#define LT_GLIBC_SIGCANCEL 32
#define LT_GLIBC_SIGSETXID 33

void lt_sigmask_remove_protected(sigset_t *set) {
    sigdelset(set, SIGTRAP);
    sigdelset(set, lt_trap_sync_signal());
}

int pthread_sigmask(int how, const sigset_t *set, sigset_t *old) {
    sigset_t allowed;
    if (set && how != SIG_UNBLOCK) {
        allowed = *set;
        lt_sigmask_remove_protected(&allowed);
        sigdelset(&allowed, LT_GLIBC_SIGCANCEL);
        sigdelset(&allowed, LT_GLIBC_SIGSETXID);
        set = &allowed;
    }
    long r = lt_sys_rt_sigprocmask(how, set, old);
    return r < 0 ? (int)-r : 0;
}

int sigprocmask(int how, const sigset_t *set, sigset_t *old) {
    int r = pthread_sigmask(how, set, old);
    if (r != 0) {
        errno = r;
        return -1;
    }
    return 0;
}

/* ---- the dispatcher: each program handler runs in a context of its own --
 *
 * A program handler is installed as lt_signal_dispatch with the program's
 * own sa_mask and flags (plus SA_SIGINFO); the program's function is kept
 * in lt_program_handlers[sig]. The dispatcher enters the next execution
 * context (lt_context.h), calls it with (sig, info, ucontext) — on x86-64
 * a one-argument handler ignores the other two, as it does when the kernel
 * calls it — and leaves the context. So a handler that interrupts tracer
 * code has its calls traced and recorded, never taken for recursion.
 *
 * What the program reads back (the `old` action) is its own: the handler
 * it installed and its SA_SIGINFO bit. SIGTRAP and the sync signal are
 * LiveTrace's own (lt_trap.c forwards to the program's handler, entering a
 * context the same way); glibc's internal signals and a disposition of
 * SIG_DFL or SIG_IGN are installed as they are. Written by sigaction (any
 * thread, a handler included); read by the dispatcher: one atomic word per
 * signal, the handler; its SA_SIGINFO bit in a second word, read only to
 * report it back. */
#define LT_SIGNALS 65
static _Atomic(uintptr_t) lt_program_handlers[LT_SIGNALS];
static _Atomic(int) lt_program_siginfo[LT_SIGNALS];

static void lt_signal_dispatch(int sig, siginfo_t *info, void *uc) {
    uintptr_t handler = sig > 0 && sig < LT_SIGNALS ? atomic_load(&lt_program_handlers[sig]) : 0;
    uint32_t context = lt_context_enter();
    if (handler > (uintptr_t)SIG_IGN) ((void (*)(int, siginfo_t *, void *))handler)(sig, info, uc);
    lt_context_leave(context);
}

static int lt_signal_is_dispatched(int sig) {
    return sig > 0 && sig < LT_SIGNALS && sig != SIGKILL && sig != SIGSTOP && sig != SIGTRAP &&
           sig != LT_GLIBC_SIGCANCEL && sig != LT_GLIBC_SIGSETXID && sig != lt_trap_sync_signal();
}

static uintptr_t lt_action_handler(const struct sigaction *act) {
    return (act->sa_flags & SA_SIGINFO) ? (uintptr_t)act->sa_sigaction : (uintptr_t)act->sa_handler;
}

/* sigaction(2) for a dispatched signal: installs the dispatcher in front of
 * a program handler and reports the program's own handler back. */
static long lt_signal_dispatched_sigaction(int sig, const struct sigaction *act, struct sigaction *old) {
    uintptr_t previous = atomic_load(&lt_program_handlers[sig]);
    int previous_siginfo = atomic_load(&lt_program_siginfo[sig]);
    struct sigaction installed;
    /* The dispatcher itself (an action read with the raw call and installed
     * again) keeps the program's handler where it is. */
    if (act && lt_action_handler(act) > (uintptr_t)SIG_IGN &&
        lt_action_handler(act) != (uintptr_t)lt_signal_dispatch) {
        installed = *act;
        installed.sa_sigaction = lt_signal_dispatch;
        installed.sa_flags |= SA_SIGINFO;
        atomic_store(&lt_program_siginfo[sig], act->sa_flags & SA_SIGINFO);
        atomic_store(&lt_program_handlers[sig], lt_action_handler(act));
        act = &installed;
    }
    long r = lt_sys_libc_sigaction(sig, act, old);
    if (r < 0 && act == &installed) {
        atomic_store(&lt_program_handlers[sig], previous);
        atomic_store(&lt_program_siginfo[sig], previous_siginfo);
    }
    if (r == 0 && old && (old->sa_flags & SA_SIGINFO) && old->sa_sigaction == lt_signal_dispatch) {
        old->sa_flags = (old->sa_flags & ~SA_SIGINFO) | previous_siginfo;
        if (previous_siginfo) old->sa_sigaction = (void (*)(int, siginfo_t *, void *))previous;
        else old->sa_handler = (sighandler_t)previous;
    }
    return r;
}

void lt_sigmask_dispatch_installed_handlers(int sync_signal) {
    for (int sig = 1; sig < LT_SIGNALS; sig++) {
        if (!lt_signal_is_dispatched(sig) || sig == sync_signal) continue;
        struct sigaction current;
        if (lt_sys_libc_sigaction(sig, NULL, &current) < 0) continue;
        if ((current.sa_flags & SA_SIGINFO) && current.sa_sigaction == lt_signal_dispatch) continue;
        if (lt_action_handler(&current) <= (uintptr_t)SIG_IGN) continue;
        lt_signal_dispatched_sigaction(sig, &current, NULL);
    }
}

int sigaction(int sig, const struct sigaction *act, struct sigaction *old) {
    struct sigaction allowed;
    if (act) {
        allowed = *act;
        lt_sigmask_remove_protected(&allowed.sa_mask);
        act = &allowed;
    }
    if (lt_trap_intercept_sigaction(sig, act, old)) return 0;
    long r = lt_signal_is_dispatched(sig) ? lt_signal_dispatched_sigaction(sig, act, old)
                                          : lt_sys_libc_sigaction(sig, act, old);
    if (r < 0) {
        errno = (int)-r;
        return -1;
    }
    return 0;
}

/* glibc's signal(): BSD semantics (SA_RESTART, the signal blocked during
 * its handler). */
sighandler_t signal(int sig, sighandler_t handler) {
    struct sigaction act, old;
    memset(&act, 0, sizeof act);
    act.sa_handler = handler;
    sigemptyset(&act.sa_mask);
    sigaddset(&act.sa_mask, sig);
    act.sa_flags = SA_RESTART;
    if (sigaction(sig, &act, &old) < 0) return SIG_ERR;
    return old.sa_handler;
}

int lt_sigmask_interposition_active(void) {
    void *found = dlsym(RTLD_DEFAULT, "sigaction");
    return found == (void *)&sigaction;
}
