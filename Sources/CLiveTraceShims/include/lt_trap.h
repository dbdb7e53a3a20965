#ifndef LT_TRAP_H
#define LT_TRAP_H
/* The SIGTRAP handler of the text poke, and the thread-sync signal handler.
 *
 * The patcher (Swift, TextPoker) publishes three immutable tables here; the
 * handlers read them without a lock. Publication and retirement pair like
 * this (all four accesses are sequentially consistent):
 *
 *   patcher                                handler (any thread)
 *   -------                                --------------------
 *   build table T2 (plain stores)
 *   old = exchange(&table, T2)    ----.    readers += 1
 *   wait until readers == 0  <----.   `->  t = load(&table)   (T1 or T2)
 *   free(old)                      \       ... read *t ...
 *                                   `----  readers -= 1
 *
 * A handler that loaded T1 incremented `readers` before the exchange, so the
 * patcher sees it and waits; a handler that incremented after the patcher saw
 * zero loads T2. Hence an old table is freed only when no handler can hold
 * it (quiescence by count, as the kernel's text_poke_bp_batch does). The
 * handlers never allocate, never take a lock, and keep errno.
 *
 * A SIGTRAP handler may run long after its int3 executed: the thread can be
 * preempted before the handler's first instruction, or between its loads,
 * while its batch ends and the next one begins. Every exchange of the
 * in-flight table therefore also bumps a generation, and the patcher writes
 * a batch's int3 only after publishing its table. A handler that finds no
 * entry reads, in this order, the generation g1, the table, the known sites,
 * the byte at the site, and the generation g2; it retries while g1 != g2.
 * With g1 == g2 the table it read was the live one for the whole read, so
 * an int3 still at a site that table does not list is no batch's (a
 * program's breakpoint): it is forwarded; any other byte at a known site
 * means the batch ended between the trap and the read, and the thread
 * resumes at the site to run what is there. */
#include <stdint.h>
#include <signal.h>

/* What the handler does for a thread that traps on a site in flight. */
enum {
    LT_EMULATE_NOP = 0,  /* resume at `next` */
    LT_EMULATE_CALL = 1, /* push `next` as the return address, resume at `target` */
    LT_EMULATE_JUMP = 2, /* resume at `target` */
};

/* One site in flight: the semantics of its NEW instruction. */
typedef struct lt_inflight_entry {
    uint64_t address;       /* A: first byte of the site (where int3 goes) */
    uint64_t target;        /* LT_EMULATE_CALL/JUMP: the call's or jump's target */
    uint64_t next;          /* the address after NEW (A+5; A+6 while a 6-byte
                               GOT call is being normalized) */
    uint32_t emulate;       /* LT_EMULATE_NOP, LT_EMULATE_CALL or LT_EMULATE_JUMP */
    uint32_t rescue_length; /* > 0 for five 1-byte nops being normalized: a
                               thread whose PC is in (A, A+rescue_length) is
                               moved to `next` by the sync handler; and for a
                               relocated prologue: its moved bytes */
    /* Relocated prologue (full-dynamic patching): NULL, or for each offset k
     * in (0, rescue_length) the offset in the stub at `rescue_base` of the
     * moved instruction that starts at A+k (0xff: not an instruction
     * boundary, the thread is left alone). The sync handler moves a thread
     * at A+k to rescue_base + rescue_offsets[k] instead of `next`. */
    uint64_t rescue_base;
    const uint8_t *rescue_offsets;
} lt_inflight_entry;

/* A sorted (by address, no duplicates) table of sites in flight. */
typedef struct lt_inflight_table {
    uint64_t count;
    const lt_inflight_entry *entries;
} lt_inflight_table;

/* A sorted set of addresses: every site the patcher ever wrote, so a trap
 * whose int3 is already gone is recognised as ours (stale). */
typedef struct lt_address_set {
    uint64_t count;
    const uint64_t *addresses;
} lt_address_set;

/* One round of "every thread, acknowledge": the sync handler of a thread
 * whose tid is in `tids` (sorted) stores 1 into acked[i]. */
typedef struct lt_ack_request {
    uint64_t count;
    const int32_t *tids;
    uint32_t *acked; /* written by handlers with release order */
} lt_ack_request;

/* Exchange a published table; returns the previous one. The caller may free
 * what is returned only after lt_trap_wait_for_readers(). */
const lt_inflight_table *lt_trap_exchange_inflight(const lt_inflight_table *table);
const lt_address_set *lt_trap_exchange_known_sites(const lt_address_set *set);
const lt_ack_request *lt_trap_exchange_ack_request(const lt_ack_request *request);
void lt_trap_wait_for_readers(void);
/* Reads acked[i] with acquire order. */
uint32_t lt_trap_load_ack(const lt_ack_request *request, uint64_t index);

/* Installs the SIGTRAP handler and the sync handler on `sync_signal`,
 * remembering the handlers found there as the ones to forward to. Returns 0
 * or -errno. Idempotent. */
long lt_trap_install(int sync_signal);
int lt_trap_is_installed(void);
/* The sync signal: the installed one, or before installation the default
 * (SIGRTMAX - 2), which the interposed mask functions already protect. */
int lt_trap_sync_signal(void);

/* Asks the kernel whether our handlers are still the installed ones; for
 * each that was replaced (signal(), a raw rt_sigaction, a library using
 * glibc internals), adopts the replacement as the handler to forward to and
 * reinstalls ours. Returns a bit mask (1: SIGTRAP, 2: sync signal) of the
 * handlers reinstalled, or -errno. */
long lt_trap_reinstall_if_replaced(void);

/* Used by the interposed sigaction (lt_sigmask.c): when `sig` is SIGTRAP or
 * the sync signal and our handler is installed, records `act` as the
 * program's handler (to be forwarded to), reports the previous one in `old`,
 * and returns 1 without touching the kernel. Returns 0 otherwise. */
int lt_trap_intercept_sigaction(int sig, const struct sigaction *act, struct sigaction *old);

/* Sends the sync signal to thread `tid` of this process, tagged so the
 * handler can tell it from the program's own use of the signal. -errno. */
long lt_trap_send_sync(long tid);

/* Test seam: when set, every SIGTRAP handler spins `before_tables_ns` before
 * it reads the tables (a handler that starts late) and `before_byte_ns`
 * between the table look-up and the read of the site's byte (a handler
 * preempted there); each delay is scaled by the trap's ordinal modulo 8
 * plus one, so successive traps land at different points of a batch.
 * Zero (the default) costs one relaxed load per trap. */
void lt_trap_test_set_handler_delays(uint64_t before_tables_ns, uint64_t before_byte_ns);

/* Counters, for tests and reports (relaxed reads). */
typedef struct lt_trap_counters {
    uint64_t emulated_calls;  /* traps on a site in flight, emulated as a call or a jump */
    uint64_t emulated_nops;   /* ... emulated as a nop */
    uint64_t stale;           /* traps on a site whose int3 was already gone */
    uint64_t retried;         /* look-ups repeated because a table was exchanged meanwhile */
    uint64_t forwarded;       /* SIGTRAPs that were not ours */
    uint64_t rescued;         /* threads moved out of five 1-byte nops */
    uint64_t sync_acks;       /* sync-signal acknowledgements */
    uint64_t reinstalls;      /* times our handler had been replaced */
} lt_trap_counters;
void lt_trap_read_counters(lt_trap_counters *out);

#endif
