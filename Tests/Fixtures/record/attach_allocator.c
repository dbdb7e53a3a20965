/* A process for `livetrace record -p` whose every thread, the main one
 * included, allocates and frees flat out (blocks of 2-6 KB: past glibc's
 * per-thread cache, so each call takes its arena's lock) and calls work()
 * between allocations: no thread waits in a system call, and at any instant
 * some thread holds an allocator lock. A thread borrowed for dlopen while it
 * holds one would wait for itself forever (AttachTests).
 *
 *   attach_allocator THREADS   prints "ready", runs until SIGTERM, then
 *                              prints "ok CALLS" and exits 0 */
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static atomic_int stop;
static atomic_ulong calls;

__attribute__((noinline)) void *work(size_t size) {
    atomic_fetch_add_explicit(&calls, 1, memory_order_relaxed);
    char *block = malloc(size);
    if (!block) abort();
    memset(block, (int)size, 64);
    return block;
}

static void *churn(void *seed) {
    unsigned state = (unsigned)(size_t)seed;
    void *kept[16] = {0};
    while (!atomic_load_explicit(&stop, memory_order_relaxed)) {
        state = state * 1103515245u + 12345u;
        unsigned slot = (state >> 8) % 16;
        free(kept[slot]);
        kept[slot] = work(2048 + (state >> 16) % 4096);
    }
    for (int i = 0; i < 16; i++) free(kept[i]);
    return NULL;
}

static void on_term(int signal) { (void)signal; atomic_store(&stop, 1); }

int main(int argc, char **argv) {
    int threads = argc > 1 ? atoi(argv[1]) : 2;
    struct sigaction action;
    memset(&action, 0, sizeof action);
    action.sa_handler = on_term;
    sigaction(SIGTERM, &action, NULL);
    pthread_t workers[64];
    for (int i = 0; i < threads && i < 64; i++) pthread_create(&workers[i], NULL, churn, (void *)(size_t)(i + 1));
    printf("ready\n");
    fflush(stdout);
    churn((void *)(size_t)99);
    for (int i = 0; i < threads && i < 64; i++) pthread_join(workers[i], NULL);
    printf("ok %lu\n", (unsigned long)atomic_load(&calls));
    return 0;
}
