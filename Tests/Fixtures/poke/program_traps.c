/* "The program's own breakpoints": a SIGTRAP handler of the program and a
 * thread that keeps hitting breakpoints (raise(SIGTRAP) and an int3 in its
 * own code). Every trap must reach the program's handler exactly once, while
 * LiveTrace's handler owns SIGTRAP and transitions run. */
#define _GNU_SOURCE
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <string.h>

/* glibc's sigaction under its other exported name: what signal() and other
 * libc-internal callers reach, bypassing LiveTrace's interposed sigaction. */
extern int __sigaction(int, const struct sigaction *, struct sigaction *);

static atomic_long lt_handled_int3, lt_handled_raise, lt_handled_other;
static atomic_long lt_made_int3, lt_made_raise;
static atomic_int lt_stop;
static pthread_t lt_thread;

static void on_sigtrap(int sig, siginfo_t *info, void *uc) {
    (void)sig; (void)uc;
    if (info->si_code == SI_KERNEL) atomic_fetch_add(&lt_handled_int3, 1);
    else if (info->si_code == SI_TKILL) atomic_fetch_add(&lt_handled_raise, 1);
    else atomic_fetch_add(&lt_handled_other, 1);
}

/* raw != 0: install through __sigaction (the kernel's handler is replaced,
 * LiveTrace must notice); otherwise through sigaction (interposed). */
int lt_program_install_trap_handler(int raw) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = on_sigtrap;
    sa.sa_flags = SA_SIGINFO;
    sigemptyset(&sa.sa_mask);
    return raw ? __sigaction(SIGTRAP, &sa, NULL) : sigaction(SIGTRAP, &sa, NULL);
}

static void *trapper(void *arg) {
    (void)arg;
    while (!atomic_load(&lt_stop)) {
        atomic_fetch_add(&lt_made_raise, 1);
        raise(SIGTRAP);
        atomic_fetch_add(&lt_made_int3, 1);
        __asm__ volatile("int3" ::: "memory");
    }
    return NULL;
}

int lt_program_start_trapper(void) {
    atomic_store(&lt_stop, 0);
    return pthread_create(&lt_thread, NULL, trapper, NULL);
}

void lt_program_stop_trapper(void) {
    atomic_store(&lt_stop, 1);
    pthread_join(lt_thread, NULL);
}

/* out: made_raise, handled_raise, made_int3, handled_int3, handled_other */
void lt_program_counts(long out[5]) {
    out[0] = atomic_load(&lt_made_raise);
    out[1] = atomic_load(&lt_handled_raise);
    out[2] = atomic_load(&lt_made_int3);
    out[3] = atomic_load(&lt_handled_int3);
    out[4] = atomic_load(&lt_handled_other);
}
