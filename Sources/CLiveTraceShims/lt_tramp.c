/* lt_tramp.c — the C half of the trampolines: thread slots for the
 * quiescence protocol, the iterator, and the small C API functions that the
 * hot path or a callback calls (lt_regs_set_resume, lt_ops_data).
 * See lt_tramp.h for the protocol; Quiescence.swift is the reclaimer. */
#define _GNU_SOURCE
#include "lt_tramp.h"
#include "lt_context.h"
#include "lt_sys.h"
#include <errno.h>
#include <pthread.h>
#include <stddef.h>
#include <unistd.h>

#define LT_HIDDEN __attribute__((visibility("hidden")))

struct lt_thread_slot lt_thread_slots[LT_THREAD_SLOTS] __attribute__((aligned(64)));
LT_HIDDEN uint64_t lt_thread_overflow;
LT_HIDDEN intptr_t lt_errno_tpoff;
static pthread_key_t lt_thread_exit_key;

/* Every offset lt_tramp_x86_64.S uses (lt_tramp_layout.h) against the C layout. */
_Static_assert(sizeof(struct lt_regs) == LT_LAYOUT_REGS_SIZE, "lt_regs size");
_Static_assert(offsetof(struct lt_regs, rdi) == LT_LAYOUT_REGS_RDI, "lt_regs rdi");
_Static_assert(offsetof(struct lt_regs, rsi) == LT_LAYOUT_REGS_RSI, "lt_regs rsi");
_Static_assert(offsetof(struct lt_regs, rdx) == LT_LAYOUT_REGS_RDX, "lt_regs rdx");
_Static_assert(offsetof(struct lt_regs, rcx) == LT_LAYOUT_REGS_RCX, "lt_regs rcx");
_Static_assert(offsetof(struct lt_regs, r8) == LT_LAYOUT_REGS_R8, "lt_regs r8");
_Static_assert(offsetof(struct lt_regs, r9) == LT_LAYOUT_REGS_R9, "lt_regs r9");
_Static_assert(offsetof(struct lt_regs, rax) == LT_LAYOUT_REGS_RAX, "lt_regs rax");
_Static_assert(offsetof(struct lt_regs, r10) == LT_LAYOUT_REGS_R10, "lt_regs r10");
_Static_assert(offsetof(struct lt_regs, r12) == LT_LAYOUT_REGS_R12, "lt_regs r12");
_Static_assert(offsetof(struct lt_regs, r13) == LT_LAYOUT_REGS_R13, "lt_regs r13");
_Static_assert(offsetof(struct lt_regs, r14) == LT_LAYOUT_REGS_R14, "lt_regs r14");
_Static_assert(offsetof(struct lt_regs, rsp) == LT_LAYOUT_REGS_RSP, "lt_regs rsp");
_Static_assert(offsetof(struct lt_regs, resume) == LT_LAYOUT_REGS_RESUME, "lt_regs resume");
_Static_assert(offsetof(struct lt_regs, current) == LT_LAYOUT_REGS_CURRENT, "lt_regs current");
_Static_assert(offsetof(struct lt_regs, saved_errno) == LT_LAYOUT_REGS_ERRNO, "lt_regs errno");
_Static_assert(offsetof(struct lt_regs, xmm) == LT_LAYOUT_REGS_XMM, "lt_regs xmm");
_Static_assert(LT_LAYOUT_FRAME_RECORD == LT_LAYOUT_REGS_SIZE, "the record pointer follows lt_regs");
_Static_assert(LT_LAYOUT_TRAMP_FRAME_SIZE % 16 == 0 && LT_LAYOUT_TRAMP_FRAME_SIZE >= LT_LAYOUT_FRAME_RECORD + 8,
               "the frame holds lt_regs and the record pointer, 16-byte aligned");
_Static_assert(offsetof(struct lt_stub_record, func) == LT_LAYOUT_RECORD_FUNC, "record func");
_Static_assert(offsetof(struct lt_stub_record, ops) == LT_LAYOUT_RECORD_OPS, "record ops");
_Static_assert(offsetof(struct lt_stub_record, resume) == LT_LAYOUT_RECORD_RESUME, "record resume");
_Static_assert(offsetof(struct lt_stub_record, site) == LT_LAYOUT_RECORD_SITE, "record site");
_Static_assert(sizeof(struct lt_stub_record) == LT_LAYOUT_RECORD_SIZE, "record size");
_Static_assert(offsetof(struct lt_thread_slot, seq) == LT_LAYOUT_SLOT_SEQ, "slot seq");
_Static_assert(offsetof(struct lt_thread_slot, skipped) == LT_LAYOUT_SLOT_SKIPPED, "slot skipped");
_Static_assert(offsetof(struct lt_thread_slot, ready) == LT_LAYOUT_SLOT_READY, "slot ready");
_Static_assert(sizeof(struct lt_thread_slot) == 64, "one slot per cache line");

extern char __start_lt_tramp_text[];
extern char __stop_lt_tramp_text[];
uintptr_t lt_tramp_entry_address(void) { return (uintptr_t)&lt_tramp_entry; }
uintptr_t lt_tramp_entry_lean_address(void) { return (uintptr_t)&lt_tramp_entry_lean; }
uintptr_t lt_tramp_entry_graph_address(void) { return (uintptr_t)&lt_tramp_entry_graph; }
uintptr_t lt_tramp_iterate_address(void) { return (uintptr_t)&lt_tramp_iterate; }
uintptr_t lt_tramp_text_start(void) { return (uintptr_t)__start_lt_tramp_text; }
uintptr_t lt_tramp_text_end(void) { return (uintptr_t)__stop_lt_tramp_text; }

static uintptr_t lt_thread_pointer(void) {
    uintptr_t tp;
    __asm__ volatile("mov %%fs:0, %0" : "=r"(tp));
    return tp;
}

/* Thread exit: the slot of every context of the thread goes back (the key's
 * value is only what made the destructor run). */
static void lt_thread_exit(void *value) {
    (void)value;
    uint32_t current = lt_contexts.level;
    for (uint32_t level = 0; level < LT_CONTEXT_LEVELS; level++) {
        lt_context_install(level);
        struct lt_thread_slot *slot = lt_thread_self;
        if (slot == NULL) continue;
        lt_context_set_slot(NULL);
        /* A thread that exits from inside a callback (pthread_exit) leaves
         * the section here: an even seq, then a free slot. */
        if (__atomic_load_n(&slot->seq, __ATOMIC_RELAXED) & 1)
            __atomic_store_n(&slot->seq, slot->seq + 1, __ATOMIC_RELEASE);
        slot->ready = 0;
        __atomic_store_n(&slot->active, 0, __ATOMIC_RELAXED);
        __atomic_store_n(&slot->tid, 0, __ATOMIC_RELEASE);
    }
    lt_context_install(current);
}

__attribute__((constructor)) static void lt_tramp_init(void) {
    lt_errno_tpoff = (intptr_t)&errno - (intptr_t)lt_thread_pointer();
    pthread_key_create(&lt_thread_exit_key, lt_thread_exit);
}

/* Runs between a site's call and E1, so it lives in lt_tramp_text and calls
 * neither libc nor a blocking system call: the reclaimer reads a blocked
 * thread's PC to know it is not here. */
__attribute__((section("lt_tramp_text"), noinline)) LT_HIDDEN
struct lt_thread_slot *lt_thread_claim(void) {
    long tid = lt_sys_gettid_raw();
    for (int i = 0; i < LT_THREAD_SLOTS; i++) {
        int32_t expected = 0;
        if (__atomic_load_n(&lt_thread_slots[i].tid, __ATOMIC_RELAXED) != 0) continue;
        if (__atomic_compare_exchange_n(&lt_thread_slots[i].tid, &expected, (int32_t)tid, 0,
                                        __ATOMIC_ACQ_REL, __ATOMIC_RELAXED)) {
            lt_thread_slots[i].ready = 0;
            __atomic_store_n(&lt_thread_slots[i].active, 1, __ATOMIC_RELEASE);
            lt_context_set_slot(&lt_thread_slots[i]);
            return &lt_thread_slots[i];
        }
    }
    return NULL;
}

/* Runs after E1 (the thread is visible as inside): may call libc. */
LT_HIDDEN void lt_thread_finish_claim(struct lt_thread_slot *slot) {
    pthread_setspecific(lt_thread_exit_key, slot);
    slot->ready = 1;
}

/* The iterator: calls every ops of the site's immutable list, in order. */
void lt_tramp_iterate(uintptr_t ip, uintptr_t parent_ip, lt_ops *list_as_ops, lt_regs *regs) {
    const struct lt_iter_list *list = (const struct lt_iter_list *)list_as_ops;
    for (uint64_t i = 0; i < list->count; i++) {
        lt_ops *ops = list->ops[i];
        regs->current = ops;
        ops->func(ip, parent_ip, ops, regs);
    }
}

uint64_t lt_skipped_calls(void) {
    uint64_t total = __atomic_load_n(&lt_thread_overflow, __ATOMIC_RELAXED);
    for (int i = 0; i < LT_THREAD_SLOTS; i++)
        total += __atomic_load_n(&lt_thread_slots[i].skipped, __ATOMIC_RELAXED);
    return total;
}

uint64_t lt_thread_current_seq(void) {
    if (lt_context_inside_any_section()) return 1;
    struct lt_thread_slot *slot = lt_thread_self;
    return slot ? __atomic_load_n(&slot->seq, __ATOMIC_RELAXED) : 0;
}

void *lt_ops_data(const lt_ops *ops) {
    return ops ? ops->data : NULL;
}

int lt_regs_set_resume(lt_regs *regs, uintptr_t address) {
    if (!regs || address == 0) return -LT_EINVAL;
    const lt_ops *ops = regs->current;
    if (!ops || !(ops->flags & LT_OPS_MODIFY_RESUME)) return -LT_EPERM;
    regs->resume = address;
    return 0;
}

const char *lt_strerror(int error) {
    switch (error < 0 ? -error : error) {
    case LT_OK: return "success";
    case LT_EINVAL: return "invalid argument (NULL, malformed glob or address, unknown flag)";
    case LT_ENOENT: return "the filter matches no function with a usable site";
    case LT_EBUSY: return "another LT_OPS_MODIFY_RESUME ops already owns one of these functions";
    case LT_EALREADY: return "the ops is already registered (lt_trace_start: a recording is already running in this process)";
    case LT_ENOTREG: return "the ops is not registered (lt_trace_stop: no recording was started by lt_trace_start in this process)";
    case LT_ENOMEM: return "out of memory (no JIT memory within +-2 GiB of a site, or malloc failed)";
    case LT_EPATCH: return "the text poke refused or failed to patch a site";
    case LT_EPERM: return "lt_regs_set_resume needs an ops created with LT_OPS_MODIFY_RESUME";
    case LT_ETIMEDOUT: return "unregistered, but a thread stayed inside the callback: quiescence not reached in time";
    case LT_EDEADLK: return "called from inside a callback";
    case LT_ESITES: return "the sites of the process could not be read";
    case LT_ETRACEDIR: return "the trace directory could not be created or written (errno says why)";
    default: return "unknown LiveTrace error";
    }
}

void lt_tramp_replace_callback(uintptr_t ip, uintptr_t parent_ip, lt_ops *ops, lt_regs *regs) {
    (void)ip; (void)parent_ip;
    regs->resume = (uintptr_t)ops->data;
}

void lt_tramp_empty_callback(uintptr_t ip, uintptr_t parent_ip, lt_ops *ops, lt_regs *regs) {
    (void)ip; (void)parent_ip; (void)ops; (void)regs;
}
