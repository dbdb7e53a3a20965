/* The seed's test, as a shared library the test process dlopens.
 *
 * lt_seed_site() carries a site (compile with -fpatchable-function-entry=5:
 * clang gives one 5-byte nop, gcc five 1-byte nops). Worker threads call it
 * in a tight loop, each counting the calls it makes in its own lt_counters.
 * The two counting targets are called *from the site*, at the function's
 * entry, so they must preserve every register: each is a single
 * `incq (%rdi)` on the caller's counters (rdi = the site function's first
 * argument), then `ret`.
 *
 * Workers (lt_seed_start):
 *   plain      calls the site in a loop
 *   blocked    same, after pthread_sigmask(SIG_BLOCK, <all signals>)
 *   handler    raises SIGUSR2 on itself in a loop; the handler, installed
 *              with sa_mask = all signals, makes LT_CALLS_PER_SIGNAL calls
 *
 * Every call is bracketed by two reads of lt_seed_epoch (written by the test
 * around each transition): bit 0 set = a transition is running; bit 1 = the
 * site is (or is becoming) enabled. A call whose two reads are equal and
 * even ran entirely inside a stable window. */
#define _GNU_SOURCE
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <string.h>
#include <unistd.h>
#include <sys/resource.h>
#include <sys/syscall.h>

#define LT_MAX_WORKERS 16
#define LT_CALLS_PER_SIGNAL 64

struct lt_counters {
    volatile long a;          /* offset 0: incremented by lt_seed_target_a */
    volatile long b;          /* offset 8: incremented by lt_seed_target_b */
    volatile long made;       /* calls of the site made by this thread */
    volatile long stable_on;  /* ... of which entirely inside an enabled window */
    volatile long stable_off; /* ... of which entirely inside a disabled window */
    volatile long trap_blocked;   /* 1 if SIGTRAP was found blocked in this thread */
    long kind;                /* 0 plain, 1 blocked, 2 handler */
    long pad;
};

/* The two counting targets. */
__asm__(
    ".text\n"
    ".globl lt_seed_target_a\n"
    ".type lt_seed_target_a,@function\n"
    "lt_seed_target_a:\n"
    "    incq 0(%rdi)\n"
    "    ret\n"
    ".size lt_seed_target_a, .-lt_seed_target_a\n"
    ".globl lt_seed_target_b\n"
    ".type lt_seed_target_b,@function\n"
    "lt_seed_target_b:\n"
    "    incq 8(%rdi)\n"
    "    ret\n"
    ".size lt_seed_target_b, .-lt_seed_target_b\n");

__attribute__((noinline)) void lt_seed_site(struct lt_counters *c) {
    __asm__ volatile("" ::"r"(c) : "memory");
}

/* Called through this pointer so the compiler cannot see through the call. */
void (*volatile lt_seed_site_pointer)(struct lt_counters *) = lt_seed_site;

atomic_long lt_seed_epoch;
static atomic_int lt_stop;
static struct lt_counters lt_counters[LT_MAX_WORKERS];
static pthread_t lt_threads[LT_MAX_WORKERS];
static int lt_worker_count;
static __thread struct lt_counters *lt_my_counters;

static void one_call(struct lt_counters *c) {
    long e1 = atomic_load_explicit(&lt_seed_epoch, memory_order_acquire);
    c->made++;
    lt_seed_site_pointer(c);
    long e2 = atomic_load_explicit(&lt_seed_epoch, memory_order_acquire);
    if (e1 == e2 && !(e1 & 1)) {
        if (e1 & 2) c->stable_on++; else c->stable_off++;
    }
}

static int trap_really_blocked(void) {
    uint64_t mask = 0;
    syscall(SYS_rt_sigprocmask, SIG_BLOCK, NULL, &mask, 8);
    return (mask >> (SIGTRAP - 1)) & 1;
}

static void on_sigusr2(int sig) {
    (void)sig;
    struct lt_counters *c = lt_my_counters;
    if (trap_really_blocked()) c->trap_blocked = 1;
    for (int i = 0; i < LT_CALLS_PER_SIGNAL; i++) one_call(c);
}

static void *worker(void *arg) {
    struct lt_counters *c = arg;
    lt_my_counters = c;
    /* Workers yield to the patching thread (more threads than cores): the
     * test then makes its 10,000 transitions in seconds, while workers keep
     * every other core busy and are preempted anywhere. */
    setpriority(PRIO_PROCESS, (id_t)syscall(SYS_gettid), 10);
    if (c->kind == 1) {
        sigset_t all;
        sigfillset(&all);
        pthread_sigmask(SIG_BLOCK, &all, NULL);
        if (trap_really_blocked()) c->trap_blocked = 1;
    }
    while (!atomic_load_explicit(&lt_stop, memory_order_relaxed)) {
        if (c->kind == 2) {
            pthread_kill(pthread_self(), SIGUSR2);
        } else {
            for (int i = 0; i < 256; i++) one_call(c);
        }
    }
    return NULL;
}

/* Starts `plain` plain workers, one blocked and one handler worker.
 * Returns the number of workers, or -1. */
int lt_seed_start(int plain) {
    if (plain + 2 > LT_MAX_WORKERS) return -1;
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_sigusr2;
    sigfillset(&sa.sa_mask);
    if (sigaction(SIGUSR2, &sa, NULL) != 0) return -1;
    memset(lt_counters, 0, sizeof lt_counters);
    atomic_store(&lt_stop, 0);
    lt_worker_count = plain + 2;
    for (int i = 0; i < lt_worker_count; i++) {
        lt_counters[i].kind = i < plain ? 0 : (i == plain ? 1 : 2);
        if (pthread_create(&lt_threads[i], NULL, worker, &lt_counters[i]) != 0) return -1;
    }
    return lt_worker_count;
}

void lt_seed_stop(void) {
    atomic_store(&lt_stop, 1);
    for (int i = 0; i < lt_worker_count; i++) pthread_join(lt_threads[i], NULL);
}

struct lt_counters *lt_seed_counters(int i) { return &lt_counters[i]; }

/* The test brackets each transition with these. */
void lt_seed_begin_transition(int enabled_after) {
    long e = atomic_load(&lt_seed_epoch);
    atomic_store(&lt_seed_epoch, ((e >> 2) + 1) << 2 | (enabled_after ? 2 : 0) | 1);
}
void lt_seed_end_transition(void) {
    long e = atomic_load(&lt_seed_epoch);
    atomic_store(&lt_seed_epoch, e & ~1L);
}

/* Sum of one target's counts over every worker. */
long lt_seed_total_a(void) {
    long s = 0;
    for (int i = 0; i < lt_worker_count; i++) s += lt_counters[i].a;
    return s;
}
long lt_seed_total_made(void) {
    long s = 0;
    for (int i = 0; i < lt_worker_count; i++) s += lt_counters[i].made;
    return s;
}
