/* live-patch.c — live patching: threads call a buggy function in a loop; the
 * program replaces it with the fixed one while they run. From the moment
 * lt_replace_function returns, no call runs the buggy body.
 *
 * Build (from the repository root, after `make lib`):
 *   clang -O2 -pthread -fpatchable-function-entry=5 Examples/live-patch.c \
 *     -I Sources/CLiveTraceShims/include -L .build/release -llivetrace \
 *     -Wl,-rpath,$PWD/.build/release -o live-patch */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>
#include "livetrace.h"

#define NOSITE __attribute__((patchable_function_entry(0, 0)))
#define THREADS 2

static volatile int stop;
static unsigned long buggy_calls[THREADS], fixed_calls[THREADS];
static volatile int patched;                  /* set once the replacement returned */
static unsigned long buggy_after_patch[THREADS];
static __thread int me;

/* The bug: the price with tax is computed with the wrong rate. */
__attribute__((noinline)) long price_with_tax(long cents) {
    buggy_calls[me]++;
    if (patched) buggy_after_patch[me]++;     /* only calls already inside may get here */
    return cents * 110 / 100;
}
NOSITE __attribute__((noinline)) long price_with_tax_fixed(long cents) {
    fixed_calls[me]++;
    return cents * 120 / 100;
}

NOSITE static void *worker(void *arg) {
    me = (int)(long)arg;
    long (*volatile price)(long) = price_with_tax;
    while (!stop) {
        int was_patched = patched;
        long p = price(1000);
        if (was_patched && p != 1200) {       /* started after the switch: must be fixed */
            fprintf(stderr, "thread %d: old body after the switch (%ld)\n", me, p);
            exit(1);
        }
    }
    return NULL;
}

NOSITE int main(void) {
    pthread_t threads[THREADS];
    for (long t = 0; t < THREADS; t++) pthread_create(&threads[t], NULL, worker, (void *)t);
    usleep(100 * 1000);
    int error = 0;
    lt_ops *patch = lt_replace_function("price_with_tax", (uintptr_t)price_with_tax_fixed, &error);
    if (!patch) { fprintf(stderr, "replace: %s\n", lt_strerror(error)); return 1; }
    patched = 1;
    usleep(200 * 1000);
    stop = 1;
    unsigned long buggy = 0, fixed = 0, late = 0;
    for (int t = 0; t < THREADS; t++) {
        pthread_join(threads[t], NULL);
        buggy += buggy_calls[t];
        fixed += fixed_calls[t];
        late += buggy_after_patch[t];
    }
    printf("calls before the switch (buggy body): %lu\n", buggy);
    printf("calls after the switch (fixed body):  %lu\n", fixed);
    printf("buggy-body entries after the switch:  %lu (at most one per thread, already past the entry)\n", late);
    lt_ops_destroy(patch);
    printf("restored: price_with_tax(1000) = %ld\n", price_with_tax(1000));
    return late <= THREADS && fixed > 0 ? 0 : 1;
}
