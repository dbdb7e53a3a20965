/* A plain C program that records its own function graph through the C API
 * of liblivetrace.so (livetrace.h, "Recording from inside").
 *
 *   trace_inside DIR   records DIR, then checks the API's bad-input answers
 *                      (DIR-busy must exist and hold a file that is not a
 *                      trace), then records DIR-atexit and exits without
 *                      lt_trace_stop
 *   trace_inside DIR cycles N
 *                      2 threads call tr_fib(5) without pause while the
 *                      main thread records N times, ~5 ms each, into
 *                      DIR-0 ... DIR-(N-1): starts and stops race with the
 *                      calls; prints "cycle I START STOP" for each
 *   trace_inside DIR nested
 *                      run under `livetrace record`: lt_trace_start finds
 *                      the recording of the shim and must say so; then the
 *                      same call tree runs (recorded by the shim)
 *   trace_inside DIR signals
 *                      while recording, blocks SIGUSR1 in its only thread,
 *                      sends it to the process and takes it with
 *                      sigtimedwait: the drain thread must not take it
 *   trace_inside DIR fork
 *                      while recording, forks: the child calls tr_leaf 5
 *                      times, its lt_trace_stop is refused, and its calls
 *                      are in the parent's trace, in a stream of its own
 *
 * Known call tree, recorded with filter "tr_work;tr_fib;tr_leaf;
 * tr_thread_body;tr_hidden" (spaces around items) minus notrace "tr_hid*":
 *   main thread:  tr_work(6) = tr_fib(6) + tr_hidden(); tr_fib(n) calls
 *                 tr_leaf at each of its F(n+1) base cases, so tr_fib runs
 *                 2*F(7)-1 = 25 times and tr_leaf 13 times; then tr_work
 *                 joins the second thread.
 *   second thread: tr_thread_body calls tr_leaf 100 times.
 * After lt_trace_stop, tr_leaf is called again: that call is not recorded.
 *
 * Every line of output is "NAME VALUE"; the test reads them. The program
 * exits 0 unless something crashed it. */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <livetrace.h>

#if defined(__clang__)
#define NOINLINE __attribute__((noinline))
#else
#define NOINLINE __attribute__((noinline, noclone))
#endif

static volatile long sink;

NOINLINE void tr_leaf(long x) { sink += x; }

NOINLINE void tr_hidden(void) { sink += 1; }

NOINLINE long tr_fib(int n) {
    if (n < 2) {
        tr_leaf(n);
        return n;
    }
    return tr_fib(n - 1) + tr_fib(n - 2);
}

NOINLINE void *tr_thread_body(void *argument) {
    (void)argument;
    for (long i = 0; i < 100; i++) tr_leaf(i);
    return 0;
}

static int stop_busy;

NOINLINE void *tr_busy(void *argument) {
    (void)argument;
    while (!__atomic_load_n(&stop_busy, __ATOMIC_ACQUIRE)) tr_fib(5);
    return 0;
}

NOINLINE long tr_work(int n, pthread_t thread) {
    long value = tr_fib(n);
    tr_hidden();
    pthread_join(thread, 0);
    return value;
}

static void check(const char *name, int code) {
    printf("%s %d %s\n", name, code, code == 0 ? "-" : lt_strerror(code));
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: trace_inside DIR\n");
        return 2;
    }
    const char *directory = argv[1];
    char other[4096];
    if (argc > 2 && strcmp(argv[2], "signals") == 0) {
        check("start", lt_trace_start(directory, "tr_*", 0, 0));
        sigset_t usr1;
        sigemptyset(&usr1);
        sigaddset(&usr1, SIGUSR1);
        pthread_sigmask(SIG_BLOCK, &usr1, 0);
        kill(getpid(), SIGUSR1);
        struct timespec timeout = {5, 0};
        printf("sigwait %d\n", sigtimedwait(&usr1, 0, &timeout));
        tr_leaf(1);
        check("stop", lt_trace_stop(0));
        return 0;
    }
    if (argc > 2 && strcmp(argv[2], "fork") == 0) {
        check("start", lt_trace_start(directory, "tr_*", 0, 0));
        tr_leaf(1);
        fflush(stdout);
        pid_t child = fork();
        if (child == 0) {
            for (long i = 0; i < 5; i++) tr_leaf(i);
            check("child_stop", lt_trace_stop(0));
            fflush(stdout);
            exit(0); /* the exit hook leaves the parent's recording alone */
        }
        int status = -1;
        waitpid(child, &status, 0);
        printf("child_status %d\n", status);
        tr_leaf(2);
        check("stop", lt_trace_stop(0));
        return 0;
    }
    if (argc > 3 && strcmp(argv[2], "cycles") == 0) {
        int cycles = atoi(argv[3]);
        pthread_t workers[2];
        for (int i = 0; i < 2; i++) pthread_create(&workers[i], 0, tr_busy, 0);
        for (int i = 0; i < cycles; i++) {
            snprintf(other, sizeof other, "%s-%d", directory, i);
            int started = lt_trace_start(other, "tr_fib;tr_leaf", 0, 0);
            struct timespec pause = {0, 5000000};
            nanosleep(&pause, 0);
            int stopped = lt_trace_stop(0);
            printf("cycle %d %d %d\n", i, started, stopped);
        }
        __atomic_store_n(&stop_busy, 1, __ATOMIC_RELEASE);
        for (int i = 0; i < 2; i++) pthread_join(workers[i], 0);
        return 0;
    }
    if (argc > 2 && strcmp(argv[2], "killed") == 0) {
        /* The nested mode's recording, ended by SIGKILL instead of a stop:
         * what the drain had not moved yet is left in DIR/rings. */
        check("killed_start", lt_trace_start(directory, "tr_*", 0, 0));
        pthread_t thread;
        pthread_create(&thread, 0, tr_thread_body, 0);
        printf("work %ld\n", tr_work(6, thread));
        fflush(stdout);
        raise(SIGKILL);
    }
    if (argc > 2 && strcmp(argv[2], "nested") == 0) {
        check("nested_start", lt_trace_start(directory, "tr_*", 0, 0));
        pthread_t thread;
        pthread_create(&thread, 0, tr_thread_body, 0);
        printf("work %ld\n", tr_work(6, thread));
        check("nested_stop", lt_trace_stop(0));
        return 0;
    }

    /* The recording. The second thread starts after lt_trace_start: every
     * one of its calls is inside the recording. */
    check("start", lt_trace_start(directory, " tr_work; tr_fib ;tr_leaf;tr_thread_body;tr_hidden", "tr_hid*", 0));
    pthread_t thread;
    pthread_create(&thread, 0, tr_thread_body, 0);
    printf("work %ld\n", tr_work(6, thread));
    check("start_again", lt_trace_start(directory, 0, 0, 0));
    struct lt_trace_summary summary;
    check("stop", lt_trace_stop(&summary));
    printf("summary %llu %llu %llu %llu\n", (unsigned long long)summary.threads,
           (unsigned long long)summary.events, (unsigned long long)summary.lost,
           (unsigned long long)summary.functions);
    tr_leaf(1);

    /* Bad input: each a clear code, nothing left started. */
    check("stop_again", lt_trace_stop(&summary));
    printf("summary_after_failure %llu\n", (unsigned long long)summary.events);
    check("null_directory", lt_trace_start(0, 0, 0, 0));
    check("empty_directory", lt_trace_start("", 0, 0, 0));
    errno = 0;
    int unwritable = lt_trace_start("/proc/livetrace-cannot-be-here", "tr_*", 0, 0);
    int unwritable_errno = errno;
    check("unwritable", unwritable);
    printf("unwritable_errno %d %s\n", unwritable_errno, strerror(unwritable_errno));
    /* DIR-busy: the test put a file that is not a trace there. */
    snprintf(other, sizeof other, "%s-busy", directory);
    errno = 0;
    int busy = lt_trace_start(other, "tr_*", 0, 0);
    int busy_errno = errno;
    check("busy", busy);
    printf("busy_errno %d %s\n", busy_errno, strerror(busy_errno));
    snprintf(other, sizeof other, "%s-none", directory);
    check("no_match", lt_trace_start(other, "no_such_function_*", 0, 0));
    snprintf(other, sizeof other, "%s-lists", directory);
    check("empty_glob", lt_trace_start(other, "tr_fib;;tr_leaf", 0, 0));
    check("too_deep", lt_trace_start(other, "tr_*", 0, LT_TRACE_MAX_DEPTH + 1));
    check("stop_never_started", lt_trace_stop(0));

    /* Still usable after all that: a second recording, completed at exit
     * (no lt_trace_stop). */
    snprintf(other, sizeof other, "%s-atexit", directory);
    check("start_for_exit", lt_trace_start(other, "tr_leaf", 0, 0));
    tr_leaf(2);
    tr_leaf(3);
    return 0;
}
