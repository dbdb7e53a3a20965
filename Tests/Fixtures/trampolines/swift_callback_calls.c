/* The traced side of SwiftCallbackTests: one function with an entry site,
 * called a known number of times by each of several real threads. Built by
 * TrampolineFixtures.library (clang -O2 -fpatchable-function-entry=5). */
#include <pthread.h>

#define NOSITE __attribute__((noinline, used, patchable_function_entry(0, 0)))
#define MAX_THREADS 16

__attribute__((noinline, used)) long lt_swiftcb_target(long x) {
    __asm__ volatile("");
    return x + 1;
}

NOSITE static void *call_target(void *arg) {
    long calls = (long)arg, sum = 0;
    long (*volatile target)(long) = lt_swiftcb_target;
    for (long i = 0; i < calls; i++) sum = target(sum);
    return (void *)sum;
}

/* Runs `threads` threads (at most MAX_THREADS) that call lt_swiftcb_target
 * `calls` times each; returns the calls made, or -1 if a thread could not
 * be started. */
NOSITE long lt_swiftcb_run(int threads, long calls) {
    pthread_t ids[MAX_THREADS];
    if (threads < 1 || threads > MAX_THREADS) return -1;
    long made = 0;
    int started = 0;
    for (; started < threads; started++)
        if (pthread_create(&ids[started], NULL, call_target, (void *)calls) != 0) break;
    for (int i = 0; i < started; i++) {
        void *result;
        pthread_join(ids[i], &result);
        made += (long)result;
    }
    return started == threads ? made : -1;
}
