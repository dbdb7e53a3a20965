/* Threads that call rel_pause2 (prologues.c) flat out while the test relocates
 * and switches its entry: one plain, one with every signal blocked, one that
 * calls it from a SIGUSR1 handler (sent by a fourth thread). Each checks the
 * result and counts its calls; the counts are read after they stop. */
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <unistd.h>

int rel_pause2(int);

static atomic_int stop_flag;
static atomic_long calls[3], wrong;
static pthread_t threads[4];

static void call_once(int who, int x) {
    if (rel_pause2(x) != x + 1) atomic_fetch_add(&wrong, 1);
    atomic_fetch_add(&calls[who], 1);
}

static void on_usr1(int sig) { (void)sig; call_once(2, 5); }

static void *plain(void *arg) {
    (void)arg;
    for (int i = 0; !atomic_load(&stop_flag); i++) call_once(0, i);
    return 0;
}

static void *blocked(void *arg) {
    (void)arg;
    sigset_t all;
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, 0);
    for (int i = 0; !atomic_load(&stop_flag); i++) call_once(1, -i);
    return 0;
}

static void *receiver(void *arg) {
    (void)arg;
    while (!atomic_load(&stop_flag)) usleep(100);
    return 0;
}

static void *sender(void *arg) {
    pthread_t target = *(pthread_t *)arg;
    while (!atomic_load(&stop_flag)) {
        pthread_kill(target, SIGUSR1);
        usleep(20);
    }
    return 0;
}

void hammer_start(void) {
    struct sigaction sa = {0};
    sa.sa_handler = on_usr1;
    sigfillset(&sa.sa_mask);
    sa.sa_flags = SA_RESTART;
    sigaction(SIGUSR1, &sa, 0);
    atomic_store(&stop_flag, 0);
    pthread_create(&threads[0], 0, plain, 0);
    pthread_create(&threads[1], 0, blocked, 0);
    pthread_create(&threads[2], 0, receiver, 0);
    pthread_create(&threads[3], 0, sender, &threads[2]);
}

/* Stops and joins the threads; out[0..2] = calls per thread, out[3] = wrong results. */
void hammer_stop(long *out) {
    atomic_store(&stop_flag, 1);
    pthread_join(threads[3], 0); /* the sender first: it signals threads[2] */
    for (int i = 0; i < 3; i++) pthread_join(threads[i], 0);
    struct sigaction sa = {0};
    sa.sa_handler = SIG_IGN;
    sigaction(SIGUSR1, &sa, 0);
    for (int i = 0; i < 3; i++) out[i] = atomic_load(&calls[i]);
    out[3] = atomic_load(&wrong);
}
