/* lt_tramp.h — the machine side of trampolines and ops (docs/ARCHITECTURE.md,
 * "Trampolines and ops").
 *
 * Path of a patched site (x86-64):
 *
 *   function:  [endbr64] jmp STUB           ; the site: pushes nothing
 *   STUB (JIT memory within +-2 GiB of the site, 64 bytes, one per site and
 *   target, immutable):
 *     +0   4c 8d 1d 09 00 00 00   lea  r11, [rip+0x9]    ; r11 = STUB+16 (record)
 *     +7   ff 25 xx xx xx xx      jmp  [rip+disp]        ; region header: lt_tramp_entry
 *                                                          ; lt_tramp_entry_lean or _graph
 *     +13  cc cc cc               int3 padding
 *     +16  record.func            ; lt_func to call
 *     +24  record.ops             ; its `ops` argument
 *     +32  record.resume          ; site + 5: where the body starts (a
 *                                 ; relocated entry: its relocated stub)
 *     +40  record.site            ; the site: the `ip` callbacks get
 *   lt_tramp_entry (lt_tramp_x86_64.S, permanent code):
 *     saves lt_regs, enters the quiescence section, calls record.func(ip =
 *     record.site, parent_ip, record.ops, regs), leaves the section, restores,
 *     and jumps to regs->resume (unless a MODIFY_RESUME callback changed it)
 *     — or, when the function graph hooked the return slot, calls it from
 *     lt_graph_call_body so that returns stay predicted.
 *   Why `jmp` and not ftrace's `call`: a call at the site leaves an entry in
 *   the return stack buffer that no return consumes once the return slot is
 *   hooked; every hooked return then mispredicts, and so do the caller's.
 *
 * A per-function trampoline is a STUB whose record is (ops->func, ops). The
 * iterator is a STUB whose record is (lt_tramp_iterate, list): the site's own
 * immutable snapshot of its ops. Both kinds share the entry.
 *
 * Quiescence protocol (per-thread sequence, lt_thread_slot.seq):
 *   E1  after saving registers, the thread increments seq (odd: inside);
 *       every read of a record, an ops or a list happens after E1;
 *   E2  after the last such read, the thread increments seq (even: outside);
 *       only permanent code runs after E2.
 *   A thread whose seq is odd at E1 time is nested (a callback called a
 *   traced function): it skips, counting in `skipped`, and touches nothing.
 *   The slot, and so seq, is the thread's current execution context's
 *   (lt_context.h): a signal handler that interrupts a section runs in the
 *   next context, with a slot of its own.
 *   The reclaimer (Quiescence.swift) unpublishes, issues membarrier, then
 *   treats a thread as quiescent when (a) seq was odd and has changed, or
 *   (b) seq advanced by >= 2, or (c) seq is unchanged and even and the thread
 *   is blocked with its PC outside [lt_tramp_text] and the JIT regions (it is
 *   then not between the site's jump and E1), (d) it has exited, or (e) its
 *   seq is unchanged and even and it has since run 1 ms of CPU time (the
 *   site-to-E1 stretch is ~20 straight-line instructions). Residual risk: a
 *   signal handler interrupting that stretch during a grace period.
 *   A leaf stub (StubX86_64.swift) has no E1/E2 at all: its callback is a
 *   loop-free leaf of at most 64 instructions, so a thread inside it is seen
 *   by (c) — the callback's code counts as a watched range — and (e).
 */
#ifndef LT_TRAMP_H
#define LT_TRAMP_H
#include <stdint.h>
#include "livetrace.h"
#include "lt_tramp_layout.h"

/* The C-side ops, read by trampolines and the iterator. Owned by the Swift
 * runtime (Ops.swift), freed only after quiescence. */
struct lt_ops {
    lt_func func;        /* +0 */
    void *data;          /* +8 */
    uint32_t flags;      /* +16 */
    uint32_t magic;      /* +20: LT_OPS_MAGIC while alive */
    void *owner;         /* +24: the Swift object (unretained) */
};
#define LT_OPS_MAGIC 0x4c544f50u

/* The per-site iterator list: immutable once published. */
struct lt_iter_list {
    uint64_t count;
    lt_ops *ops[];
};

/* The record after a stub's code (stub + 16; StubX86_64.swift writes it at
 * the LT_LAYOUT_RECORD_* offsets): what the entry calls, with what, and where
 * the function continues. Immutable once the stub is published. */
struct lt_stub_record {
    uintptr_t func;     /* the lt_func the entry calls */
    uintptr_t ops;      /* its `ops` argument */
    uintptr_t resume;   /* the site + 5, or a relocated entry's stub */
    uintptr_t site;     /* the site: the `ip` callbacks get */
};

/* One thread's state, in a static table so the reclaimer can always read it.
 * seq: written only by its thread (E1/E2), read by the reclaimer. */
struct lt_thread_slot {
    uint64_t seq;               /* +0  odd while inside the callback section */
    uint64_t skipped;           /* +8  calls skipped by the recursion guard */
    int32_t tid;                /* +16 0 when free; written by claim/release */
    uint8_t ready;              /* +20 the exit destructor is registered */
    uint8_t active;             /* +21 1 while its execution context is current or
                                 *     suspended under a handler (lt_context.h); 0
                                 *     for a handler's context that has returned */
    uint8_t pad[42];
};
#define LT_THREAD_SLOTS 4096

extern struct lt_thread_slot lt_thread_slots[LT_THREAD_SLOTS];
/* The calling thread's slot, or NULL before its first trampoline (initial-exec). */
extern __thread struct lt_thread_slot *lt_thread_self __attribute__((tls_model("initial-exec")));
/* Threads that could not get a slot (table full): their calls are skipped. */
extern uint64_t lt_thread_overflow;
/* errno's offset from the thread pointer (static TLS of libc), set at load. */
extern intptr_t lt_errno_tpoff;
/* This thread's errno, reached like the trampoline does (no call to
 * __errno_location through the PLT on the hot paths). Valid once the
 * library's constructors ran. */
static inline int *lt_errno_slot(void) {
    uintptr_t thread_pointer;
    __asm__("mov %%fs:0, %0" : "=r"(thread_pointer));
    return (int *)(thread_pointer + lt_errno_tpoff);
}

/* The common entry of every stub, and the bounds of the code that runs
 * between a site's jump and E1 (section lt_tramp_text). */
void lt_tramp_entry(void);
void lt_tramp_iterate(uintptr_t ip, uintptr_t parent_ip, lt_ops *list, lt_regs *regs);
uintptr_t lt_tramp_entry_address(void);
void lt_tramp_entry_lean(void);
uintptr_t lt_tramp_entry_lean_address(void);
/* The function graph's entry (fast path in lt_graph.c, else the lean entry). */
void lt_tramp_entry_graph(void);
uintptr_t lt_tramp_entry_graph_address(void);
uintptr_t lt_tramp_iterate_address(void);
uintptr_t lt_tramp_text_start(void);
uintptr_t lt_tramp_text_end(void);

/* Slot management. claim: the slow path of the first entry on a thread (no
 * libc call, no blocking system call). finish_claim: after E1, registers the
 * thread-exit destructor that frees the slot. */
struct lt_thread_slot *lt_thread_claim(void);
void lt_thread_finish_claim(struct lt_thread_slot *slot);
/* Sum of all slots' skipped counters plus the overflow count. */
uint64_t lt_skipped_calls(void);
/* The callback of a function replacement: continues the call at
 * (uintptr_t)ops->data. A MODIFY_RESUME ops. */
void lt_tramp_replace_callback(uintptr_t ip, uintptr_t parent_ip, lt_ops *ops, lt_regs *regs);
/* A callback that does nothing (benchmarks, tests). */
void lt_tramp_empty_callback(uintptr_t ip, uintptr_t parent_ip, lt_ops *ops, lt_regs *regs);

/* The caller's seq (0 when it has no slot); odd (1) when any context of
 * the calling thread is inside a callback section (lt_context.h). */
uint64_t lt_thread_current_seq(void);
/* Relaxed atomic loads for the reclaimer. */
static inline uint64_t lt_slot_load_seq(const struct lt_thread_slot *s) {
    return __atomic_load_n(&s->seq, __ATOMIC_ACQUIRE);
}
static inline int32_t lt_slot_load_tid(const struct lt_thread_slot *s) {
    return __atomic_load_n(&s->tid, __ATOMIC_ACQUIRE);
}
static inline uint8_t lt_slot_load_active(const struct lt_thread_slot *s) {
    return __atomic_load_n(&s->active, __ATOMIC_ACQUIRE);
}
static inline uint64_t lt_slot_load_skipped(const struct lt_thread_slot *s) {
    return __atomic_load_n(&s->skipped, __ATOMIC_RELAXED);
}
static inline struct lt_thread_slot *lt_thread_slot_at(int i) { return &lt_thread_slots[i]; }

#endif
