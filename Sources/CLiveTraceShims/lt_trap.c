/* The SIGTRAP handler of the text poke and the thread-sync handler.
 * See include/lt_trap.h for the publication protocol and its barrier
 * pairing. Everything reachable from the two handlers is async-signal-safe:
 * no allocation, no lock, no stdio; errno is saved and restored around the
 * only system calls they make. */
#define _GNU_SOURCE
#include "lt_trap.h"
#include "lt_sys.h"
#include "lt_context.h"
#include "lt_sigmask.h"
#include <errno.h>
#include <signal.h>
#include <stdatomic.h>
#include <string.h>
#include <time.h>
#include <ucontext.h>
#include <unistd.h>
#include <sys/syscall.h>

/* x86-64 opcode of int3, the breakpoint the protocol writes over A[0]. */
#define LT_OPCODE_INT3 0xCC
/* A tag carried by our sync signals in si_value (rt_tgsigqueueinfo). */
#define LT_SYNC_COOKIE ((void *)0x4c54737963ULL) /* "LTsyc" */

/* Published tables: written by the patcher (under its patch lock) with
 * exchange; read by the handlers between readers_enter/readers_leave. */
static _Atomic(const lt_inflight_table *) lt_inflight;
/* Bumped after every exchange of lt_inflight (lt_trap.h: a handler's
 * look-up is consistent when it saw no bump). */
static atomic_ulong lt_inflight_generation;
static _Atomic(const lt_address_set *) lt_known_sites;
static _Atomic(const lt_ack_request *) lt_ack;
/* Number of handlers currently between readers_enter and readers_leave. */
static atomic_long lt_readers;

/* Installation state. lt_sync_signo is 0 until installed. */
static atomic_int lt_installed;
static atomic_int lt_sync_signo;

/* The handlers we forward foreign signals to: index 0 SIGTRAP, 1 the sync
 * signal. Each has two slots; `forward_current` names the live one. A writer
 * (under forward_lock) fills the other slot, publishes it, then waits for
 * readers before the slot it left may be reused by the next writer. The
 * handlers read the live slot between readers_enter/readers_leave and copy
 * it before leaving. */
static struct sigaction lt_forward_slot[2][2];
static atomic_int lt_forward_current[2];
static atomic_flag lt_forward_lock[2] = {ATOMIC_FLAG_INIT, ATOMIC_FLAG_INIT};

static _Atomic uint64_t lt_count_calls, lt_count_nops, lt_count_stale, lt_count_retried,
    lt_count_forwarded, lt_count_rescued, lt_count_acks, lt_count_reinstalls;

static inline void readers_enter(void) { atomic_fetch_add(&lt_readers, 1); }
static inline void readers_leave(void) { atomic_fetch_sub(&lt_readers, 1); }

static inline void count(_Atomic uint64_t *c) {
    atomic_fetch_add_explicit(c, 1, memory_order_relaxed);
}

/* ---- publication ------------------------------------------------------ */

const lt_inflight_table *lt_trap_exchange_inflight(const lt_inflight_table *t) {
    const lt_inflight_table *old = atomic_exchange(&lt_inflight, t);
    atomic_fetch_add(&lt_inflight_generation, 1);
    return old;
}
const lt_address_set *lt_trap_exchange_known_sites(const lt_address_set *s) {
    return atomic_exchange(&lt_known_sites, s);
}
const lt_ack_request *lt_trap_exchange_ack_request(const lt_ack_request *r) {
    return atomic_exchange(&lt_ack, r);
}
void lt_trap_wait_for_readers(void) {
    /* Readers never block between enter and leave, so this is short. */
    while (atomic_load(&lt_readers) != 0) {
        __builtin_ia32_pause();
    }
}
uint32_t lt_trap_load_ack(const lt_ack_request *r, uint64_t i) {
    return atomic_load_explicit((_Atomic uint32_t *)&r->acked[i], memory_order_acquire);
}

/* ---- lookups (binary search, no allocation) ---------------------------- */

static const lt_inflight_entry *find_site(const lt_inflight_table *t, uint64_t address) {
    uint64_t lo = 0, hi = t->count;
    while (lo < hi) {
        uint64_t mid = lo + (hi - lo) / 2;
        uint64_t a = t->entries[mid].address;
        if (a == address) return &t->entries[mid];
        if (a < address) lo = mid + 1; else hi = mid;
    }
    return NULL;
}

/* The entry with the greatest address <= pc, if pc is inside its rescue
 * region (address, address + rescue_length). */
static const lt_inflight_entry *find_rescue(const lt_inflight_table *t, uint64_t pc) {
    uint64_t lo = 0, hi = t->count;
    while (lo < hi) {
        uint64_t mid = lo + (hi - lo) / 2;
        if (t->entries[mid].address <= pc) lo = mid + 1; else hi = mid;
    }
    if (lo == 0) return NULL;
    const lt_inflight_entry *e = &t->entries[lo - 1];
    if (e->rescue_length > 0 && pc > e->address && pc < e->address + e->rescue_length) return e;
    return NULL;
}

static int contains_address(const lt_address_set *s, uint64_t address) {
    uint64_t lo = 0, hi = s->count;
    while (lo < hi) {
        uint64_t mid = lo + (hi - lo) / 2;
        uint64_t a = s->addresses[mid];
        if (a == address) return 1;
        if (a < address) lo = mid + 1; else hi = mid;
    }
    return 0;
}

static int search_tid(const lt_ack_request *r, int32_t tid, uint64_t *index) {
    uint64_t lo = 0, hi = r->count;
    while (lo < hi) {
        uint64_t mid = lo + (hi - lo) / 2;
        if (r->tids[mid] == tid) { *index = mid; return 1; }
        if (r->tids[mid] < tid) lo = mid + 1; else hi = mid;
    }
    return 0;
}

/* ---- forwarding to the program's handler ------------------------------- */

static int forward_index(int sig) { return sig == SIGTRAP ? 0 : 1; }

/* Never blocked by us or for others: SIGTRAP (a blocked int3 kills the
 * process) and the sync signal (the patcher waits for its acknowledgement). */
static void remove_protected(sigset_t *set) {
    sigdelset(set, SIGTRAP);
    sigdelset(set, lt_trap_sync_signal());
}

/* Delivers a signal that is not ours as the kernel would have without us:
 * 1. SIG_IGN: a signal the kernel forced (an int3, si_code SI_KERNEL) would
 *    have killed the process anyway (the kernel un-ignores forced signals);
 *    anything else is ignored.
 * 2. SIG_DFL: reset the disposition, unblock, send it again: the default
 *    action happens (SIGTRAP: terminate with a core dump).
 * 3. A handler: run it with its sa_mask blocked (minus the protected
 *    signals, and minus `sig` only with SA_NODEFER), as the kernel would. */
static void forward(int sig, siginfo_t *info, void *uc) {
    struct sigaction action;
    int i = forward_index(sig);
    readers_enter();
    action = lt_forward_slot[i][atomic_load(&lt_forward_current[i])];
    readers_leave();
    count(&lt_count_forwarded);

    if (!(action.sa_flags & SA_SIGINFO) && action.sa_handler == SIG_IGN) {
        if (info->si_code != SI_KERNEL) return;
        action.sa_handler = SIG_DFL;
    }
    if (!(action.sa_flags & SA_SIGINFO) && action.sa_handler == SIG_DFL) {
        struct sigaction dfl;
        memset(&dfl, 0, sizeof dfl);
        dfl.sa_handler = SIG_DFL;
        lt_sys_libc_sigaction(sig, &dfl, NULL);
        sigset_t one;
        sigemptyset(&one);
        sigaddset(&one, sig);
        lt_sys_rt_sigprocmask(SIG_UNBLOCK, &one, NULL);
        lt_sys_tgkill(getpid(), lt_sys_gettid(), sig);
        return; /* reached only when the default action is to ignore */
    }
    sigset_t mask = action.sa_mask, saved;
    if (!(action.sa_flags & SA_NODEFER)) sigaddset(&mask, sig);
    remove_protected(&mask);
    lt_sys_rt_sigprocmask(SIG_BLOCK, &mask, &saved);
    /* The program's handler runs in the next context (lt_context.h). */
    uint32_t context = lt_context_enter();
    if (action.sa_flags & SA_SIGINFO) {
        action.sa_sigaction(sig, info, uc);
    } else {
        action.sa_handler(sig);
    }
    lt_context_leave(context);
    lt_sys_rt_sigprocmask(SIG_SETMASK, &saved, NULL);
}

/* ---- the handlers ------------------------------------------------------ */

/* Test seam (lt_trap.h): spins `ns` times (ordinal % 8 + 1). */
static _Atomic uint64_t lt_test_delay_tables_ns, lt_test_delay_byte_ns, lt_test_delay_ordinal;

void lt_trap_test_set_handler_delays(uint64_t before_tables_ns, uint64_t before_byte_ns) {
    atomic_store(&lt_test_delay_tables_ns, before_tables_ns);
    atomic_store(&lt_test_delay_byte_ns, before_byte_ns);
}

static void test_delay(_Atomic uint64_t *setting) {
    uint64_t ns = atomic_load_explicit(setting, memory_order_relaxed);
    if (ns == 0) return;
    ns *= atomic_fetch_add_explicit(&lt_test_delay_ordinal, 1, memory_order_relaxed) % 8 + 1;
    struct timespec start, now;
    clock_gettime(CLOCK_MONOTONIC, &start);
    do {
        clock_gettime(CLOCK_MONOTONIC, &now);
    } while ((uint64_t)(now.tv_sec - start.tv_sec) * 1000000000ull + (uint64_t)now.tv_nsec - (uint64_t)start.tv_nsec < ns);
}

/* SIGTRAP. The int3 at A has executed, so RIP = A + 1.
 *   1. A in the in-flight table: emulate NEW on the trapped context
 *      (a jump only moves RIP).
 *      call: the kernel built our signal frame below the red zone, and at a
 *      function entry the slot at RSP-8 is dead (the caller's `call` has just
 *      used it), so pushing the return address there is safe.
 *   2. A a site we wrote, byte at A no longer int3: the batch finished
 *      between the trap and now (stale); resume at A and run what is there.
 *   3. Anything else is not ours: forward. raise()/kill() never reach 1-2
 *      (si_code is not SI_KERNEL).
 * 2 and 3 are decided on a consistent read (lt_trap.h): the generation did
 * not move between the table's load and the byte's, else look again. */
static void lt_trap_handler(int sig, siginfo_t *info, void *ucv) {
    ucontext_t *uc = (ucontext_t *)ucv;
    greg_t *regs = uc->uc_mcontext.gregs;
    if (info->si_code == SI_KERNEL) {
        uint64_t site = (uint64_t)regs[REG_RIP] - 1;
        test_delay(&lt_test_delay_tables_ns);
        readers_enter();
        const lt_inflight_entry *e;
        int ours;
        uint8_t byte;
        for (;;) {
            unsigned long generation = atomic_load(&lt_inflight_generation);
            const lt_inflight_table *table = atomic_load(&lt_inflight);
            e = table ? find_site(table, site) : NULL;
            if (e) break;
            const lt_address_set *known = atomic_load(&lt_known_sites);
            ours = known && contains_address(known, site);
            test_delay(&lt_test_delay_byte_ns);
            byte = __atomic_load_n((const uint8_t *)site, __ATOMIC_SEQ_CST);
            if (atomic_load(&lt_inflight_generation) == generation) break;
            count(&lt_count_retried);
        }
        if (e) {
            if (e->emulate == LT_EMULATE_CALL) {
                uint64_t rsp = (uint64_t)regs[REG_RSP] - 8;
                *(uint64_t *)rsp = e->next;
                regs[REG_RSP] = (greg_t)rsp;
                regs[REG_RIP] = (greg_t)e->target;
                count(&lt_count_calls);
            } else if (e->emulate == LT_EMULATE_JUMP) {
                regs[REG_RIP] = (greg_t)e->target;
                count(&lt_count_calls);
            } else {
                regs[REG_RIP] = (greg_t)e->next;
                count(&lt_count_nops);
            }
            readers_leave();
            return;
        }
        readers_leave();
        if (ours && byte != LT_OPCODE_INT3) {
            regs[REG_RIP] = (greg_t)site;
            count(&lt_count_stale);
            return;
        }
    }
    forward(sig, info, ucv);
}

/* The sync signal, sent by the patcher to every thread (tagged with
 * LT_SYNC_COOKIE). Entering the kernel and returning to user space
 * serializes the thread's core (the return is an IRET), which is what the
 * membarrier fallback needs. On the way:
 *   1. If the thread's PC is inside five 1-byte nops being normalized, move
 *      it to the end of them (they were nops: skipping them is exact); if it
 *      is strictly inside a prologue being relocated, move it to the same
 *      instruction in the relocated stub (its copy: running it there is
 *      exact).
 *   2. Acknowledge: acked[i] = 1 (release), read by the patcher (acquire). */
static void lt_sync_handler(int sig, siginfo_t *info, void *ucv) {
    if (info->si_code == SI_QUEUE && info->si_value.sival_ptr == LT_SYNC_COOKIE &&
        info->si_pid == getpid()) {
        int saved_errno = errno;
        ucontext_t *uc = (ucontext_t *)ucv;
        greg_t *regs = uc->uc_mcontext.gregs;
        readers_enter();
        const lt_inflight_table *table = atomic_load(&lt_inflight);
        const lt_inflight_entry *e = table ? find_rescue(table, (uint64_t)regs[REG_RIP]) : NULL;
        if (e && e->rescue_offsets) {
            uint8_t offset = e->rescue_offsets[(uint64_t)regs[REG_RIP] - e->address];
            if (offset != 0xff) {
                regs[REG_RIP] = (greg_t)(e->rescue_base + offset);
                count(&lt_count_rescued);
            }
        } else if (e) {
            regs[REG_RIP] = (greg_t)e->next;
            count(&lt_count_rescued);
        }
        const lt_ack_request *request = atomic_load(&lt_ack);
        uint64_t index;
        if (request && search_tid(request, (int32_t)lt_sys_gettid(), &index)) {
            atomic_store_explicit((_Atomic uint32_t *)&request->acked[index], 1, memory_order_release);
            count(&lt_count_acks);
        }
        readers_leave();
        errno = saved_errno;
        return;
    }
    forward(sig, info, ucv);
}

/* ---- installation ------------------------------------------------------ */

static struct sigaction our_action(int sig) {
    struct sigaction a;
    memset(&a, 0, sizeof a);
    a.sa_sigaction = sig == SIGTRAP ? lt_trap_handler : lt_sync_handler;
    /* SA_NODEFER: SIGTRAP stays unblocked inside the handler and inside the
     * program's handler we forward to, which may call traced functions.
     * SA_ONSTACK: a program's sigaltstack is honoured. SA_RESTART: the sync
     * signal does not make interruptible system calls fail. */
    a.sa_flags = SA_SIGINFO | SA_NODEFER | SA_ONSTACK | SA_RESTART;
    sigemptyset(&a.sa_mask);
    return a;
}

static int is_ours(const struct sigaction *a) {
    return (a->sa_flags & SA_SIGINFO) &&
           (a->sa_sigaction == lt_trap_handler || a->sa_sigaction == lt_sync_handler);
}

static void lock_forward(int i) {
    while (atomic_flag_test_and_set_explicit(&lt_forward_lock[i], memory_order_acquire)) {
        __builtin_ia32_pause();
    }
}
static void unlock_forward(int i) {
    atomic_flag_clear_explicit(&lt_forward_lock[i], memory_order_release);
}

/* Publishes `act` as the handler to forward `sig` to (see the slot rule
 * above); returns the previous one in `old`. Caller holds forward_lock. */
static void set_forward_locked(int sig, const struct sigaction *act, struct sigaction *old) {
    int i = forward_index(sig);
    int cur = atomic_load(&lt_forward_current[i]);
    if (old) *old = lt_forward_slot[i][cur];
    if (!act) return;
    lt_forward_slot[i][1 - cur] = *act;
    atomic_store(&lt_forward_current[i], 1 - cur);
    lt_trap_wait_for_readers();
}

static long install_one(int sig) {
    struct sigaction previous, ours = our_action(sig);
    long r = lt_sys_libc_sigaction(sig, &ours, &previous);
    if (r < 0) return r;
    if (!is_ours(&previous)) {
        int i = forward_index(sig);
        lock_forward(i);
        set_forward_locked(sig, &previous, NULL);
        unlock_forward(i);
    }
    return 0;
}

long lt_trap_install(int sync_signal) {
    if (atomic_load(&lt_installed)) return 0;
    lt_sigmask_dispatch_installed_handlers(sync_signal);
    atomic_store(&lt_sync_signo, sync_signal);
    long r = install_one(sync_signal);
    if (r < 0) return r;
    r = install_one(SIGTRAP);
    if (r < 0) return r;
    atomic_store(&lt_installed, 1);
    return 0;
}

int lt_trap_is_installed(void) { return atomic_load(&lt_installed); }
int lt_trap_sync_signal(void) {
    int installed = atomic_load(&lt_sync_signo);
    return installed > 0 ? installed : lt_sys_sigrtmax() - 2;
}

long lt_trap_reinstall_if_replaced(void) {
    if (!atomic_load(&lt_installed)) return -EINVAL;
    long replaced = 0;
    int sigs[2] = {SIGTRAP, atomic_load(&lt_sync_signo)};
    for (int k = 0; k < 2; k++) {
        struct sigaction current;
        long r = lt_sys_libc_sigaction(sigs[k], NULL, &current);
        if (r < 0) return r;
        if (is_ours(&current)) continue;
        r = install_one(sigs[k]);
        if (r < 0) return r;
        replaced |= (k == 0 ? 1 : 2);
        count(&lt_count_reinstalls);
    }
    return replaced;
}

int lt_trap_intercept_sigaction(int sig, const struct sigaction *act, struct sigaction *old) {
    if (!atomic_load(&lt_installed)) return 0;
    if (sig != SIGTRAP && sig != atomic_load(&lt_sync_signo)) return 0;
    int i = forward_index(sig);
    lock_forward(i);
    set_forward_locked(sig, act, old);
    unlock_forward(i);
    return 1;
}

long lt_trap_send_sync(long tid) {
    siginfo_t info;
    memset(&info, 0, sizeof info);
    info.si_signo = atomic_load(&lt_sync_signo);
    info.si_code = SI_QUEUE;
    info.si_pid = getpid();
    info.si_uid = getuid();
    info.si_value.sival_ptr = LT_SYNC_COOKIE;
    int saved = errno;
    long r = syscall(SYS_rt_tgsigqueueinfo, (long)getpid(), tid, (long)info.si_signo, &info);
    r = r == -1 ? -(long)errno : r;
    errno = saved;
    return r;
}

void lt_trap_read_counters(lt_trap_counters *out) {
    out->emulated_calls = atomic_load_explicit(&lt_count_calls, memory_order_relaxed);
    out->emulated_nops = atomic_load_explicit(&lt_count_nops, memory_order_relaxed);
    out->stale = atomic_load_explicit(&lt_count_stale, memory_order_relaxed);
    out->retried = atomic_load_explicit(&lt_count_retried, memory_order_relaxed);
    out->forwarded = atomic_load_explicit(&lt_count_forwarded, memory_order_relaxed);
    out->rescued = atomic_load_explicit(&lt_count_rescued, memory_order_relaxed);
    out->sync_acks = atomic_load_explicit(&lt_count_acks, memory_order_relaxed);
    out->reinstalls = atomic_load_explicit(&lt_count_reinstalls, memory_order_relaxed);
}
