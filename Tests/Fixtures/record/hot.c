/* Many calls, for the full-disk test: hot(i) ARG times (default 2 million). */
#include <stdio.h>
#include <stdlib.h>

#if defined(__clang__)
#define NOINLINE __attribute__((noinline))
#else
#define NOINLINE __attribute__((noinline, noclone))
#endif

static volatile long sink;

NOINLINE void hot(long i) { sink += i; }

int main(int argc, char **argv) {
    long count = argc > 1 ? atol(argv[1]) : 2000000;
    for (long i = 0; i < count; i++) hot(i);
    printf("%ld calls\n", count);
    return 0;
}
