/* The traced side of the function-graph benchmark: a tiny hot function with
 * an entry site, and the timing loop (no site).
 * Built by Benchmarks/graph-cost.sh: clang -O2 -fpatchable-function-entry=5 -shared -fPIC. */
#include <stdint.h>
#include <time.h>

#define NOINLINE __attribute__((noinline, used))
#define NOSITE __attribute__((noinline, used, patchable_function_entry(0, 0)))

NOINLINE int graph_bench_f(int x) {
    __asm__ volatile("");
    return x + 1;
}

/* Nanoseconds for `count` calls of graph_bench_f through a volatile pointer. */
NOSITE uint64_t graph_bench_loop(long count) {
    int (*volatile f)(int) = graph_bench_f;
    struct timespec a, b;
    int acc = 0;
    clock_gettime(CLOCK_MONOTONIC, &a);
    for (long i = 0; i < count; i++) acc = f(acc);
    clock_gettime(CLOCK_MONOTONIC, &b);
    __asm__ volatile("" ::"r"(acc));
    return (uint64_t)(b.tv_sec - a.tv_sec) * 1000000000u + (uint64_t)(b.tv_nsec - a.tv_nsec);
}
