/* The seed's test on relocated prologues (RelocatedSeedTests): threads call
 * four relocated functions of prologues.c flat out — rel_pause2 (slow moved
 * bytes, so threads are often stopped inside them), rel_rip_load and
 * rel_rip_lea (a rip-relative operand first), rel_jcc_after (a branch right
 * after the patched bytes) — one plain, one with every signal blocked, one
 * from a SIGUSR1 handler, while the test patches, unpatches and switches
 * their entries. The fixture keeps its own counts, per thread: groups made
 * (each group calls each function once), groups made wholly inside a
 * stable-on window and wholly inside a stable-off window (seed_phase, set
 * by the test around every change: 0 changing, 1 on, 2 off, with an epoch so
 * that a group spanning two windows counts in neither). seed_count is the C
 * callback the test attaches: it adds 1 to data[i] of its ops for a call of
 * the i-th function (its ip is the function's entry: none has endbr64). */
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <unistd.h>

int rel_pause2(int);
int rel_rip_load(int);
int rel_rip_lea(int);
int rel_jcc_after(int);

static atomic_int stop_flag;
static atomic_long made[3], stable_on[3], stable_off[3], wrong;
/* (epoch << 2) | phase */
static atomic_long phase_word;
static pthread_t threads[4];
static const int table[4] = {10, 20, 30, 40};

struct lt_ops_head { void *func; atomic_long *data; };
void seed_count(unsigned long ip, unsigned long parent, struct lt_ops_head *ops, void *regs) {
    (void)parent; (void)regs;
    int i = ip == (unsigned long)rel_pause2 ? 0 : ip == (unsigned long)rel_rip_load ? 1
          : ip == (unsigned long)rel_rip_lea ? 2 : ip == (unsigned long)rel_jcc_after ? 3 : 4;
    atomic_fetch_add_explicit(&ops->data[i], 1, memory_order_relaxed);
}

void seed_phase(int phase) {
    long word = atomic_load(&phase_word);
    atomic_store(&phase_word, (((word >> 2) + 1) << 2) | phase);
}

static void group(int who, int x) {
    long before = atomic_load(&phase_word);
    if (rel_pause2(x) != x + 1) atomic_fetch_add(&wrong, 1);
    if (rel_rip_load(x) != 41 + x) atomic_fetch_add(&wrong, 1);
    if (rel_rip_lea(x) != table[x & 3]) atomic_fetch_add(&wrong, 1);
    int y = x - 10;
    if (rel_jcc_after(x) != (y > 0 ? y * 7 : y)) atomic_fetch_add(&wrong, 1);
    long after = atomic_load(&phase_word);
    atomic_fetch_add(&made[who], 1);
    if (before == after && (before & 3) == 1) atomic_fetch_add(&stable_on[who], 1);
    if (before == after && (before & 3) == 2) atomic_fetch_add(&stable_off[who], 1);
}

static void on_usr1(int sig) { (void)sig; group(2, 5); }

static void *plain(void *arg) {
    (void)arg;
    for (int i = 0; !atomic_load(&stop_flag); i++) group(0, i & 0xffff);
    return 0;
}

static void *blocked(void *arg) {
    (void)arg;
    sigset_t all;
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, 0);
    for (int i = 0; !atomic_load(&stop_flag); i++) group(1, -(i & 0xffff));
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

void seed_start(void) {
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

/* The counts so far, per thread: out[3*k + who] for k = made, stable on,
 * stable off; out[9] = wrong results. */
void seed_counts(long *out) {
    for (int i = 0; i < 3; i++) {
        out[i] = atomic_load(&made[i]);
        out[3 + i] = atomic_load(&stable_on[i]);
        out[6 + i] = atomic_load(&stable_off[i]);
    }
    out[9] = atomic_load(&wrong);
}

void seed_stop(long *out) {
    atomic_store(&stop_flag, 1);
    pthread_join(threads[3], 0); /* the sender first: it signals threads[2] */
    for (int i = 0; i < 3; i++) pthread_join(threads[i], 0);
    struct sigaction sa = {0};
    sa.sa_handler = SIG_IGN;
    sigaction(SIGUSR1, &sa, 0);
    seed_counts(out);
}
