/* Many small functions with gcc's five 1-byte nops at entry
 * (-fpatchable-function-entry=5 with gcc), called in a tight loop by worker
 * threads, so that threads are often stopped *between* the nops when the
 * patcher normalizes them. Each function takes the caller's counters; the
 * counting target (incq (%rdi); ret) preserves every register. */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdatomic.h>
#include <string.h>
#include <unistd.h>
#include <sys/syscall.h>

#define LT_SITES 64
#define LT_MAX_WORKERS 8

struct lt_counters {
    volatile long a;
    volatile long made;
};

__asm__(
    ".text\n"
    ".globl lt_nop_target\n"
    ".type lt_nop_target,@function\n"
    "lt_nop_target:\n"
    "    incq 0(%rdi)\n"
    "    ret\n"
    ".size lt_nop_target, .-lt_nop_target\n");

#define SITE(n) \
    __attribute__((noinline)) void lt_nop_site_##n(struct lt_counters *c) { __asm__ volatile("" ::"r"(c) : "memory"); }
#define SITE8(n) SITE(n##0) SITE(n##1) SITE(n##2) SITE(n##3) SITE(n##4) SITE(n##5) SITE(n##6) SITE(n##7)
SITE8(0) SITE8(1) SITE8(2) SITE8(3) SITE8(4) SITE8(5) SITE8(6) SITE8(7)

#define REF(n) lt_nop_site_##n,
#define REF8(n) REF(n##0) REF(n##1) REF(n##2) REF(n##3) REF(n##4) REF(n##5) REF(n##6) REF(n##7)
void (*const lt_nop_sites[LT_SITES])(struct lt_counters *) = {
    REF8(0) REF8(1) REF8(2) REF8(3) REF8(4) REF8(5) REF8(6) REF8(7)
};

int lt_nop_site_count(void) { return LT_SITES; }
void *lt_nop_site_address(int i) { return (void *)lt_nop_sites[i]; }

static atomic_int lt_stop;
static struct lt_counters lt_counters[LT_MAX_WORKERS];
static pthread_t lt_threads[LT_MAX_WORKERS];
static int lt_workers;
static atomic_int lt_tids[LT_MAX_WORKERS];

static void *worker(void *arg) {
    struct lt_counters *c = arg;
    atomic_store(&lt_tids[c - lt_counters], (int)syscall(SYS_gettid));
    while (!atomic_load_explicit(&lt_stop, memory_order_relaxed)) {
        for (int i = 0; i < LT_SITES; i++) {
            c->made++;
            lt_nop_sites[i](c);
        }
    }
    return NULL;
}

int lt_nop_start(int n) {
    if (n > LT_MAX_WORKERS) return -1;
    memset(lt_counters, 0, sizeof lt_counters);
    for (int i = 0; i < LT_MAX_WORKERS; i++) atomic_store(&lt_tids[i], 0);
    atomic_store(&lt_stop, 0);
    lt_workers = n;
    for (int i = 0; i < n; i++)
        if (pthread_create(&lt_threads[i], NULL, worker, &lt_counters[i]) != 0) return -1;
    return n;
}

void lt_nop_stop(void) {
    atomic_store(&lt_stop, 1);
    for (int i = 0; i < lt_workers; i++) pthread_join(lt_threads[i], NULL);
}

/* The thread id of worker i, 0 until it has started. */
int lt_nop_worker_tid(int i) { return atomic_load(&lt_tids[i]); }

long lt_nop_made(int i) { return lt_counters[i].made; }
long lt_nop_counted(int i) { return lt_counters[i].a; }
