/* A program whose call tree the trace readers show, one thread at a time
 * (threads are joined before the next starts, so the order is fixed):
 *   main -> fact(4) (recursion: four nested calls)
 *        -> two threads, each thread_body -> leaf
 *        -> raise(SIGUSR1): on_signal -> note, on the main thread
 *        -> jumper -> deeper -> leaf, then longjmp back into main
 *           (deeper and jumper are left by longjmp: unwound)
 *        -> with argument "crash": doomed -> leaf, then a store through
 *           NULL (SIGSEGV): main and doomed stay unfinished.
 * Prints "done" and exits 0 otherwise. */
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>

#if defined(__clang__)
#define NOINLINE __attribute__((noinline))
#else
#define NOINLINE __attribute__((noinline, noclone))
#endif

static volatile long sink;
static jmp_buf jump;

NOINLINE void leaf(int x) { sink += x; }

NOINLINE long fact(int n) {
    if (n <= 1) return 1;
    return n * fact(n - 1);
}

NOINLINE void *thread_body(void *argument) {
    leaf((int)(long)argument);
    return NULL;
}

NOINLINE void note(int signal) { sink += signal; }

NOINLINE void on_signal(int signal) { note(signal); }

NOINLINE void deeper(void) {
    leaf(1);
    longjmp(jump, 1);
}

NOINLINE void jumper(void) {
    deeper();
    leaf(2);
}

NOINLINE void doomed(void) {
    leaf(3);
    *(volatile int *)(sink & 0) = 1;
}

int main(int argc, char **argv) {
    sink = fact(4);
    for (long i = 0; i < 2; i++) {
        pthread_t thread;
        pthread_create(&thread, NULL, thread_body, (void *)i);
        pthread_join(thread, NULL);
    }
    signal(SIGUSR1, on_signal);
    raise(SIGUSR1);
    if (setjmp(jump) == 0) jumper();
    if (argc > 1 && strcmp(argv[1], "crash") == 0) doomed();
    printf("done\n");
    return 0;
}
