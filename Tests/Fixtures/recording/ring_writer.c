/* A traced program stand-in for the recording tests: writes events through
 * the real writer layer (lt_record.c, compiled in) into a ring-area file
 * created by the test, then ends as told.
 *
 *   ring_writer RINGS THREADS PAIRS_PER_THREAD MIN_PAIRS END
 *
 * Thread t writes PAIRS_PER_THREAD entry/exit pairs; the address of pair s
 * is ((t + 1) << 32) | s, depth 0 for the entry and the exit. Once every
 * thread has written MIN_PAIRS pairs, the main thread prints "ready" and
 * ends as END says:
 *   exit   join every thread, then exit(0)
 *   segv   without joining, dereference a null pointer (threads still write)
 *   abort  without joining, abort()
 *   joined-segv  join every thread, then dereference a null pointer
 */
#include "lt_record.h"
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static long pairs_per_thread;
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
    int status = lt_record_attach_file(argv[1]);
    if (status != 0) {
        fprintf(stderr, "lt_record_attach_file: %d\n", status);
        return 3;
    }
    long threads = atol(argv[2]);
    pairs_per_thread = atol(argv[3]);
    long min_pairs = atol(argv[4]);
    const char *end = argv[5];
    if (threads < 1 || threads > 64) return 2;
    pthread_t ids[64];
    for (long t = 0; t < threads; t++) pthread_create(&ids[t], NULL, writer, (void *)t);
    for (long t = 0; t < threads; t++)
        while (__atomic_load_n(&progress[t], __ATOMIC_ACQUIRE) < min_pairs) usleep(100);
    printf("ready\n");
    fflush(stdout);
    int join = strcmp(end, "exit") == 0 || strcmp(end, "joined-segv") == 0;
    if (join)
        for (long t = 0; t < threads; t++) pthread_join(ids[t], NULL);
    if (strcmp(end, "segv") == 0 || strcmp(end, "joined-segv") == 0) {
        volatile int *null_pointer = NULL;
        *null_pointer = 1;
    }
    if (strcmp(end, "abort") == 0) abort();
    return 0;
}
