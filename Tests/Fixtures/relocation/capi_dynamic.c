/* A C program built without site flags that traces its own functions through
 * the C API after lt_include_dynamic(1): prints calls seen by the callback
 * and by the functions themselves, then the bytes restored or not. */
#include <livetrace.h>
#include <stdio.h>
#include <string.h>

static long own_square, own_twice, seen;

__attribute__((noinline)) long square(long x) { own_square++; return x * x; }
__attribute__((noinline)) long twice(long x) { own_twice++; return square(x) + square(x + 1); }

static void count(uintptr_t ip, uintptr_t parent_ip, lt_ops *ops, lt_regs *regs) {
    (void)ip; (void)parent_ip; (void)ops; (void)regs;
    __atomic_fetch_add(&seen, 1, __ATOMIC_RELAXED);
}

int main(void) {
    unsigned char before[8];
    memcpy(before, (void *)square, sizeof before);
    if (lt_include_dynamic(1) != 0) return 10;
    lt_ops *ops = lt_ops_create(count, NULL, 0);
    if (!ops || lt_ops_set_filter(ops, "square") || lt_ops_set_filter(ops, "twice")) return 11;
    int r = lt_ops_register(ops);
    if (r) { printf("register: %s\n", lt_strerror(r)); return 12; }
    long total = 0;
    for (long i = 0; i < 1000; i++) total += twice(i);
    if (lt_ops_unregister(ops)) return 13;
    lt_ops_destroy(ops);
    if (lt_restore_relocated()) return 14;
    printf("total %ld own %ld seen %ld restored %d\n", total, own_square + own_twice, seen,
           memcmp(before, (void *)square, sizeof before) == 0);
    return 0;
}
