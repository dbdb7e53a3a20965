#ifndef LT_SIGMASK_H
#define LT_SIGMASK_H
/* Interposition of the signal-mask and signal-disposition entry points, so
 * that no thread ever has SIGTRAP (or the patcher's sync signal) blocked: the
 * kernel kills a process whose thread executes int3 with SIGTRAP blocked.
 *
 * lt_sigmask.c defines, with default visibility:
 *   pthread_sigmask, sigprocmask   the new mask never contains SIGTRAP or the
 *                                  sync signal (glibc's own rule for its
 *                                  internal signals 32/33 is kept too)
 *   sigaction                      sa_mask never contains them; a program
 *                                  handler runs behind a dispatcher that gives
 *                                  it an execution context of its own
 *                                  (lt_context.h); for SIGTRAP
 *                                  and the sync signal, while LiveTrace's
 *                                  handler is installed, the program's handler
 *                                  is recorded and forwarded to instead of
 *                                  replacing ours
 *   signal                         through the sigaction above
 *
 * For these definitions to win over glibc's for calls from shared libraries,
 * the executable must export them (--export-dynamic-symbol=...; Package.swift
 * does it for the test executable). A preloaded library wins by load order.
 *
 * Out of reach (documented in docs/ARCHITECTURE.md): raw rt_sigprocmask /
 * rt_sigaction system calls, glibc-internal callers that use hidden aliases
 * (siglongjmp's mask restore, setcontext/swapcontext, posix_spawn,
 * sigsuspend/pselect/ppoll/epoll_pwait/signalfd masks for their duration),
 * and the old mask reported back: it shows SIGTRAP unblocked. The patcher
 * additionally checks its handler before every batch and reinstalls it. */

/* Puts the dispatcher (lt_sigmask.c: each program handler runs in an
 * execution context of its own, lt_context.h) in front of every handler
 * installed before LiveTrace's interposition saw it; the patcher calls it
 * when it installs its own handlers. */
void lt_sigmask_dispatch_installed_handlers(int sync_signal);

/* Removes the protected signals from `set` (exported for tests). */
#include <signal.h>
void lt_sigmask_remove_protected(sigset_t *set);

/* 1 when the interposed sigaction is the one this process's shared
 * libraries reach (the symbol lookup resolves to ours). */
int lt_sigmask_interposition_active(void);

#endif
