/* The program both tracers record in Benchmarks/uftrace-compare.sh: main
 * calls the hot leaf function `hot` COUNT times (argv[1]). */
#include <stdio.h>
#include <stdlib.h>

static volatile long sink;

__attribute__((noinline, noclone)) void hot(long i) { sink += i; }

int main(int argc, char **argv) {
    long count = argc > 1 ? atol(argv[1]) : 1000000;
    for (long i = 0; i < count; i++) hot(i);
    printf("%ld\n", (long)sink);
    return 0;
}
