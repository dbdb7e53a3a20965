/* The traced side of the trampoline and function-graph benchmarks: a tiny
 * hot function with an entry site, the timing loop (no site), an empty C
 * callback and a `counter++` one (no site; both small leaf functions, so
 * the registry gives them a leaf stub unless LIVETRACE_NO_LEAF=1). Built by Benchmarks/tramp-cost.sh and graph-cost.sh:
 * clang -O2 -fpatchable-function-entry=5 -shared -fPIC. */
#include <stdint.h>
#include <time.h>

#define NOINLINE __attribute__((noinline, used))
#define NOSITE __attribute__((noinline, used, patchable_function_entry(0, 0)))

NOINLINE int bench_f(int x) {
    __asm__ volatile("");
    return x + 1;
}

/* Nanoseconds for `count` calls of bench_f through a volatile pointer. */
NOSITE uint64_t bench_loop(long count) {
    int (*volatile f)(int) = bench_f;
    struct timespec a, b;
    int acc = 0;
    clock_gettime(CLOCK_MONOTONIC, &a);
    for (long i = 0; i < count; i++) acc = f(acc);
    clock_gettime(CLOCK_MONOTONIC, &b);
    __asm__ volatile("" ::"r"(acc));
    return (uint64_t)(b.tv_sec - a.tv_sec) * 1000000000u + (uint64_t)(b.tv_nsec - a.tv_nsec);
}

NOSITE void bench_empty_callback(uintptr_t ip, uintptr_t parent_ip, void *ops, void *regs) {
    (void)ip; (void)parent_ip; (void)ops; (void)regs;
}

uint64_t bench_counter;

NOSITE void bench_counter_callback(uintptr_t ip, uintptr_t parent_ip, void *ops, void *regs) {
    (void)ip; (void)parent_ip; (void)ops; (void)regs;
    bench_counter++;
}
