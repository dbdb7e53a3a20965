/* A real program recorded end to end, before trampolines exist: gcc's
 * -finstrument-functions calls __cyg_profile_func_enter/exit around every
 * function of this file, and those hooks write through the real writer
 * layer (lt_record.c and the inline functions of lt_ring.h, compiled in
 * without instrumentation: the writer must never trace itself). The ring area
 * comes from LIVETRACE_RINGS, attached before main as the LD_PRELOAD shim
 * will do it.
 *
 * It prints "ready", waits for a line on stdin (the recorder captures its
 * memory map meanwhile), then: main computes fib(15); two threads each run
 * worker(12), which computes fib(12) three times.
 *   fib calls: C(n) = 2 * F(n + 1) - 1, so 1973 + 2 * 3 * 465 = 4763.
 */
#include "lt_record.h"
#include <pthread.h>
#include <stdio.h>

static __thread uint32_t depth;

__attribute__((no_instrument_function)) void __cyg_profile_func_enter(void *function, void *call_site) {
    (void)call_site;
    lt_record_entry((uintptr_t)function, depth++);
}

__attribute__((no_instrument_function)) void __cyg_profile_func_exit(void *function, void *call_site) {
    (void)call_site;
    lt_record_exit((uintptr_t)function, --depth, 0);
}

static int attach_status;

__attribute__((constructor, no_instrument_function)) static void attach_before_main(void) {
    attach_status = lt_record_attach_env();
}

int fib(int n) { return n < 2 ? n : fib(n - 1) + fib(n - 2); }

void *worker(void *argument) {
    long n = (long)argument, sum = 0;
    for (int i = 0; i < 3; i++) sum += fib((int)n);
    return (void *)sum;
}

int main(void) {
    if (attach_status != 0) {
        fprintf(stderr, "lt_record_attach_env: %d\n", attach_status);
        return 3;
    }
    printf("ready\n");
    fflush(stdout);
    char line[16];
    if (!fgets(line, sizeof line, stdin)) return 4;
    int main_result = fib(15);
    pthread_t threads[2];
    for (long t = 0; t < 2; t++) pthread_create(&threads[t], NULL, worker, (void *)12L);
    long results[2];
    for (int t = 0; t < 2; t++) {
        void *r;
        pthread_join(threads[t], &r);
        results[t] = (long)r;
    }
    printf("fib(15) = %d, workers %ld %ld\n", main_result, results[0], results[1]);
    return 0;
}
