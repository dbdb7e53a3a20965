/* A traced program stand-in for the recording tests: writes events through
 * the real writer layer (lt_record.c, compiled in) into a ring-area file
 * created by the test, then ends as told.
 *
 *   ring_writer RINGS THREADS PAIRS_PER_THREAD MIN_PAIRS END
 *
 * RINGS "-" takes the ring area from the environment (LIVETRACE_RINGS), as
 * the LD_PRELOAD shim does.
 *
 * Thread t writes PAIRS_PER_THREAD entry/exit pairs; the address of pair s
 * is ((t + 1) << 32) | s, depth 0 for the entry and the exit. Once every
 * thread has written MIN_PAIRS pairs, the main thread prints "ready" and
 * ends as END says:
 *   exit   join every thread, then exit(0)
 *   segv   without joining, dereference a null pointer (threads still write)
 *   abort  without joining, abort()
 *   joined-segv  join every thread, then dereference a null pointer
 *   fork   join every thread, write 1000 pairs as thread 62 on the main
 *          thread, fork; the child writes PAIRS_PER_THREAD pairs as thread
 *          63 (from the thread whose ring it must not share) and exits 0;
 *          the parent waits for it and exits with the child's status
 *   signals  like exit, but while the threads write, a signaller thread
 *          sends SIGPROF to them in turn every ~20 us, and the handler
 *          writes one entry/exit pair with address 0xABC0000 (it may
 *          interrupt a write of its thread: then it is counted as lost).
 *          Prints "handler pairs N".
 */
#include "lt_record.h"
#include <pthread.h>
#include <signal.h>
#include <sys/wait.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static long pairs_per_thread;
static volatile long handler_pairs;

static volatile int signalling = 1;
static pthread_t signal_targets[64];
static long signal_target_count;

static void *signaller(void *unused) {
    (void)unused;
    for (long n = 0; __atomic_load_n(&signalling, __ATOMIC_ACQUIRE); n++) {
        pthread_kill(signal_targets[n % signal_target_count], SIGPROF);
        usleep(20);
    }
    return NULL;
}

static void on_sigprof(int sig) {
    (void)sig;
    lt_record_entry(0xABC0000, 7);
    lt_record_exit(0xABC0000, 7, 0);
    __atomic_fetch_add(&handler_pairs, 1, __ATOMIC_RELAXED);
}
static volatile long progress[64];

static void *writer(void *arg) {
    long t = (long)arg;
    for (long s = 0; s < pairs_per_thread; s++) {
        uintptr_t ip = ((uintptr_t)(t + 1) << 32) | (uintptr_t)s;
        lt_record_entry(ip, 0);
        lt_record_exit(ip, 0, 0);
        __atomic_store_n(&progress[t], s + 1, __ATOMIC_RELEASE);
    }
    return NULL;
}

int main(int argc, char **argv) {
    if (argc != 6) {
        fprintf(stderr, "usage: %s RINGS THREADS PAIRS MIN_PAIRS exit|segv|abort|joined-segv\n", argv[0]);
        return 2;
    }
    int status = strcmp(argv[1], "-") == 0 ? lt_record_attach_env() : lt_record_attach_file(argv[1]);
    if (status != 0) {
        fprintf(stderr, "lt_record_attach_file: %d\n", status);
        return 3;
    }
    long threads = atol(argv[2]);
    pairs_per_thread = atol(argv[3]);
    long min_pairs = atol(argv[4]);
    const char *end = argv[5];
    if (threads < 1 || threads > 64) return 2;
    if (strcmp(end, "signals") == 0) {
        struct sigaction sa;
        memset(&sa, 0, sizeof sa);
        sa.sa_handler = on_sigprof;
        sa.sa_flags = SA_RESTART;
        sigaction(SIGPROF, &sa, NULL);
    }
    pthread_t ids[64], signaller_id;
    for (long t = 0; t < threads; t++) pthread_create(&ids[t], NULL, writer, (void *)t);
    if (strcmp(end, "signals") == 0) {
        for (long t = 0; t < threads; t++) signal_targets[t] = ids[t];
        signal_target_count = threads;
        pthread_create(&signaller_id, NULL, signaller, NULL);
    }
    for (long t = 0; t < threads; t++)
        while (__atomic_load_n(&progress[t], __ATOMIC_ACQUIRE) < min_pairs) usleep(100);
    printf("ready\n");
    fflush(stdout);
    int join = strcmp(end, "exit") == 0 || strcmp(end, "joined-segv") == 0 || strcmp(end, "fork") == 0 ||
               strcmp(end, "signals") == 0;
    if (join)
        for (long t = 0; t < threads; t++) pthread_join(ids[t], NULL);
    if (strcmp(end, "signals") == 0) {
        __atomic_store_n(&signalling, 0, __ATOMIC_RELEASE);
        pthread_join(signaller_id, NULL);
        printf("handler pairs %ld\n", handler_pairs);
    }
    if (strcmp(end, "fork") == 0) {
        long saved = pairs_per_thread;
        pairs_per_thread = 1000;
        writer((void *)62L);
        pairs_per_thread = saved;
        fflush(stdout);
        pid_t child = fork();
        if (child == 0) {
            writer((void *)63L);
            _exit(0);
        }
        int status = 0;
        waitpid(child, &status, 0);
        return WIFEXITED(status) ? WEXITSTATUS(status) : 100;
    }
    if (strcmp(end, "segv") == 0 || strcmp(end, "joined-segv") == 0) {
        volatile int *null_pointer = NULL;
        *null_pointer = 1;
    }
    if (strcmp(end, "abort") == 0) abort();
    return 0;
}
