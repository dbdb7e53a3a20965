/* lt_graph.c — the shadow stack of the function graph: entry callback, exit
 * handler, and the unwinders' restore/resume (protocol in lt_graph.h).
 *
 * Rules of this file:
 *   - the entry and exit paths take no lock, never allocate with malloc, and
 *     call libc only through raw system calls on their slow paths (mmap,
 *     sigaltstack, write): they run in signal handlers too;
 *   - no floating point, no long double: the return trampoline leaves the
 *     x87 stack (a long double result in st0) and MXCSR untouched, so nothing
 *     called from lt_graph_exit may use them;
 *   - errno is saved and restored around every path the traced program sees.
 */
#define _GNU_SOURCE
#include "lt_graph.h"
#include "lt_graph_layout.h"
#include "lt_record.h"
#include "lt_tramp.h"
#include "lt_context.h"
#include <dlfcn.h>
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <stddef.h>
#include <sys/auxv.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#define LT_HIDDEN __attribute__((visibility("hidden")))
#define lt_signal_fence() __atomic_signal_fence(__ATOMIC_SEQ_CST)

/* Frame states. FREE frames are being pushed or popped (or were left half
 * pushed by a siglongjmp): every reader skips them. */
enum lt_graph_frame_state {
    LT_FRAME_FREE = 0,
    LT_FRAME_HOOKED = 1,   /* the slot holds the return trampoline */
    LT_FRAME_RESTORED = 2, /* the slot holds the original (an unwinder runs) */
};
#define LT_FRAME_STATE_MASK 3u
#define LT_FRAME_SILENT 4u /* deeper than the depth limit: not recorded */

/* One frame, 32 bytes. */
struct lt_graph_frame {
    uintptr_t slot;           /* address of the return-address slot */
    uintptr_t return_address; /* what the slot held before the hook */
    uintptr_t function;       /* the site (recorded as the event address) */
    uint32_t state;           /* enum lt_graph_frame_state | LT_FRAME_SILENT */
    uint32_t reserved;
};

struct lt_graph_stack {
    uint32_t count;           /* frames[0 ..< count] are pushed */
    uint32_t graveyard_next;
    struct lt_graph_frame graveyard[LT_GRAPH_GRAVEYARD];
    struct lt_graph_frame frames[LT_GRAPH_STACK_CAPACITY];
};

/* This thread's shadow stack (lt_graph_self, defined with the other
 * context pointers in lt_context.c) and the depth limit: read by the
 * assembly fast paths too (hidden, initial-exec TLS). */
static struct lt_graph_stats lt_graph_counters;
uint32_t lt_graph_depth_limit __attribute__((visibility("hidden"))) = LT_GRAPH_STACK_CAPACITY;

/* The layout the assembly fast paths assume (lt_graph_layout.h). */
_Static_assert(offsetof(struct lt_thread_slot, seq) == LT_LAYOUT_SLOT_SEQ, "slot seq");
_Static_assert(offsetof(struct lt_thread_slot, ready) == LT_LAYOUT_SLOT_READY, "slot ready");
_Static_assert(offsetof(struct lt_graph_stack, count) == LT_LAYOUT_STACK_COUNT, "stack count");
_Static_assert(offsetof(struct lt_graph_stack, frames) == LT_LAYOUT_STACK_FRAMES, "stack frames");
_Static_assert(LT_GRAPH_STACK_CAPACITY == LT_LAYOUT_STACK_CAPACITY, "stack capacity");
_Static_assert(LT_GRAPH_STACK_CAPACITY <= LT_EVENT_DEPTH_MAX, "a depth never saturates on the fast paths");
_Static_assert(sizeof(struct lt_graph_frame) == LT_LAYOUT_FRAME_SIZE, "frame size");
_Static_assert(1u << LT_LAYOUT_FRAME_SHIFT == LT_LAYOUT_FRAME_SIZE, "frame shift");
_Static_assert(offsetof(struct lt_graph_frame, slot) == LT_LAYOUT_FRAME_SLOT, "frame slot");
_Static_assert(offsetof(struct lt_graph_frame, return_address) == LT_LAYOUT_FRAME_RETURN, "frame return");
_Static_assert(offsetof(struct lt_graph_frame, function) == LT_LAYOUT_FRAME_FUNCTION, "frame function");
_Static_assert(offsetof(struct lt_graph_frame, state) == LT_LAYOUT_FRAME_STATE, "frame state");
_Static_assert(LT_FRAME_FREE == LT_LAYOUT_FRAME_FREE && LT_FRAME_HOOKED == LT_LAYOUT_FRAME_HOOKED &&
               LT_FRAME_STATE_MASK == LT_LAYOUT_FRAME_STATE_MASK && LT_FRAME_SILENT == LT_LAYOUT_FRAME_SILENT,
               "frame states");
_Static_assert(offsetof(struct lt_thread_state, area) == LT_LAYOUT_WRITER_AREA, "writer area");
_Static_assert(offsetof(struct lt_thread_state, ring) == LT_LAYOUT_WRITER_RING, "writer ring");
_Static_assert(offsetof(struct lt_area_header, ring_capacity) == LT_LAYOUT_AREA_RING_CAPACITY, "ring capacity");
_Static_assert(offsetof(struct lt_ring_header, head) == LT_LAYOUT_RING_HEAD, "ring head");
_Static_assert(offsetof(struct lt_ring_header, lost_total) == LT_LAYOUT_RING_LOST_TOTAL, "ring lost_total");
_Static_assert(offsetof(struct lt_ring_header, lost_emitted) == LT_LAYOUT_RING_LOST_EMITTED, "ring lost_emitted");
_Static_assert(offsetof(struct lt_ring_header, limit) == LT_LAYOUT_RING_LIMIT, "ring limit");
_Static_assert(offsetof(struct lt_ring_header, busy) == LT_LAYOUT_RING_BUSY, "ring busy");
_Static_assert(offsetof(struct lt_ring_header, last_tsc) == LT_LAYOUT_RING_LAST_TSC &&
               offsetof(struct lt_ring_header, base) == LT_LAYOUT_RING_BASE &&
               offsetof(struct lt_ring_header, next_depth) == LT_LAYOUT_RING_NEXT_DEPTH, "ring encoder state");
_Static_assert(LT_RING_HEADER_SIZE == LT_LAYOUT_RING_RECORDS && sizeof(struct lt_ring_header) == LT_RING_HEADER_SIZE,
               "ring records");
_Static_assert(sizeof(uint64_t) == 1u << LT_LAYOUT_RECORD_SHIFT && LT_REC_DELTA_LIMIT == LT_LAYOUT_RECORD_DELTA_LIMIT,
               "record size and delta field");
_Static_assert(LT_LAYOUT_RING_PREFETCH_AHEAD == LT_RING_PREFETCH_AHEAD, "prefetch distance");
_Static_assert(LT_EVENT_DEPTH_SHIFT == LT_LAYOUT_EVENT_DEPTH_SHIFT &&
               LT_EVENT_ADDRESS_BITS == LT_LAYOUT_EVENT_ADDRESS_BITS && LT_EVENT_DEPTH_MAX == LT_LAYOUT_EVENT_DEPTH_MASK &&
               (uint64_t)LT_EVENT_ENTRY << LT_EVENT_KIND_SHIFT == 1ull << LT_LAYOUT_EVENT_ENTRY_BIT &&
               (uint64_t)LT_EVENT_EXIT << LT_EVENT_KIND_SHIFT == 1ull << LT_LAYOUT_EVENT_EXIT_BIT &&
               LT_EVENT_KIND_SHIFT == LT_REC_KIND_SHIFT && LT_EVENT_UNWOUND_SHIFT == LT_REC_FLAG_SHIFT,
               "event word");
static pthread_key_t lt_graph_exit_key;
static int lt_graph_key_ready;

#define lt_count(field) __atomic_fetch_add(&lt_graph_counters.field, 1, __ATOMIC_RELAXED)

uintptr_t lt_graph_return_trampoline_address(void) { return (uintptr_t)&lt_graph_return_trampoline; }

/* The return trampoline must outlive every hooked frame: a library holding
 * it is made RTLD_NODELETE before the first hook (dlclose would otherwise
 * unmap code that hooked frames still return to). */
int lt_graph_pin_code(void) {
    Dl_info info;
    if (dladdr((void *)&lt_graph_return_trampoline, &info) == 0 || info.dli_fname == NULL) return -1;
    /* The main program (its program headers lie in the same object) is
     * never unloaded. */
    Dl_info program;
    if (dladdr((void *)getauxval(AT_PHDR), &program) != 0 && program.dli_fbase == info.dli_fbase) return 0;
    return dlopen(info.dli_fname, RTLD_NOW | RTLD_NOLOAD | RTLD_NODELETE) != NULL ? 0 : -1;
}

void lt_graph_set_max_depth(uint32_t limit) {
    if (limit == 0 || limit > LT_GRAPH_STACK_CAPACITY) limit = LT_GRAPH_STACK_CAPACITY;
    __atomic_store_n(&lt_graph_depth_limit, limit, __ATOMIC_RELAXED);
}

uint32_t lt_graph_max_depth(void) { return __atomic_load_n(&lt_graph_depth_limit, __ATOMIC_RELAXED); }

void lt_graph_get_stats(struct lt_graph_stats *stats) {
    stats->overflow = __atomic_load_n(&lt_graph_counters.overflow, __ATOMIC_RELAXED);
    stats->unwound = __atomic_load_n(&lt_graph_counters.unwound, __ATOMIC_RELAXED);
    stats->restored = __atomic_load_n(&lt_graph_counters.restored, __ATOMIC_RELAXED);
    stats->rehooked = __atomic_load_n(&lt_graph_counters.rehooked, __ATOMIC_RELAXED);
    stats->recovered = __atomic_load_n(&lt_graph_counters.recovered, __ATOMIC_RELAXED);
    stats->no_stack = __atomic_load_n(&lt_graph_counters.no_stack, __ATOMIC_RELAXED);
    stats->stacks = __atomic_load_n(&lt_graph_counters.stacks, __ATOMIC_RELAXED);
}

uint32_t lt_graph_thread_depth(void) {
    struct lt_graph_stack *stack = lt_graph_self;
    return stack ? stack->count : 0;
}

/* ---- system calls (raw: async-signal-safe, errno untouched) ------------ */

static long lt_graph_syscall2(long number, long a, long b) {
    long result;
    __asm__ volatile("syscall" : "=a"(result) : "a"(number), "D"(a), "S"(b) : "rcx", "r11", "memory");
    return result;
}

static long lt_graph_syscall6(long number, long a, long b, long c, long d, long e, long f) {
    long result;
    register long r10 __asm__("r10") = d;
    register long r8 __asm__("r8") = e;
    register long r9 __asm__("r9") = f;
    __asm__ volatile("syscall" : "=a"(result)
                     : "a"(number), "D"(a), "S"(b), "d"(c), "r"(r10), "r"(r8), "r"(r9)
                     : "rcx", "r11", "memory");
    return result;
}

/* mmap(2) of a private anonymous region; NULL on failure. (mmap does not
 * fail with EINTR.) */
static void *lt_graph_sys_map(size_t size) {
    long r = lt_graph_syscall6(SYS_mmap, 0, (long)size, PROT_READ | PROT_WRITE,
                               MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    return (r < 0 && r > -4096) ? NULL : (void *)r;
}

static void lt_graph_sys_unmap(void *address, size_t size) {
    (void)lt_graph_syscall2(SYS_munmap, (long)address, (long)size);
}

/* sigaltstack(2) query: 1 and the stack's bounds when the thread runs on its
 * alternate signal stack now. */
static int lt_graph_sys_on_altstack(uintptr_t *low, uintptr_t *high) {
    stack_t current;
    if (lt_graph_syscall2(SYS_sigaltstack, 0, (long)&current) != 0) return 0;
    if (!(current.ss_flags & SS_ONSTACK)) return 0;
    *low = (uintptr_t)current.ss_sp;
    *high = (uintptr_t)current.ss_sp + current.ss_size;
    return 1;
}

static void lt_graph_sys_write_stderr(const char *text, size_t length) {
    while (length > 0) {
        long r = lt_graph_syscall6(SYS_write, 2, (long)text, (long)length, 0, 0, 0);
        if (r == -EINTR) continue;
        if (r <= 0) return;
        text += r;
        length -= (size_t)r;
    }
}

/* ---- the guard ------------------------------------------------------------ */

/* The exit and the unwinders' paths change the shadow stack and write the
 * event in two steps. They run inside the context's callback section, as
 * the entry callback does (odd seq, lt_tramp.h): a traced call that the
 * same context makes from here (a traced libc function, say) is skipped by
 * the recursion guard and counted. A signal handler that interrupts them
 * runs in the next context (lt_context.h), with its own shadow stack and
 * ring, so its calls are recorded and cannot tear this one's stack or
 * stream. The reclaimer sees a thread here as inside a section: it waits a
 * few nanoseconds more, never less. */
static inline struct lt_thread_slot *lt_graph_guard_enter(void) {
    struct lt_thread_slot *slot = lt_thread_self;
    if (slot == NULL || (__atomic_load_n(&slot->seq, __ATOMIC_RELAXED) & 1)) return NULL;
    __atomic_store_n(&slot->seq, slot->seq + 1, __ATOMIC_RELAXED);
    lt_signal_fence();
    return slot;
}

static inline void lt_graph_guard_leave(struct lt_thread_slot *slot) {
    if (slot == NULL) return;
    lt_signal_fence();
    __atomic_store_n(&slot->seq, slot->seq + 1, __ATOMIC_RELEASE);
}

/* ---- the per-thread stack ---------------------------------------------- */

static void lt_graph_pop_unwound(struct lt_graph_stack *stack);

/* Pushes frame `index` (the new top): FREE, count+1, fields, state, each
 * step behind a signal fence (see lt_graph.h). Returns whether the frame is
 * recorded (within the depth limit) or SILENT. lt_tramp_entry_graph's step 3
 * does the same stores in the same order. */
static inline int lt_graph_push_frame(struct lt_graph_stack *stack, uint32_t index, uintptr_t slot,
                                      uintptr_t return_address, uintptr_t function) {
    struct lt_graph_frame *frame = &stack->frames[index];
    frame->state = LT_FRAME_FREE;
    lt_signal_fence();
    stack->count = index + 1;
    lt_signal_fence();
    frame->slot = slot;
    frame->return_address = return_address;
    frame->function = function;
    int recorded = index < __atomic_load_n(&lt_graph_depth_limit, __ATOMIC_RELAXED);
    lt_signal_fence();
    frame->state = LT_FRAME_HOOKED | (recorded ? 0 : LT_FRAME_SILENT);
    lt_signal_fence();
    return recorded;
}

/* Releases the top frame `index` (already copied by the caller): FREE, then
 * count-1, each behind a signal fence, so that a signal handler pushing
 * meanwhile never sees a counted frame half released. The return
 * trampoline's fast exit (step 0b) does the same. */
static inline void lt_graph_release_top(struct lt_graph_stack *stack, uint32_t index) {
    stack->frames[index].state = LT_FRAME_FREE;
    lt_signal_fence();
    stack->count = index;
    lt_signal_fence();
}

/* Thread exit: normally every frame has returned or been unwound (the start
 * routine returned, or pthread_exit unwound it: lt_unwind.c). Frames left
 * are those of a thread ended by cancellation (glibc's unwinder is reached
 * through its own handle, stops at the first hooked frame and ends the
 * thread): their exits are recorded UNWOUND now — or counted lost if the
 * thread's ring was released first. Then the stack goes back. */
static void lt_graph_thread_exit(void *value) {
    (void)value; /* every context's stack goes, whichever set the key */
    uint32_t current = lt_contexts.level;
    for (uint32_t level = 0; level < LT_CONTEXT_LEVELS; level++) {
        lt_context_install(level);
        struct lt_graph_stack *stack = lt_graph_self;
        if (stack == NULL) continue;
        while (stack->count > 0) lt_graph_pop_unwound(stack);
        lt_context_set_graph(NULL);
        lt_graph_sys_unmap(stack, sizeof *stack);
    }
    lt_context_install(current);
}

__attribute__((constructor)) static void lt_graph_init(void) {
    if (pthread_key_create(&lt_graph_exit_key, lt_graph_thread_exit) == 0)
        __atomic_store_n(&lt_graph_key_ready, 1, __ATOMIC_RELEASE);
}

/* First traced call of a thread. Called from the entry callback (after E1,
 * where libc is allowed); pthread_setspecific only writes the thread's own
 * key array for a key from a constructor. */
static __attribute__((noinline)) struct lt_graph_stack *lt_graph_stack_create(void) {
    struct lt_graph_stack *stack = lt_graph_sys_map(sizeof(struct lt_graph_stack));
    if (stack == NULL) return NULL;
    lt_context_set_graph(stack);
    if (__atomic_load_n(&lt_graph_key_ready, __ATOMIC_ACQUIRE))
        pthread_setspecific(lt_graph_exit_key, stack);
    lt_count(stacks);
    return stack;
}

static void lt_graph_bury(struct lt_graph_stack *stack, const struct lt_graph_frame *frame) {
    uint32_t index = stack->graveyard_next++ % LT_GRAPH_GRAVEYARD;
    stack->graveyard[index] = *frame;
}

/* Pops the top frame as unwound: copy, FREE, count-1, then the UNWOUND exit
 * (the record comes last so that a signal handler pushing meanwhile finds a
 * consistent stack). */
static __attribute__((noinline)) void lt_graph_pop_unwound(struct lt_graph_stack *stack) {
    uint32_t index = stack->count - 1;
    struct lt_graph_frame frame = stack->frames[index];
    lt_signal_fence();
    lt_graph_release_top(stack, index);
    uint32_t state = frame.state & LT_FRAME_STATE_MASK;
    if (state == LT_FRAME_FREE) return;
    if (state == LT_FRAME_HOOKED) lt_graph_bury(stack, &frame);
    if (!(frame.state & LT_FRAME_SILENT)) {
        lt_record_exit(frame.function, index, LT_EVENT_FLAG_UNWOUND);
        lt_count(unwound);
    }
}

/* Step 1 of the entry: frames whose slot is below the new call's slot
 * (`slot`) on the same stack are dead (left by longjmp or an unwinder); so
 * are RESTORED frames whose slot was overwritten.
 * Equal slots: the new function was tail-called by the hooked frame (its
 * return address is the trampoline: the frame is alive) or the dead frame's
 * slot was reused by this call (it is not). A thread on its alternate signal
 * stack pops only frames on that stack. */
static __attribute__((noinline)) void lt_graph_pop_dead(struct lt_graph_stack *stack, uintptr_t slot, int tail_call) {
    int checked_altstack = 0;
    uintptr_t alt_low = 0, alt_high = 0;
    int on_altstack = 0;
    while (stack->count > 0) {
        const struct lt_graph_frame *top = &stack->frames[stack->count - 1];
        uint32_t state = top->state & LT_FRAME_STATE_MASK;
        if (state == LT_FRAME_FREE) return;
        /* A RESTORED frame (an unwinder runs) whose slot no longer holds its
         * return address was unwound and its slot reused by a cleanup's
         * call: dead, wherever it lies. (Only RESTORED frames are read this
         * way: they are on the stack being unwound, which is mapped.) */
        if (state == LT_FRAME_RESTORED && *(volatile uintptr_t *)top->slot != top->return_address) {
            lt_graph_pop_unwound(stack);
            continue;
        }
        if (top->slot > slot || (top->slot == slot && tail_call)) return;
        if (!checked_altstack) {
            on_altstack = lt_graph_sys_on_altstack(&alt_low, &alt_high);
            checked_altstack = 1;
        }
        if (on_altstack && (top->slot < alt_low || top->slot >= alt_high)) return;
        lt_graph_pop_unwound(stack);
    }
}

/* The calling thread's shadow stack (created on its first entry; NULL,
 * counted, when that fails) with step 1 done: the frames the entry at
 * return slot `slot` proves dead are popped (the common case, a call nested
 * in the top frame, inline). */
static inline struct lt_graph_stack *lt_graph_stack_for_entry(uintptr_t slot, uintptr_t parent_ip) {
    struct lt_graph_stack *stack = lt_graph_self;
    if (__builtin_expect(stack == NULL, 0)) {
        stack = lt_graph_stack_create();
        if (stack == NULL) {
            lt_count(no_stack);
            return NULL;
        }
    }
    uint32_t index = stack->count;
    if (index > 0) {
        const struct lt_graph_frame *top = &stack->frames[index - 1];
        if (__builtin_expect(top->slot <= slot || (top->state & LT_FRAME_STATE_MASK) != LT_FRAME_HOOKED, 0))
            lt_graph_pop_dead(stack, slot, parent_ip == (uintptr_t)&lt_graph_return_trampoline);
    }
    return stack;
}

void lt_graph_entry_callback(uintptr_t ip, uintptr_t parent_ip, lt_ops *ops, lt_regs *regs) {
    (void)ops;
    uintptr_t slot = regs->rsp;
    /* Step 1. */
    struct lt_graph_stack *stack = lt_graph_stack_for_entry(slot, parent_ip);
    if (stack == NULL) return;
    uint32_t index = stack->count;
    if (__builtin_expect(index >= LT_GRAPH_STACK_CAPACITY, 0)) {
        lt_count(overflow);
        return;
    }
    /* Step 2. */
    int recorded = lt_graph_push_frame(stack, index, slot, parent_ip, ip);
    /* Step 3. */
    if (recorded) lt_record_entry(ip, index);
    /* Step 4. */
    *(volatile uintptr_t *)slot = (uintptr_t)&lt_graph_return_trampoline;
}

void lt_graph_entry_only_callback(uintptr_t ip, uintptr_t parent_ip, lt_ops *ops, lt_regs *regs) {
    (void)ops;
    struct lt_graph_stack *stack = lt_graph_stack_for_entry(regs->rsp, parent_ip);
    if (stack == NULL) return;
    uint32_t index = stack->count;
    if (index < __atomic_load_n(&lt_graph_depth_limit, __ATOMIC_RELAXED)) lt_record_entry_flags(ip, index, LT_EVENT_FLAG_ENTRY_ONLY);
}

/* The common cases of lt_graph_entry_callback and lt_graph_exit run in
 * assembly, in lt_tramp_entry_graph (lt_tramp_x86_64.S) and at the top of
 * the return trampoline (lt_return_x86_64.S): the same checks, the same
 * stores in the same order, behind the same guard, with a handful of
 * registers pushed instead of a C frame. They reach lt_graph_self,
 * lt_graph_depth_limit and the writer's state through the offsets in
 * lt_graph_layout.h, checked above. Anything unusual falls back here. */

/* A function entered in a lower context returns while a higher one is
 * current: the thread left signal handlers by longjmp/siglongjmp and went
 * on running on their context (lt_context.h). If the HOOKED frame of
 * `slot` is on a lower context's stack: every frame of the abandoned
 * contexts is recorded unwound (in their own streams), the lower context
 * becomes current again, and 1 is returned. */
static __attribute__((noinline)) int lt_graph_return_to_lower_context(uintptr_t slot) {
    uint32_t current = lt_contexts.level;
    for (uint32_t level = current; level-- > 0;) {
        struct lt_graph_stack *stack = lt_contexts.frames[level].graph;
        if (stack == NULL) continue;
        for (uint32_t i = stack->count; i > 0; i--) {
            const struct lt_graph_frame *frame = &stack->frames[i - 1];
            if ((frame->state & LT_FRAME_STATE_MASK) != LT_FRAME_HOOKED || frame->slot != slot) continue;
            for (uint32_t abandoned = current; abandoned > level; abandoned--) {
                lt_context_install(abandoned);
                struct lt_graph_stack *dead = lt_graph_self;
                while (dead != NULL && dead->count > 0) lt_graph_pop_unwound(dead);
            }
            lt_context_install(level);
            /* The handler had interrupted this context inside tracer code
             * (that is why it had a context of its own), and that code will
             * never resume: its section and its ring write end here. Its
             * event, never published, is overwritten by the next. */
            struct lt_thread_slot *section = lt_thread_self;
            if (section != NULL && (__atomic_load_n(&section->seq, __ATOMIC_RELAXED) & 1))
                __atomic_store_n(&section->seq, section->seq + 1, __ATOMIC_RELEASE);
            if (lt_thread.ring != NULL) __atomic_store_n(&lt_thread.ring->busy, 0, __ATOMIC_RELEASE);
            return 1;
        }
    }
    return 0;
}

static const char lt_graph_lost_message[] =
    "livetrace: a function returned through the return trampoline with no shadow-stack frame for its "
    "return slot (its stack was switched by a mechanism LiveTrace does not follow, e.g. swapcontext); "
    "the original return address is unknown, aborting\n";

/* The exit (called by lt_graph_return_trampoline with the slot the function
 * returned through):
 *   1. find the HOOKED frame of `slot`, from the top;
 *   2. pop the frames above it as unwound (dead: deeper than a returning frame);
 *   3. write the original return address back into the slot (backtraces
 *      taken from here on see the real caller), pop the frame, record the exit;
 *   4. return the original return address to the trampoline. */
uintptr_t lt_graph_exit(uintptr_t slot) {
    int *errno_slot = lt_errno_slot();
    int saved_errno = *errno_slot;
    struct lt_thread_slot *guard = lt_graph_guard_enter();
    struct lt_graph_stack *stack = lt_graph_self;
    uint32_t found = 0;
    if (stack != NULL) {
        /* Step 1. */
        for (uint32_t i = stack->count; i > 0; i--) {
            const struct lt_graph_frame *frame = &stack->frames[i - 1];
            if ((frame->state & LT_FRAME_STATE_MASK) == LT_FRAME_HOOKED && frame->slot == slot) {
                found = i;
                break;
            }
        }
    }
    if (__builtin_expect(found == 0, 0) && lt_contexts.level > 0 && lt_graph_return_to_lower_context(slot)) {
        lt_graph_guard_leave(guard);
        *errno_slot = saved_errno;
        return lt_graph_exit(slot);
    }
    if (__builtin_expect(found == 0, 0)) {
        /* A frame popped as dead that was alive (the only way here). */
        for (uint32_t i = 0; stack != NULL && i < LT_GRAPH_GRAVEYARD; i++) {
            struct lt_graph_frame *frame = &stack->graveyard[i];
            if (frame->state != LT_FRAME_FREE && frame->slot == slot) {
                uintptr_t original = frame->return_address;
                frame->state = LT_FRAME_FREE;
                *(volatile uintptr_t *)slot = original;
                lt_count(recovered);
                lt_graph_guard_leave(guard);
                *errno_slot = saved_errno;
                return original;
            }
        }
        lt_graph_sys_write_stderr(lt_graph_lost_message, sizeof lt_graph_lost_message - 1);
        abort();
    }
    /* Step 2. */
    while (stack->count > found) lt_graph_pop_unwound(stack);
    /* Step 3. */
    uint32_t index = found - 1;
    struct lt_graph_frame frame = stack->frames[index];
    *(volatile uintptr_t *)slot = frame.return_address;
    lt_signal_fence();
    lt_graph_release_top(stack, index);
    if (!(frame.state & LT_FRAME_SILENT)) lt_record_exit(frame.function, index, 0);
    lt_graph_guard_leave(guard);
    *errno_slot = saved_errno;
    /* Step 4. */
    return frame.return_address;
}

/* ---- unwinders (called by lt_unwind.c) ----------------------------------- */

/* Top down, so that a tail-called frame (whose original return address is
 * the trampoline, sharing its caller's slot) is restored before its caller. */
static void lt_graph_restore_frames(void) {
    struct lt_graph_stack *stack = lt_graph_self;
    if (stack == NULL) return;
    uintptr_t trampoline = (uintptr_t)&lt_graph_return_trampoline;
    for (uint32_t i = stack->count; i > 0; i--) {
        struct lt_graph_frame *frame = &stack->frames[i - 1];
        if ((frame->state & LT_FRAME_STATE_MASK) != LT_FRAME_HOOKED) continue;
        volatile uintptr_t *slot = (volatile uintptr_t *)frame->slot;
        if (*slot != trampoline) continue;
        *slot = frame->return_address;
        lt_signal_fence();
        frame->state = (frame->state & ~LT_FRAME_STATE_MASK) | LT_FRAME_RESTORED;
        lt_count(restored);
    }
}

/* Bottom up: a caller is hooked before the frame it tail-called. */
static void lt_graph_resume_frames(uintptr_t sp) {
    struct lt_graph_stack *stack = lt_graph_self;
    if (stack == NULL) return;
    while (stack->count > 0) {
        const struct lt_graph_frame *top = &stack->frames[stack->count - 1];
        if ((top->state & LT_FRAME_STATE_MASK) != LT_FRAME_FREE && top->slot >= sp) break;
        lt_graph_pop_unwound(stack);
    }
    uintptr_t trampoline = (uintptr_t)&lt_graph_return_trampoline;
    for (uint32_t i = 0; i < stack->count; i++) {
        struct lt_graph_frame *frame = &stack->frames[i];
        if ((frame->state & LT_FRAME_STATE_MASK) != LT_FRAME_RESTORED) continue;
        volatile uintptr_t *slot = (volatile uintptr_t *)frame->slot;
        if (*slot != frame->return_address) continue;
        frame->state = (frame->state & ~LT_FRAME_STATE_MASK) | LT_FRAME_HOOKED;
        lt_signal_fence();
        *slot = trampoline;
        lt_count(rehooked);
    }
}

static void lt_graph_unwind_frames(void) {
    struct lt_graph_stack *stack = lt_graph_self;
    if (stack == NULL) return;
    lt_graph_restore_frames();
    while (stack->count > 0) lt_graph_pop_unwound(stack);
}

void lt_graph_restore_thread(void) {
    struct lt_thread_slot *guard = lt_graph_guard_enter();
    lt_graph_restore_frames();
    lt_graph_guard_leave(guard);
}

void lt_graph_resume_thread(uintptr_t sp) {
    struct lt_thread_slot *guard = lt_graph_guard_enter();
    lt_graph_resume_frames(sp);
    lt_graph_guard_leave(guard);
}

int lt_graph_restore_thread_for_walk(void) {
    struct lt_thread_slot *guard = lt_graph_guard_enter();
    if (guard == NULL) return 0;
    /* An unwinder is running (frames RESTORED by it): the resume after the
     * walk would hook them under its feet. Leave the stack as it is. */
    struct lt_graph_stack *stack = lt_graph_self;
    for (uint32_t i = 0; stack != NULL && i < stack->count; i++) {
        if ((stack->frames[i].state & LT_FRAME_STATE_MASK) == LT_FRAME_RESTORED) {
            lt_graph_guard_leave(guard);
            return 0;
        }
    }
    lt_graph_restore_frames();
    lt_graph_guard_leave(guard);
    return 1;
}

void lt_graph_unwind_thread(void) {
    struct lt_thread_slot *guard = lt_graph_guard_enter();
    lt_graph_unwind_frames();
    lt_graph_guard_leave(guard);
}
