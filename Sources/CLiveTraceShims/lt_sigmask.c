/* Interposed signal-mask and sigaction entry points; see
 * include/lt_sigmask.h for what they promise and what stays out of reach.
 * All are async-signal-safe (the originals are): raw system calls for the
 * masks, glibc's __sigaction for dispositions. */
#define _GNU_SOURCE
#include "lt_sigmask.h"
#include "lt_sys.h"
#include "lt_trap.h"
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

int sigaction(int sig, const struct sigaction *act, struct sigaction *old) {
    struct sigaction allowed;
    if (act) {
        allowed = *act;
        lt_sigmask_remove_protected(&allowed.sa_mask);
        act = &allowed;
    }
    if (lt_trap_intercept_sigaction(sig, act, old)) return 0;
    long r = lt_sys_libc_sigaction(sig, act, old);
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
