/* Functions a test process loads (dlopen) and records from inside with
 * GraphRecording: inside_run(n) calls inside_fib(n) and starts 2 threads
 * that call inside_leaf 100 times each. inside_fib(n) calls inside_leaf at
 * each of its F(n+1) base cases; inside_fib is called 2*F(n+1)-1 times. */
#include <pthread.h>

#if defined(__clang__)
#define NOINLINE __attribute__((noinline))
#else
#define NOINLINE __attribute__((noinline, noclone))
#endif

static volatile long sink;

NOINLINE void inside_leaf(long x) { sink += x; }

NOINLINE long inside_fib(int n) {
    if (n < 2) {
        inside_leaf(n);
        return n;
    }
    return inside_fib(n - 1) + inside_fib(n - 2);
}

static void *inside_thread(void *argument) {
    (void)argument;
    for (long i = 0; i < 100; i++) inside_leaf(i);
    return 0;
}

NOINLINE long inside_run(int n) {
    pthread_t threads[2];
    for (int i = 0; i < 2; i++) pthread_create(&threads[i], 0, inside_thread, 0);
    long value = inside_fib(n);
    for (int i = 0; i < 2; i++) pthread_join(threads[i], 0);
    return value;
}
