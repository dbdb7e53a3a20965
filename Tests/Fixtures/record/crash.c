/* Crashes mid-run after a known number of calls: step 1000 times, then
 * crash_segv (argument "segv": a store through NULL) or crash_abort
 * (anything else: abort()). Every event up to the crash must be in the
 * trace: step 1000 calls, main and crash_* entered and unfinished. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#if defined(__clang__)
#define NOINLINE __attribute__((noinline))
#else
#define NOINLINE __attribute__((noinline, noclone))
#endif

static volatile long sink;

NOINLINE void step(int i) { sink += i; }

NOINLINE void crash_segv(void) { *(volatile int *)(sink & 0) = 1; }

NOINLINE void crash_abort(void) { abort(); }

int main(int argc, char **argv) {
    for (int i = 0; i < 1000; i++) step(i);
    printf("before the crash\n");
    fflush(stdout);
    if (argc > 1 && strcmp(argv[1], "segv") == 0) crash_segv();
    crash_abort();
    return 0;
}
