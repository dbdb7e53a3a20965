/* The program both tracers record in Benchmarks/uftrace-compare.sh: main
 * calls the hot leaf function `hot` COUNT times (argv[1]). With HOT_PIN_CPU=N
 * in its environment it first pins itself to CPU N (sched_setaffinity), so
 * the benchmark can put the drain on the same core or on the other one. */
#define _GNU_SOURCE
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>

static volatile long sink;

__attribute__((noinline, noclone)) void hot(long i) { sink += i; }

int main(int argc, char **argv) {
    long count = argc > 1 ? atol(argv[1]) : 1000000;
    const char *pin = getenv("HOT_PIN_CPU");
    if (pin != NULL) {
        cpu_set_t set;
        CPU_ZERO(&set);
        CPU_SET(atoi(pin), &set);
        if (sched_setaffinity(0, sizeof set, &set) != 0) { perror("sched_setaffinity"); return 1; }
    }
    for (long i = 0; i < count; i++) hot(i);
    printf("%ld\n", (long)sink);
    return 0;
}
