/* Discovery fixture: every function below except `not_instrumented` gets an
 * entry site from the compiler flags the tests use; `not_instrumented` opts
 * out of both -pg (no_instrument_function) and -fpatchable-function-entry
 * (patchable_function_entry(0, 0)). Built as an executable (with main) and as
 * a shared library (-DFIXTURE_LIBRARY, no main). */
#include <stdio.h>

#define KEEP __attribute__((noinline, used))

volatile int fixture_sink;

KEEP int fixture_leaf(int x) { fixture_sink += x; return x * 3; }

KEEP static int fixture_static_helper(int x) { return fixture_leaf(x) + 1; }

KEEP int fixture_caller(int x) { return fixture_static_helper(x) + fixture_leaf(x + 1); }

KEEP double fixture_float(double a, double b) { fixture_sink++; return a * b + 0.5; }

__attribute__((noinline, used, no_instrument_function, patchable_function_entry(0, 0)))
int not_instrumented(int x) { fixture_sink -= x; return x; }

KEEP int fixture_entry(int n) {
    int total = 0;
    for (int i = 0; i < n; i++) total += fixture_caller(i) + not_instrumented(i);
    return total + (int)fixture_float(n, 2.0);
}

#ifndef FIXTURE_LIBRARY
int main(int argc, char **argv) {
    (void)argv;
    printf("%d\n", fixture_entry(argc + 3));
    return 0;
}
#endif
