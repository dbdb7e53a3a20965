/* trace-self.c — a C program that traces its own functions with the C API.
 *
 * Build (from the repository root, after `make lib`):
 *   clang -O2 -fpatchable-function-entry=5 Examples/trace-self.c \
 *     -I Sources/CLiveTraceShims/include -L .build/release -llivetrace \
 *     -Wl,-rpath,$PWD/.build/release -o trace-self
 *
 * Every function compiled with -fpatchable-function-entry=5 gets a 5-byte nop
 * at its entry; the callback itself opts out of having one. */
#include <stdio.h>
#include <stdlib.h>
#include "livetrace.h"

#define NOSITE __attribute__((patchable_function_entry(0, 0)))

/* Entries of fib, counted by fib itself. The recursion goes through a
 * volatile pointer so that the compiler keeps both calls as calls (it would
 * otherwise turn one of them into a loop, which enters no function). */
static unsigned long fib_entries;
long fib(long n);
static long (*volatile fib_recurse)(long) = fib;
__attribute__((noinline)) long fib(long n) {
    fib_entries++;
    return n < 2 ? n : fib_recurse(n - 1) + fib_recurse(n - 2);
}
__attribute__((noinline)) long square(long n) { return n * n; }

struct counts { unsigned long fib, square; };

NOSITE static void on_entry(uintptr_t ip, uintptr_t parent_ip, lt_ops *ops, lt_regs *regs) {
    (void)parent_ip;
    struct counts *c = lt_ops_data(ops);
    if (ip == (uintptr_t)fib) c->fib++;
    else if (ip == (uintptr_t)square) c->square++;
    (void)regs;
}

NOSITE static int check(int rc, const char *what) {
    if (rc != 0) {
        fprintf(stderr, "%s: %s\n", what, lt_strerror(rc));
        exit(1);
    }
    return rc;
}

NOSITE int main(void) {
    /* Called through volatile pointers: fib and square are pure, and the
     * compiler would otherwise reuse the first result instead of calling. */
    long (*volatile fib_call)(long) = fib;
    long (*volatile square_call)(long) = square;
    struct counts counts = {0, 0};
    lt_ops *ops = lt_ops_create(on_entry, &counts, LT_OPS_SAVE_REGS);
    if (!ops) { fprintf(stderr, "lt_ops_create failed\n"); return 1; }
    check(lt_ops_set_filter(ops, "fib"), "set_filter fib");
    check(lt_ops_set_filter(ops, "squ*"), "set_filter squ*");
    printf("untraced: fib(20) = %ld\n", fib_call(20));
    check(lt_ops_register(ops), "register");
    unsigned long entries_before = fib_entries;
    long f = fib_call(20), s = square_call(12);
    unsigned long entries = fib_entries - entries_before;
    check(lt_ops_unregister(ops), "unregister");
    printf("traced:   fib(20) = %ld, square(12) = %ld\n", f, s);
    printf("calls seen: fib %lu (of %lu entries), square %lu\n", counts.fib, entries, counts.square);
    fib_call(10); /* not counted: unregistered */
    printf("after unregister: fib %lu\n", counts.fib);
    lt_ops_destroy(ops);
    printf("bad filter: %s\n", lt_strerror(lt_ops_set_filter(NULL, "x")));
    return counts.fib == entries && counts.square == 1 ? 0 : 1;
}
