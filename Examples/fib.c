/* A small example program for the README's main command. */
#include <stdio.h>
#include <stdlib.h>

static long fib(int n) { return n < 2 ? n : fib(n - 1) + fib(n - 2); }

__attribute__((noinline)) long sum_fibs(int count) {
    long total = 0;
    for (int i = 0; i < count; i++) total += fib(i);
    return total;
}

int main(int argc, char **argv) {
    int count = argc > 1 ? atoi(argv[1]) : 20;
    printf("sum of the first %d Fibonacci numbers: %ld\n", count, sum_fibs(count));
    return 0;
}
