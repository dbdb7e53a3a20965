/* A running process for `livetrace record -p` (AttachTests.swift). It checks
 * its own invariants on every call and keeps its own per-function counters.
 *
 * Threads: WORKERS workers (argv[1], default 4), the last of which blocks
 * every signal; the main thread reads commands from stdin and so sits in a
 * blocking read() across every attach and detach:
 *   "c"     print "counts BURST_A BURST_B BACKGROUND"
 *   "b N"   each worker makes N bursts (one burst: burst_a calls burst_b
 *           once), then "burst done"
 *   "q"     stop the workers, print "ok", exit 0
 * Workers call background() continuously between bursts. Any broken
 * invariant (an argument, a return value, the call order, errno, a float)
 * prints "INVARIANT ..." and exits 2; a read() that fails (EINTR) exits 3. */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static atomic_ulong count_a, count_b, count_background;
static atomic_int stop;
static atomic_long burst_generation;
static atomic_int bursts_pending;
static long burst_size;
static __thread int depth;

static void fail(const char *what, long value) {
    printf("INVARIANT %s %ld\n", what, value);
    fflush(stdout);
    _exit(2);
}

__attribute__((noinline)) long burst_b(long x, double y) {
    if (depth != 1) fail("burst_b depth", depth);
    atomic_fetch_add(&count_b, 1);
    errno = (int)(x & 0x3f) + 1;
    return x * 3 + (long)(y * 2.0);
}

__attribute__((noinline)) long burst_a(long x) {
    if (depth != 0) fail("burst_a depth", depth);
    atomic_fetch_add(&count_a, 1);
    depth++;
    errno = 0;
    long r = burst_b(x, 0.5);
    int e = errno;
    depth--;
    if (e != (int)(x & 0x3f) + 1) fail("errno after burst_b", e);
    if (r != x * 3 + 1) fail("burst_b result", r);
    return r + 1;
}

__attribute__((noinline)) double background(double x, long i) {
    atomic_fetch_add(&count_background, 1);
    return x * 0.5 + (double)i;
}

static void *worker(void *arg) {
    long index = (long)arg, seen = 0, i = 0;
    if (arg == (void *)-1L) index = 0;
    sigset_t all;
    sigfillset(&all);
    if ((long)arg < 0) pthread_sigmask(SIG_SETMASK, &all, NULL);
    while (!atomic_load(&stop)) {
        long generation = atomic_load(&burst_generation);
        if (generation != seen) {
            for (long k = 0; k < burst_size; k++)
                if (burst_a(k) != k * 3 + 2) fail("burst_a result", k);
            seen = generation;
            atomic_fetch_sub(&bursts_pending, 1);
        }
        errno = 1234;
        double d = background(3.0, i);
        if (errno != 1234) fail("errno after background", errno);
        if (d != 1.5 + (double)i) fail("background result", i);
        i++;
        if ((i & 0x3f) == 0) usleep(200);
    }
    (void)index;
    return NULL;
}

int main(int argc, char **argv) {
    int workers = argc > 1 ? atoi(argv[1]) : 4;
    pthread_t threads[64];
    for (int i = 0; i < workers && i < 64; i++)
        pthread_create(&threads[i], NULL, worker, i == workers - 1 ? (void *)-1L : (void *)(long)(i + 1));
    printf("ready %d\n", (int)getpid());
    fflush(stdout);
    char line[128];
    size_t used = 0;
    for (;;) {
        ssize_t n = read(0, line + used, sizeof line - 1 - used);
        if (n < 0) {
            printf("READ FAILED %s\n", strerror(errno));
            fflush(stdout);
            _exit(3);
        }
        if (n == 0) break;
        used += (size_t)n;
        line[used] = 0;
        char *end;
        while ((end = strchr(line, '\n')) != NULL) {
            *end = 0;
            if (line[0] == 'c') {
                printf("counts %lu %lu %lu\n", atomic_load(&count_a), atomic_load(&count_b), atomic_load(&count_background));
            } else if (line[0] == 'b') {
                burst_size = atol(line + 2);
                atomic_store(&bursts_pending, workers);
                atomic_fetch_add(&burst_generation, 1);
                while (atomic_load(&bursts_pending) > 0) usleep(100);
                printf("burst done\n");
            } else if (line[0] == 'q') {
                atomic_store(&stop, 1);
                for (int i = 0; i < workers && i < 64; i++) pthread_join(threads[i], NULL);
                printf("ok\n");
                fflush(stdout);
                return 0;
            }
            fflush(stdout);
            size_t rest = used - (size_t)(end + 1 - line);
            memmove(line, end + 1, rest);
            used = rest;
            line[used] = 0;
        }
    }
    return 0;
}
