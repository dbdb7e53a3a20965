/* Threads calling traced functions flat out, for the seed's scenario, live
 * patching and churn. Built as a shared library with an entry site on the
 * traced functions only (NOSITE on the harness). */
#include <pthread.h>
#include <stdint.h>
#include <string.h>
#include "livetrace.h"
#include "lt_tramp.h"

#define NOINLINE __attribute__((noinline, used))
#define NOSITE __attribute__((noinline, used, patchable_function_entry(0, 0)))
#define MAX_WORKERS 8

/* Per-thread progress, each on its own cache line: call i of thread t
 * increments started[t] to i before the call and finished[t] to i after. */
struct progress { uint64_t started, finished, last_old_index, old_calls, new_calls; char pad[24]; };
static struct progress progress[MAX_WORKERS] __attribute__((aligned(64)));
static pthread_t threads[MAX_WORKERS];
static int worker_count;
static volatile int stop_flag;
static __thread int worker_index;

uint64_t lt_load_count_a, lt_load_count_b;

NOINLINE long lt_load_f(long x) {
    __asm__ volatile("" ::: "memory");
    return x * 3 + 1;
}

/* Live patching: the buggy body and its fix. */
NOINLINE long lt_load_buggy(long x) {
    struct progress *p = &progress[worker_index];
    __atomic_store_n(&p->last_old_index, p->started, __ATOMIC_RELAXED);
    p->old_calls++;
    return x + 1;
}
NOSITE long lt_load_fixed(long x) {
    progress[worker_index].new_calls++;
    return x + 2;
}

NOSITE void lt_load_count_a_callback(uintptr_t ip, uintptr_t parent, lt_ops *ops, lt_regs *regs) {
    (void)ip; (void)parent; (void)ops; (void)regs;
    __atomic_fetch_add(&lt_load_count_a, 1, __ATOMIC_RELAXED);
}
NOSITE void lt_load_count_b_callback(uintptr_t ip, uintptr_t parent, lt_ops *ops, lt_regs *regs) {
    (void)ip; (void)parent; (void)ops; (void)regs;
    __atomic_fetch_add(&lt_load_count_b, 1, __ATOMIC_RELAXED);
}

/* A leaf callback that reads its ops through rdx (lt_ops.magic) and sets a
 * flag: after lt_ops_unregister returns, neither may change; a read of a
 * freed ops would show as a bad magic. */
uint64_t lt_load_leaf_calls, lt_load_leaf_bad_ops;
NOSITE void lt_load_ops_reader_callback(uintptr_t ip, uintptr_t parent, lt_ops *ops, lt_regs *regs) {
    (void)ip; (void)parent; (void)regs;
    uint64_t bad = *(volatile uint32_t *)&ops->magic != LT_OPS_MAGIC;
    __atomic_fetch_add(&lt_load_leaf_bad_ops, bad, __ATOMIC_RELAXED);
    __atomic_fetch_add(&lt_load_leaf_calls, 1, __ATOMIC_RELAXED);
}

struct worker_args { int index; int live; };
static struct worker_args args[MAX_WORKERS];

NOSITE static void *worker(void *arg) {
    struct worker_args *a = arg;
    worker_index = a->index;
    struct progress *p = &progress[a->index];
    long (*volatile f)(long) = a->live ? lt_load_buggy : lt_load_f;
    uint64_t i = 0;
    while (!__atomic_load_n(&stop_flag, __ATOMIC_RELAXED)) {
        i++;
        __atomic_store_n(&p->started, i, __ATOMIC_SEQ_CST);
        long r = f((long)i);
        if (a->live ? (r != (long)i + 1 && r != (long)i + 2) : r != (long)i * 3 + 1) __builtin_trap();
        __atomic_store_n(&p->finished, i, __ATOMIC_SEQ_CST);
    }
    return NULL;
}

/* Starts `count` workers calling lt_load_f (live = 0) or lt_load_buggy. */
NOSITE int lt_load_start(int count, int live) {
    if (count > MAX_WORKERS || worker_count != 0) return -1;
    memset(progress, 0, sizeof progress);
    __atomic_store_n(&stop_flag, 0, __ATOMIC_SEQ_CST);
    worker_count = count;
    for (int t = 0; t < count; t++) {
        args[t].index = t;
        args[t].live = live;
        if (pthread_create(&threads[t], NULL, worker, &args[t]) != 0) return -1;
    }
    /* Wait until every worker has made a call. */
    for (int t = 0; t < count; t++)
        while (__atomic_load_n(&progress[t].finished, __ATOMIC_SEQ_CST) == 0) {}
    return 0;
}

/* Stops and joins the workers; idempotent. Returns the workers stopped. */
NOSITE int lt_load_stop(void) {
    __atomic_store_n(&stop_flag, 1, __ATOMIC_SEQ_CST);
    for (int t = 0; t < worker_count; t++) pthread_join(threads[t], NULL);
    int stopped = worker_count;
    worker_count = 0;
    return stopped;
}

/* Copies the progress of every worker: five uint64 per worker, in the order
 * started, finished, last_old_index, old_calls, new_calls. */
NOSITE void lt_load_snapshot(uint64_t *out, int workers) {
    for (int t = 0; t < workers; t++) {
        out[5 * t + 0] = __atomic_load_n(&progress[t].started, __ATOMIC_SEQ_CST);
        out[5 * t + 1] = __atomic_load_n(&progress[t].finished, __ATOMIC_SEQ_CST);
        out[5 * t + 2] = __atomic_load_n(&progress[t].last_old_index, __ATOMIC_SEQ_CST);
        out[5 * t + 3] = __atomic_load_n(&progress[t].old_calls, __ATOMIC_SEQ_CST);
        out[5 * t + 4] = __atomic_load_n(&progress[t].new_calls, __ATOMIC_SEQ_CST);
    }
}
