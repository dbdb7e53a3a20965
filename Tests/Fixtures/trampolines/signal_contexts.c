/* Calls from signal handlers that interrupt the tracer: worker threads call
 * the traced lt_sig_f in bursts, and a per-thread POSIX timer (SIGALRM,
 * every 100 us, delivered to that very thread) runs a handler that calls
 * the traced lt_sig_g. Worker 0 blocks every signal (LiveTrace keeps
 * SIGTRAP and its sync signal open). The program counts what it calls, so a
 * tracer's counts can be checked against numbers that share no code with
 * it. Built as a shared library with entry sites on lt_sig_f, lt_sig_g and
 * lt_sig_h only (NOSITE elsewhere). */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/syscall.h>
#include "livetrace.h"

#define NOINLINE __attribute__((noinline, used))
#define NOSITE __attribute__((noinline, used, patchable_function_entry(0, 0)))
#define MAX_WORKERS 8

static pthread_t threads[MAX_WORKERS];
static int worker_count;
static volatile int stop_flag;
static volatile int started_count;

/* What the program called, counted by the program: f by the workers, g by
 * the handlers (each handler run calls g twice), h by lt_sig_call_h. */
uint64_t lt_sig_made_f, lt_sig_made_g, lt_sig_made_h, lt_sig_handler_runs;
/* What the callbacks saw. */
uint64_t lt_sig_seen_a, lt_sig_seen_b, lt_sig_seen_nested;

NOINLINE long lt_sig_f(long x) {
    __asm__ volatile("" ::: "memory");
    return x * 3 + 1;
}
NOINLINE long lt_sig_g(long x) {
    __asm__ volatile("" ::: "memory");
    return x ^ 0x55;
}
NOINLINE long lt_sig_h(long x) {
    __asm__ volatile("" ::: "memory");
    return x + 7;
}

NOSITE void lt_sig_count_a(uintptr_t ip, uintptr_t parent, lt_ops *ops, lt_regs *regs) {
    (void)ip; (void)parent; (void)ops; (void)regs;
    __atomic_fetch_add(&lt_sig_seen_a, 1, __ATOMIC_RELAXED);
}
NOSITE void lt_sig_count_b(uintptr_t ip, uintptr_t parent, lt_ops *ops, lt_regs *regs) {
    (void)ip; (void)parent; (void)ops; (void)regs;
    __atomic_fetch_add(&lt_sig_seen_b, 1, __ATOMIC_RELAXED);
}
/* A callback that calls a traced function in its own context: recursion,
 * which the guard skips and counts. */
NOSITE void lt_sig_calls_traced(uintptr_t ip, uintptr_t parent, lt_ops *ops, lt_regs *regs) {
    (void)ip; (void)parent; (void)ops; (void)regs;
    __atomic_fetch_add(&lt_sig_seen_nested, 1, __ATOMIC_RELAXED);
    lt_sig_f(1);
}

NOSITE static void on_alarm(int signal) {
    (void)signal;
    int saved = errno;
    lt_sig_g(1);
    lt_sig_g(2);
    __atomic_fetch_add(&lt_sig_made_g, 2, __ATOMIC_RELAXED);
    __atomic_fetch_add(&lt_sig_handler_runs, 1, __ATOMIC_RELAXED);
    errno = saved;
}

/* A timer that sends SIGALRM to the calling thread every `period_ns`. */
NOSITE static int thread_timer(timer_t *timer, long period_ns) {
    struct sigevent event;
    memset(&event, 0, sizeof event);
    event.sigev_notify = SIGEV_THREAD_ID;
    event.sigev_signo = SIGALRM;
    event._sigev_un._tid = (pid_t)syscall(SYS_gettid);
    if (timer_create(CLOCK_MONOTONIC, &event, timer) != 0) return -1;
    struct itimerspec spec = {{0, period_ns}, {0, period_ns}};
    return timer_settime(*timer, 0, &spec, NULL);
}

NOSITE static void *worker(void *argument) {
    int index = (int)(intptr_t)argument;
    timer_t timer;
    int timed = 0;
    if (index == 0) {
        sigset_t all;
        sigfillset(&all);
        pthread_sigmask(SIG_BLOCK, &all, NULL);
    } else {
        timed = thread_timer(&timer, 100000) == 0;
    }
    __atomic_fetch_add(&started_count, 1, __ATOMIC_RELEASE);
    uint64_t made = 0;
    long sink = 0;
    /* Bursts of calls with a short sleep between them: the thread that
     * attaches and detaches gets a core on a two-core machine. */
    struct timespec pause = {0, 50000};
    while (!stop_flag) {
        for (int burst = 0; burst < 20000; burst++) {
            sink += lt_sig_f((long)made);
            made++;
        }
        nanosleep(&pause, NULL);
    }
    if (timed) timer_delete(timer);
    __atomic_fetch_add(&lt_sig_made_f, made, __ATOMIC_RELAXED);
    return (void *)sink;
}

/* Starts `count` workers; returns 0, or -1 when the handler could not be
 * installed or a thread not started. */
NOSITE int lt_sig_start(int count) {
    if (count < 1 || count > MAX_WORKERS) return -1;
    stop_flag = 0;
    started_count = 0;
    lt_sig_made_f = lt_sig_made_g = lt_sig_made_h = lt_sig_handler_runs = 0;
    lt_sig_seen_a = lt_sig_seen_b = lt_sig_seen_nested = 0;
    struct sigaction action;
    memset(&action, 0, sizeof action);
    action.sa_handler = on_alarm;
    action.sa_flags = SA_RESTART;
    sigemptyset(&action.sa_mask);
    if (sigaction(SIGALRM, &action, NULL) != 0) return -1;
    for (worker_count = 0; worker_count < count; worker_count++)
        if (pthread_create(&threads[worker_count], NULL, worker, (void *)(intptr_t)worker_count) != 0) return -1;
    while (__atomic_load_n(&started_count, __ATOMIC_ACQUIRE) < count) sched_yield();
    return 0;
}

/* Stops and joins the workers; SIGALRM back to its default only after every
 * timer is gone. */
NOSITE int lt_sig_stop(void) {
    stop_flag = 1;
    for (int i = 0; i < worker_count; i++) pthread_join(threads[i], NULL);
    worker_count = 0;
    struct sigaction action;
    memset(&action, 0, sizeof action);
    action.sa_handler = SIG_IGN;
    sigaction(SIGALRM, &action, NULL);
    return 0;
}

/* Calls lt_sig_h `count` times from the calling thread. */
NOSITE void lt_sig_call_h(int count) {
    for (int i = 0; i < count; i++) {
        lt_sig_h(i);
        lt_sig_made_h++;
    }
}

/* What sigaction reports for SIGALRM now: 1 when it is `on_alarm` (the
 * program's own handler, not LiveTrace's dispatcher), with the program's
 * flags (no SA_SIGINFO). */
NOSITE int lt_sig_reports_own_handler(void) {
    struct sigaction action;
    memset(&action, 0, sizeof action);
    action.sa_handler = on_alarm;
    action.sa_flags = SA_RESTART;
    sigemptyset(&action.sa_mask);
    struct sigaction old;
    if (sigaction(SIGALRM, &action, NULL) != 0 || sigaction(SIGALRM, NULL, &old) != 0) return 0;
    int own = old.sa_handler == on_alarm && !(old.sa_flags & SA_SIGINFO);
    action.sa_handler = SIG_IGN;
    sigaction(SIGALRM, &action, NULL);
    return own;
}

/* A handler installed behind LiveTrace's back (the raw system call), as a
 * library loaded before LiveTrace or a process attached to later has them. */
uint64_t lt_sig_usr1_runs;
NOSITE void lt_sig_usr1_handler(int signal) {
    (void)signal;
    __atomic_fetch_add(&lt_sig_usr1_runs, 1, __ATOMIC_RELAXED);
}
