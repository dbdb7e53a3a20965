/* The writer side of recording (see include/lt_record.h and lt_ring.h).
 *
 * Per-thread state lives in one initial-exec TLS block: reading it is a
 * single %fs-relative load, with no call into the dynamic linker and no
 * allocation, which is why this layer is C.
 *
 * Stop protocol (lt_record_detach), an asymmetric Dekker pairing:
 *
 *   writer                               stopper
 *   ring->busy = 1                       active_area = NULL
 *   compiler barrier                     membarrier(PRIVATE_EXPEDITED)
 *   if active_area != area: leave ─┐       (a full barrier on every running
 *   write event, publish head      │        thread of the process)
 *   ring->busy = 0 (release)       └──   wait until every ring's busy == 0
 *
 * The membarrier orders each writer's busy store before its re-load of
 * active_area: either the writer sees NULL and leaves, or the stopper sees
 * busy == 1 and waits for it. After the wait no writer stores an event in
 * the area. A writer preempted between its first load of active_area and its
 * busy store may still store busy (then leave), so an area is never unmapped
 * once attached: it costs address space, and the file behind it may be
 * unlinked.
 *
 * Reuse of a released area's addresses (lt_record_release_area, then
 * lt_record_attach_file): a thread keeps its writer state (lt_thread.area,
 * .ring, and a copy per execution context) until its next event, and
 * passes the hot path's check whenever the attached area has the same
 * address. A later area at the same address therefore must give each such
 * thread the ring it points to: the release copies the owner line of every
 * ring still owned by a live thread of this process into the reservation,
 * and the attach claims those rings for those threads before the area is
 * published. A claim that races with the detach could escape that copy:
 *
 *   claimer (lt_record_event_unowned)    stopper (lt_record_detach)
 *   g = detaches                         active_area = NULL
 *   if active_area != area: leave        detaches += 1 (a full barrier)
 *   claim a ring, set its writer state   ...release: copy the owner lines
 *   full fence
 *   if detaches != g: drop the writer state
 *
 * Either the claimer sees the detach and forgets the ring (which at worst
 * stays claimed by a thread that no longer writes to it), or its claim was
 * complete before the count changed and the copy sees it.
 */
#define _GNU_SOURCE
#include "lt_record.h"
#include "lt_context.h"
#include "lt_sys.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/futex.h>
#include <pthread.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

/* ---- per-thread and process state ------------------------------------ */

__thread struct lt_thread_state lt_thread __attribute__((tls_model("initial-exec")));

/* Written by attach/detach only (serialised by lt_control_lock); read by
 * every writer with an acquire load. */
struct lt_area_header *lt_active_area;

/* Detaches so far (seq_cst): the claim/detach pairing above. */
static uint64_t lt_detaches;

/* The addresses of the last released area, kept for the next attach of a
 * file of the same size (lt_control_lock). */
static struct lt_area_header *lt_reserved_area;
static size_t lt_reserved_size;

static pthread_mutex_t lt_control_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_once_t lt_once = PTHREAD_ONCE_INIT;
static pthread_key_t lt_exit_key;

/* ---- system call wrappers (slow paths only) --------------------------- */


/* Shared (not PRIVATE) futex operations: the words live in a MAP_SHARED
 * file mapping that the drain may map in another process. EINTR is not
 * retried here: every caller re-checks its condition and its deadline. */
static long lt_record_sys_futex_wait(uint32_t *word, uint32_t expected, uint64_t timeout_ns) {
    struct timespec timeout = {(time_t)(timeout_ns / 1000000000u), (long)(timeout_ns % 1000000000u)};
    long r = syscall(SYS_futex, word, FUTEX_WAIT, expected, &timeout, NULL, 0);
    return r < 0 ? -errno : r;
}

static void lt_record_sys_futex_wake(uint32_t *word) {
    syscall(SYS_futex, word, FUTEX_WAKE, INT32_MAX, NULL, NULL, 0);
}


int lt_record_preallocate(int fd, uint64_t offset, uint64_t length) {
    int r;
    do { r = fallocate(fd, FALLOC_FL_KEEP_SIZE, (off_t)offset, (off_t)length); } while (r != 0 && errno == EINTR);
    return r == 0 ? 0 : -errno;
}

uint64_t lt_record_monotonic_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* The pair is read as tsc, clock, tsc and the two TSC reads averaged, so the
 * pair's error is half the window between them. A window stretched by
 * preemption or an interrupt would skew the pair by up to half of it: the
 * tightest of a few attempts is kept. */
void lt_record_calibration_pair(uint64_t *tsc, uint64_t *monotonic_ns) {
    uint64_t best_window = ~0ull;
    for (int attempt = 0; attempt < 16; attempt++) {
        uint64_t before = lt_rdtsc();
        uint64_t ns = lt_record_monotonic_ns();
        uint64_t after = lt_rdtsc();
        if (after - before < best_window) {
            best_window = after - before;
            *tsc = before + (after - before) / 2;
            *monotonic_ns = ns;
        }
    }
}

/* ---- ring claim and release ------------------------------------------- */

/* Thread-exit destructor: hands the ring of every context of the thread to
 * the drain (OWNED → RETIRED). */
static void lt_thread_exit(void *ring_pointer) {
    (void)ring_pointer;
    uint32_t current = lt_contexts.level;
    for (uint32_t level = 0; level < LT_CONTEXT_LEVELS; level++) {
        lt_context_install(level);
        lt_record_thread_retire();
    }
    lt_context_install(current);
}

/* fork: the child must not write into the parent's rings (one writer per
 * ring); each of its contexts claims its own on its next event. */
static void lt_after_fork_child(void) {
    uint32_t current = lt_contexts.level;
    for (uint32_t level = 0; level < LT_CONTEXT_LEVELS; level++) {
        lt_context_install(level);
        lt_context_set_writer(NULL, NULL, 0);
    }
    lt_context_install(current);
}

static void lt_init_once(void) {
    pthread_key_create(&lt_exit_key, lt_thread_exit);
    pthread_atfork(NULL, NULL, lt_after_fork_child);
}

static void lt_wake_drain(struct lt_area_header *area);

/* OWNED → RETIRED, then the drain is woken: it frees the ring for the next
 * thread sooner than its timeout would. */
void lt_record_thread_retire(void) {
    struct lt_ring_header *ring = lt_thread.ring;
    struct lt_area_header *area = lt_thread.area;
    lt_context_set_writer(area, NULL, 1);
    if (ring == NULL) return;
    lt_atomic_store_release_u32(&ring->state, LT_RING_RETIRED);
    int saved_errno = errno;
    lt_wake_drain(area);
    errno = saved_errno;
}

/* Every context of the thread: a signal handler on the drain thread is
 * the tracer's too. */
void lt_record_thread_ignore(int ignore) {
    for (uint32_t level = 0; level < LT_CONTEXT_LEVELS; level++)
        lt_contexts.frames[level].writer.ignored = ignore ? 1 : 0;
    lt_context_fence();
    lt_thread.ignored = ignore ? 1 : 0;
}

/* The second half of a claim, after FREE → CLAIMING: the owner line for
 * thread `tid` of process `pid`, then → OWNED (release), counted in
 * area->claims. */
static void lt_ring_own(struct lt_area_header *area, struct lt_ring_header *ring, uint32_t index, uint64_t tid,
                        uint64_t pid) {
    ring->index = index;
    ring->tid = tid;
    ring->pid = pid;
    ring->generation += 1;
    ring->busy = 0;
    ring->writer_waiting = 0;
    ring->stall_tail = ~0ull;
    ring->limit = lt_atomic_load_acquire_u64(&ring->tail) + area->high_water;
    ring->last_tsc = 0;
    ring->base = ~0ull;
    ring->next_depth = ~0ull;
    ring->lost_emitted = __atomic_load_n(&ring->lost_total, __ATOMIC_RELAXED);
    ring->waits = 0;
    ring->wait_ticks = 0;
    ring->wakes = 0;
    lt_atomic_store_release_u32(&ring->state, LT_RING_OWNED);
    __atomic_fetch_add(&area->claims, 1, __ATOMIC_RELEASE);
}

/* Claims a FREE ring: FREE → CLAIMING (CAS), fill the owner line, → OWNED.
 * Returns NULL when every ring is taken. */
static __attribute__((noinline)) struct lt_ring_header *lt_claim_ring(struct lt_area_header *area) {
    uint32_t count = area->ring_count;
    uint32_t start = __atomic_load_n(&area->claim_hint, __ATOMIC_RELAXED);
    for (uint32_t n = 0; n < count; n++) {
        uint32_t index = (start + n) % count;
        struct lt_ring_header *ring = lt_area_ring(area, index);
        if (__atomic_load_n(&ring->state, __ATOMIC_RELAXED) != LT_RING_FREE) continue;
        if (!lt_atomic_cas_u32(&ring->state, LT_RING_FREE, LT_RING_CLAIMING)) continue;
        lt_ring_own(area, ring, index, (uint64_t)lt_sys_gettid(), (uint64_t)getpid());
        __atomic_store_n(&area->claim_hint, (index + 1) % count, __ATOMIC_RELAXED);
        pthread_once(&lt_once, lt_init_once);
        pthread_setspecific(lt_exit_key, ring);
        return ring;
    }
    return NULL;
}

/* ---- the slow path: the mark, a full ring, the wake-ups ------------- */

/* The writer's half of the drain wake-up (lt_ring.h): its head is
 * published; the fetch-add is the full fence before reading drain_sleeping. */
static void lt_wake_drain(struct lt_area_header *area) {
    __atomic_fetch_add(&area->drain_wake, 1, __ATOMIC_SEQ_CST);
    if (__atomic_load_n(&area->drain_sleeping, __ATOMIC_SEQ_CST)) lt_record_sys_futex_wake(&area->drain_wake);
}

/* The next head at which the writer must look at tail again (lt_ring.h). */
static inline uint64_t lt_next_limit(const struct lt_area_header *area, uint64_t head, uint64_t tail) {
    return head - tail < area->high_water ? tail + area->high_water : tail + area->ring_capacity;
}

/* Waits, at most until `deadline` (TSC), for the reader to make room for
 * `needed` events at `head`: a short spin, then futex waits on the low half
 * of tail with writer_waiting set (the writer's half of the pairing drawn in
 * lt_ring.h). Returns the tail that makes room, or the last tail seen with
 * *expired set when the deadline passed or the reader left. */
static uint64_t lt_wait_for_tail(struct lt_area_header *area, struct lt_ring_header *ring, uint64_t head,
                                 uint64_t needed, uint64_t deadline, int *expired) {
    uint64_t capacity = area->ring_capacity;
    uint64_t tail = 0;
    *expired = 0;
    for (uint32_t spins = 0;; spins++) {
        if (spins < 64) {
            __builtin_ia32_pause();
            tail = lt_atomic_load_acquire_u64(&ring->tail);
        } else {
            __atomic_store_n(&ring->writer_waiting, 1, __ATOMIC_SEQ_CST);
            tail = __atomic_load_n(&ring->tail, __ATOMIC_SEQ_CST);
            if (head + needed - tail > capacity) {
                uint64_t now = lt_rdtsc();
                uint64_t left_ticks = deadline > now ? deadline - now : 0;
                uint64_t left_ns = left_ticks * 1000000u / area->tsc_ticks_per_ms;
                if (left_ns > 0) lt_record_sys_futex_wait((uint32_t *)&ring->tail, (uint32_t)tail, left_ns);
                tail = lt_atomic_load_acquire_u64(&ring->tail);
            }
            __atomic_store_n(&ring->writer_waiting, 0, __ATOMIC_RELAXED);
        }
        if (head + needed - tail <= capacity) return tail;
        if (lt_atomic_load_acquire_u32(&area->reader_state) != LT_READER_ATTACHED || lt_rdtsc() > deadline) {
            *expired = 1;
            return tail;
        }
    }
}

/* Returns 1 when there is room for `needed` events at `head`, 0 when the
 * event must be counted as lost; sets the next limit. Past the high-water
 * mark it wakes the drain. A full ring waits only while a reader is
 * attached, at most wait_timeout_us, and not again at a tail where a wait
 * already expired (a stalled reader costs the program one timeout, not one
 * per event). errno is kept: the program must not see the wait. */
static __attribute__((noinline)) int lt_make_room(struct lt_area_header *area, struct lt_ring_header *ring,
                                                  uint64_t head, uint64_t needed) {
    uint64_t capacity = area->ring_capacity;
    uint64_t tail = lt_atomic_load_acquire_u64(&ring->tail);
    int saved_errno = errno;
    int room = 1;
    if (head - tail >= area->high_water) {
        ring->wakes += 1;
        lt_wake_drain(area);
    }
    if (head + needed - tail > capacity) {
        if (lt_atomic_load_acquire_u32(&area->reader_state) != LT_READER_ATTACHED || ring->stall_tail == tail) {
            room = 0;
        } else {
            uint64_t began = lt_rdtsc();
            uint64_t deadline = began + area->tsc_ticks_per_ms * area->wait_timeout_us / 1000;
            int expired;
            ring->waits += 1;
            tail = lt_wait_for_tail(area, ring, head, needed, deadline, &expired);
            ring->wait_ticks += lt_rdtsc() - began;
            if (expired) {
                ring->stall_tail = tail;
                room = 0;
            } else {
                ring->stall_tail = ~0ull;
            }
        }
    }
    /* A lost event leaves head where it is: the limit stays at head so the
     * next event comes back here (and writes the LOST event first). */
    ring->limit = room ? lt_next_limit(area, head + needed, tail) : head;
    errno = saved_errno;
    return room;
}

/* ---- the hot path ----------------------------------------------------- */

/* The kind bits of a function record (lt_ring.h): kind << 62 | flag << 61. */
#define LT_KIND_BITS(kind, flag) ((uint64_t)(kind) << LT_REC_KIND_SHIFT | (uint64_t)((flag) & 1u) << LT_REC_FLAG_SHIFT)

/* The rest of an event that reached the ring's limit, owes a LOST record,
 * or needs metadata records (a TSC delta too wide, another BASE, a depth
 * not derivable) or carries an address too wide for the format; the
 * caller holds the ring (busy == 1), this releases it. The records of one
 * event are published together (one head store), so a reader, a nested
 * context's writer or a crash never sees half of them; the LOST record
 * goes first, with the depth of the event after it. */
static __attribute__((noinline)) void lt_record_event_contended(struct lt_area_header *area,
                                                                struct lt_ring_header *ring, uint64_t ip,
                                                                uint32_t depth, uint64_t kind_bits,
                                                                uint64_t tsc) {
    uint32_t is_exit = (uint32_t)(kind_bits >> LT_REC_KIND_SHIFT) == LT_EVENT_EXIT;
    if (ip > LT_EVENT_ADDRESS_MAX) {
        __atomic_fetch_add(&ring->lost_total, 1, __ATOMIC_RELAXED);
        __atomic_store_n(&ring->busy, 0, __ATOMIC_RELEASE);
        return;
    }
    uint64_t out[6];
    uint32_t n = 0;
    uint64_t pending_lost = __atomic_load_n(&ring->lost_total, __ATOMIC_RELAXED) - ring->lost_emitted;
    /* One LOST record per event; a count wider than it leaves the rest
     * owed, so the next event comes back here. */
    uint64_t lost_count = pending_lost < LT_REC_LOST_COUNT_MAX ? pending_lost : LT_REC_LOST_COUNT_MAX;
    if (lost_count != 0) out[n++] = lt_rec_lost(lost_count, depth);
    uint64_t delta = tsc - ring->last_tsc;
    if (delta >= LT_REC_DELTA_LIMIT) {
        if (tsc >> LT_REC_TYPE_SHIFT != ring->last_tsc >> LT_REC_TYPE_SHIFT)
            out[n++] = lt_rec_meta(LT_REC_EPOCH, tsc >> LT_REC_TYPE_SHIFT);
        out[n++] = lt_rec_meta(LT_REC_TSC, tsc);
        delta = 0;
    }
    if (ip >> 32 != ring->base) out[n++] = lt_rec_meta(LT_REC_BASE, ip >> 32);
    if ((uint64_t)depth + is_exit != ring->next_depth) out[n++] = lt_rec_meta(LT_REC_DEPTH, depth);
    out[n++] = kind_bits | delta << LT_REC_DELTA_SHIFT | (ip & LT_REC_LOW_MASK);
    uint64_t head = ring->head;
    if (!lt_make_room(area, ring, head, n)) {
        __atomic_fetch_add(&ring->lost_total, 1, __ATOMIC_RELAXED);
        __atomic_store_n(&ring->busy, 0, __ATOMIC_RELEASE);
        return;
    }
    uint64_t mask = (uint64_t)area->ring_capacity - 1;
    uint64_t *records = lt_ring_records(ring);
    for (uint32_t k = 0; k < n; k++) records[(head + k) & mask] = out[k];
    ring->lost_emitted += lost_count;
    ring->last_tsc = tsc;
    ring->base = ip >> 32;
    ring->next_depth = (uint64_t)depth + !is_exit;
    lt_atomic_store_release_u64(&ring->head, head + n);
    __atomic_store_n(&ring->busy, 0, __ATOMIC_RELEASE);
}

/* An event of a thread without a usable ring (first event, recording
 * restarted, thread exiting, every ring taken) or nested in its own write. */
static __attribute__((noinline)) void lt_record_event_unowned(struct lt_area_header *area, uint64_t ip,
                                                              uint32_t depth, uint64_t kind_bits);

/* The hot path: one TLS load, the busy flag around the write (stop
 * protocol, above), the TSC, one compare each of head with the limit, the
 * delta with its field, the address's high half with the stream's base,
 * the depth with the derived one and the lost counters; one 8-byte store
 * in the slot, the encoder's state and one release store of head, all on
 * the writer's own line (lt_ring.h). Everything else is out of line so
 * this path keeps few registers. */
static inline __attribute__((always_inline)) void lt_record_event(uint64_t ip, uint32_t depth, uint64_t kind_bits) {
    struct lt_area_header *area = __atomic_load_n(&lt_active_area, __ATOMIC_ACQUIRE);
    if (__builtin_expect(area == NULL, 0)) return;
    struct lt_ring_header *ring = lt_thread.ring;
    if (__builtin_expect(ring == NULL || lt_thread.area != area || ring->busy != 0, 0)) {
        lt_record_event_unowned(area, ip, depth, kind_bits);
        return;
    }
    ring->busy = 1;
    __asm__ __volatile__("" ::: "memory");
    if (__builtin_expect(__atomic_load_n(&lt_active_area, __ATOMIC_RELAXED) != area, 0)) {
        __atomic_store_n(&ring->busy, 0, __ATOMIC_RELEASE);
        return;
    }
    uint32_t is_exit = (uint32_t)(kind_bits >> LT_REC_KIND_SHIFT) == LT_EVENT_EXIT;
    uint64_t head = ring->head;
    uint64_t tsc = lt_rdtsc();
    uint64_t delta = tsc - ring->last_tsc;
    if (__builtin_expect(head >= ring->limit || delta >= LT_REC_DELTA_LIMIT || ip >> 32 != ring->base ||
                             (uint64_t)depth + is_exit != ring->next_depth ||
                             __atomic_load_n(&ring->lost_total, __ATOMIC_RELAXED) != ring->lost_emitted,
                         0)) {
        lt_record_event_contended(area, ring, ip, depth, kind_bits, tsc);
        return;
    }
    uint64_t mask = (uint64_t)area->ring_capacity - 1;
    uint64_t *records = lt_ring_records(ring);
    lt_ring_prefetch_slot(records, head, mask);
    records[head & mask] = kind_bits | delta << LT_REC_DELTA_SHIFT | (ip & LT_REC_LOW_MASK);
    ring->last_tsc = tsc;
    ring->next_depth = (uint64_t)depth + !is_exit;
    lt_atomic_store_release_u64(&ring->head, head + 1);
    __atomic_store_n(&ring->busy, 0, __ATOMIC_RELEASE);
}

static __attribute__((noinline)) void lt_record_event_unowned(struct lt_area_header *area, uint64_t ip,
                                                              uint32_t depth, uint64_t kind_bits) {
    struct lt_ring_header *ring = lt_thread.ring;
    if (ring != NULL && lt_thread.area == area) {
        /* Re-entry from a signal handler that interrupted this very write:
         * only one nested beyond the deepest context, which shares the
         * ring (lt_context.h); every other handler writes its own ring. */
        __atomic_fetch_add(&ring->lost_total, 1, __ATOMIC_RELAXED);
        return;
    }
    if (lt_thread.ignored) return;
    /* The claim/detach pairing (top of the file). */
    uint64_t detaches = __atomic_load_n(&lt_detaches, __ATOMIC_SEQ_CST);
    if (__atomic_load_n(&lt_active_area, __ATOMIC_SEQ_CST) != area) return;
    if (lt_thread.exiting || (ring = lt_claim_ring(area)) == NULL) {
        __atomic_fetch_add(&area->lost_without_ring, 1, __ATOMIC_RELAXED);
        return;
    }
    lt_context_set_writer(area, ring, 0);
    __atomic_thread_fence(__ATOMIC_SEQ_CST);
    if (__atomic_load_n(&lt_detaches, __ATOMIC_SEQ_CST) != detaches) {
        lt_context_set_writer(NULL, NULL, 0);
        return;
    }
    lt_record_event(ip, depth, kind_bits);
}

void lt_record_entry(uintptr_t ip, uint32_t depth) { lt_record_event(ip, depth, LT_KIND_BITS(LT_EVENT_ENTRY, 0)); }

void lt_record_entry_flags(uintptr_t ip, uint32_t depth, uint32_t flags) {
    lt_record_event(ip, depth, LT_KIND_BITS(LT_EVENT_ENTRY, flags & LT_EVENT_FLAG_ENTRY_ONLY));
}

void lt_record_exit(uintptr_t ip, uint32_t depth, uint32_t flags) {
    lt_record_event(ip, depth, LT_KIND_BITS(LT_EVENT_EXIT, flags & LT_EVENT_FLAG_UNWOUND));
}

/* ---- the reader's half of the wake-ups -------------------------------- */

void lt_ring_release_tail(struct lt_ring_header *ring, uint64_t tail) {
    __atomic_store_n(&ring->tail, tail, __ATOMIC_SEQ_CST);
    if (__atomic_load_n(&ring->writer_waiting, __ATOMIC_SEQ_CST)) lt_record_sys_futex_wake((uint32_t *)&ring->tail);
}

void lt_area_wake_drain(struct lt_area_header *area) { lt_wake_drain(area); }

int lt_area_drain_wait(struct lt_area_header *area, uint64_t timeout_ns, const uint32_t *rings,
                       uint32_t ring_count, uint32_t claims_seen) {
    uint32_t seen = __atomic_load_n(&area->drain_wake, __ATOMIC_SEQ_CST);
    __atomic_store_n(&area->drain_sleeping, 1, __ATOMIC_SEQ_CST);
    int work = __atomic_load_n(&area->claims, __ATOMIC_ACQUIRE) != claims_seen;
    for (uint32_t i = 0; i < ring_count && !work; i++) {
        if (rings[i] >= area->ring_count) continue;
        struct lt_ring_header *ring = lt_area_ring(area, rings[i]);
        uint32_t state = lt_atomic_load_acquire_u32(&ring->state);
        if (state == LT_RING_RETIRED) work = 1;
        if (state != LT_RING_OWNED) continue;
        uint64_t head = lt_atomic_load_acquire_u64(&ring->head);
        uint64_t tail = __atomic_load_n(&ring->tail, __ATOMIC_RELAXED);
        /* A writer waiting for room has a full ring, so this covers it too;
         * writer_waiting is not itself work: it stays set until the woken
         * writer runs, and a drain spinning on it would keep the writer
         * from running. */
        work = head - tail >= area->high_water;
    }
    long status = 0;
    if (!work) status = lt_record_sys_futex_wait(&area->drain_wake, seen, timeout_ns);
    __atomic_store_n(&area->drain_sleeping, 0, __ATOMIC_RELAXED);
    if (work) return 1;
    return status == -ETIMEDOUT ? 0 : 1;
}

/* ---- creating an area ------------------------------------------------- */

static uint64_t lt_ring_stride(uint32_t ring_capacity) {
    uint64_t bytes = LT_RING_HEADER_SIZE + (uint64_t)ring_capacity * sizeof(uint64_t);
    return (bytes + 4095) & ~(uint64_t)4095;
}

size_t lt_ring_area_size(uint32_t ring_count, uint32_t ring_capacity) {
    return LT_AREA_HEADER_SIZE + (size_t)ring_count * lt_ring_stride(ring_capacity);
}

static void lt_area_header_fill(struct lt_area_header *area, size_t size, uint32_t ring_count,
                                uint32_t ring_capacity, uint32_t wait_timeout_us, uint64_t start_tsc,
                                uint64_t start_monotonic_ns, uint64_t tsc_ticks_per_ms) {
    area->version = LT_RING_AREA_VERSION;
    area->header_size = LT_AREA_HEADER_SIZE;
    area->ring_count = ring_count;
    area->ring_capacity = ring_capacity;
    area->ring_header_size = LT_RING_HEADER_SIZE;
    area->event_size = sizeof(uint64_t);
    area->ring_stride = lt_ring_stride(ring_capacity);
    area->rings_offset = LT_AREA_HEADER_SIZE;
    area->area_size = size;
    area->start_tsc = start_tsc;
    area->start_monotonic_ns = start_monotonic_ns;
    area->tsc_ticks_per_ms = tsc_ticks_per_ms ? tsc_ticks_per_ms : 1;
    area->wait_timeout_us = wait_timeout_us;
    area->high_water = ring_capacity / 4 ? ring_capacity / 4 : 1;
}

static void lt_ring_header_fill(struct lt_ring_header *ring, uint32_t index, uint32_t high_water) {
    ring->index = index;
    ring->stall_tail = ~0ull;
    ring->limit = high_water;
    ring->base = ~0ull;
    ring->next_depth = ~0ull;
}

static int lt_ring_area_fits(size_t size, uint32_t ring_count, uint32_t ring_capacity) {
    return ring_count != 0 && ring_capacity >= 2 && (ring_capacity & (ring_capacity - 1)) == 0 &&
           lt_ring_area_size(ring_count, ring_capacity) <= size;
}

int lt_ring_area_init(void *base, size_t size, uint32_t ring_count, uint32_t ring_capacity,
                      uint32_t wait_timeout_us, uint64_t start_tsc, uint64_t start_monotonic_ns,
                      uint64_t tsc_ticks_per_ms) {
    if (!lt_ring_area_fits(size, ring_count, ring_capacity)) return -LT_RECORD_ELAYOUT;
    struct lt_area_header *area = base;
    lt_area_header_fill(area, size, ring_count, ring_capacity, wait_timeout_us, start_tsc,
                        start_monotonic_ns, tsc_ticks_per_ms);
    for (uint32_t i = 0; i < ring_count; i++) lt_ring_header_fill(lt_area_ring(area, i), i, area->high_water);
    __atomic_thread_fence(__ATOMIC_RELEASE);
    memcpy(area->magic, LT_RING_AREA_MAGIC, sizeof area->magic);
    return 0;
}

static int lt_pwrite_whole(int fd, const void *bytes, size_t count, off_t offset) {
    ssize_t written;
    do { written = pwrite(fd, bytes, count, offset); } while (written < 0 && errno == EINTR);
    if (written < 0) return -errno;
    return (size_t)written == count ? 0 : -EIO;
}

int lt_ring_area_write(int fd, size_t size, uint32_t ring_count, uint32_t ring_capacity,
                       uint32_t wait_timeout_us, uint64_t start_tsc, uint64_t start_monotonic_ns,
                       uint64_t tsc_ticks_per_ms) {
    if (!lt_ring_area_fits(size, ring_count, ring_capacity)) return -LT_RECORD_ELAYOUT;
    struct lt_area_header area; /* 4 KiB, on the caller's stack: creators may run on several threads */
    memset(&area, 0, sizeof area);
    lt_area_header_fill(&area, size, ring_count, ring_capacity, wait_timeout_us, start_tsc,
                        start_monotonic_ns, tsc_ticks_per_ms);
    memcpy(area.magic, LT_RING_AREA_MAGIC, sizeof area.magic);
    return lt_pwrite_whole(fd, &area, sizeof area, 0);
}

int lt_ring_area_set_high_water(void *base, uint32_t events) {
    struct lt_area_header *area = base;
    if (events == 0 || events > area->ring_capacity) return -LT_RECORD_ELAYOUT;
    area->high_water = events;
    for (uint32_t i = 0; i < area->ring_count; i++) {
        struct lt_ring_header *ring = lt_area_ring(area, i);
        if (lt_atomic_load_acquire_u32(&ring->state) == LT_RING_FREE) ring->limit = events;
    }
    return 0;
}

/* ---- attach and detach ------------------------------------------------ */

static int lt_validate(const struct lt_area_header *area, size_t size) {
    if (size < LT_AREA_HEADER_SIZE) return -LT_RECORD_ELAYOUT;
    if (memcmp(area->magic, LT_RING_AREA_MAGIC, sizeof area->magic) != 0) return -LT_RECORD_EBADMAGIC;
    if (area->version != LT_RING_AREA_VERSION) return -LT_RECORD_EVERSION;
    uint64_t capacity = area->ring_capacity;
    if (area->header_size != LT_AREA_HEADER_SIZE || area->ring_header_size != LT_RING_HEADER_SIZE ||
        area->event_size != sizeof(uint64_t) || capacity == 0 || (capacity & (capacity - 1)) != 0 ||
        area->ring_stride < LT_RING_HEADER_SIZE + capacity * sizeof(uint64_t) ||
        area->rings_offset != LT_AREA_HEADER_SIZE || area->ring_count == 0 ||
        area->high_water == 0 || area->high_water > capacity || area->tsc_ticks_per_ms == 0 ||
        area->rings_offset + (uint64_t)area->ring_count * area->ring_stride > size ||
        area->area_size != size)
        return -LT_RECORD_ELAYOUT;
    return 0;
}

static int lt_attach_locked(void *base, size_t size) {
    if (lt_active_area != NULL) return -LT_RECORD_EACTIVE;
    int status = lt_validate(base, size);
    if (status != 0) return status;
    pthread_once(&lt_once, lt_init_once);
    __atomic_store_n(&lt_active_area, (struct lt_area_header *)base, __ATOMIC_RELEASE);
    return 0;
}

int lt_record_attach(void *area, size_t size) {
    pthread_mutex_lock(&lt_control_lock);
    int status = lt_attach_locked(area, size);
    pthread_mutex_unlock(&lt_control_lock);
    return status;
}

/* A ring of the released area that a live thread of this process owns:
 * claimed for it in the area mapped at the same address (lt_control_lock,
 * before the area is published). */
static void lt_claim_for_owner(struct lt_area_header *area, uint32_t index, uint64_t tid, uint64_t pid) {
    struct lt_ring_header *ring = lt_area_ring(area, index);
    if (!lt_atomic_cas_u32(&ring->state, LT_RING_FREE, LT_RING_CLAIMING)) return;
    lt_ring_own(area, ring, index, tid, pid);
}

/* Maps the file `fd` of `size` bytes over the reservation of the last
 * released area when the sizes and the layouts agree, and hands the rings
 * owned in the reservation to their threads; NULL when it cannot (the
 * reservation is left as it was). Under lt_control_lock. */
static void *lt_map_reserved(int fd, size_t size) {
    struct lt_area_header *old = lt_reserved_area;
    if (old == NULL || lt_reserved_size != size || lt_active_area != NULL) return NULL;
    uint32_t count = old->ring_count;
    uint64_t stride = old->ring_stride, rings_offset = old->rings_offset;
    uint64_t pid = (uint64_t)getpid();
    /* The owners, read before the file's pages replace the copy. A thread
     * exiting meanwhile retires its ring in the copy: read once, here. */
    uint32_t owned = 0;
    for (uint32_t i = 0; i < count; i++) {
        struct lt_ring_header *ring = lt_area_ring(old, i);
        if (lt_atomic_load_acquire_u32(&ring->state) != LT_RING_FREE) owned++;
    }
    struct { uint32_t index; uint64_t tid; } *owners = NULL;
    if (owned != 0 && (owners = calloc(owned, sizeof *owners)) == NULL) return NULL;
    owned = 0;
    for (uint32_t i = 0; i < count; i++) {
        struct lt_ring_header *ring = lt_area_ring(old, i);
        if (lt_atomic_load_acquire_u32(&ring->state) != LT_RING_OWNED || ring->pid != pid) continue;
        /* A thread that died without its exit destructor owns nothing. */
        if (lt_sys_tgkill((pid_t)pid, (pid_t)ring->tid, 0) != 0) continue;
        owners[owned].index = i;
        owners[owned].tid = ring->tid;
        owned++;
    }
    void *base = mmap(old, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_FIXED, fd, 0);
    if (base == MAP_FAILED) { free(owners); return NULL; }
    struct lt_area_header *area = base;
    if (lt_validate(area, size) != 0 || area->ring_count != count || area->ring_stride != stride ||
        area->rings_offset != rings_offset) {
        /* Another layout: the rings would not be where the threads' writer
         * states point. The reservation goes back (zero pages: the copied
         * owner lines are gone, so it is never offered again). */
        (void)mmap(old, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED | MAP_NORESERVE, -1, 0);
        lt_reserved_area = NULL;
        free(owners);
        return NULL;
    }
    (void)madvise(base, size, MADV_RANDOM); /* as in lt_record_attach_file */
    for (uint32_t i = 0; i < owned; i++) lt_claim_for_owner(area, owners[i].index, owners[i].tid, pid);
    free(owners);
    lt_reserved_area = NULL;
    return base;
}

int lt_record_attach_file(const char *path) {
    int fd;
    do { fd = open(path, O_RDWR | O_CLOEXEC); } while (fd < 0 && errno == EINTR);
    if (fd < 0) return -errno;
    struct stat st;
    if (fstat(fd, &st) != 0) { int e = errno; close(fd); return -e; }
    /* The reservation of the last released area, when it fits: mapped,
     * validated and attached under one hold of the lock (it cannot fail). */
    pthread_mutex_lock(&lt_control_lock);
    void *reused = lt_map_reserved(fd, (size_t)st.st_size);
    int reused_status = reused != NULL ? lt_attach_locked(reused, (size_t)st.st_size) : 0;
    pthread_mutex_unlock(&lt_control_lock);
    if (reused != NULL) {
        close(fd);
        return reused_status;
    }
    void *base = mmap(NULL, (size_t)st.st_size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    int e = errno;
    close(fd);
    if (base == MAP_FAILED) return -e;
    /* A fault brings in its own page only: the file is fallocated, and a
     * read-around would zero-fill the disk's whole read-ahead window (8 MiB
     * here) around the first event of a ring (RecordingSyscalls.swift,
     * Sys.mmapShared, says the same for the reader's mapping). */
    (void)madvise(base, (size_t)st.st_size, MADV_RANDOM);
    pthread_mutex_lock(&lt_control_lock);
    int status = lt_attach_locked(base, (size_t)st.st_size);
    pthread_mutex_unlock(&lt_control_lock);
    if (status != 0) munmap(base, (size_t)st.st_size);
    return status;
}

int lt_record_attach_env(void) {
    const char *path = getenv(LT_RECORD_RINGS_ENV);
    if (path == NULL || *path == '\0') return -ENOENT;
    return lt_record_attach_file(path);
}

int lt_record_detach(void) {
    pthread_mutex_lock(&lt_control_lock);
    struct lt_area_header *area = lt_active_area;
    if (area == NULL) {
        pthread_mutex_unlock(&lt_control_lock);
        return -LT_RECORD_EINACTIVE;
    }
    __atomic_store_n(&lt_active_area, NULL, __ATOMIC_SEQ_CST);
    __atomic_fetch_add(&lt_detaches, 1, __ATOMIC_SEQ_CST);
    long barrier = lt_sys_membarrier_private_expedited();
    if (barrier < 0) {
        /* Quiescence not proven: the caller must not take the last drain
         * for complete. */
        pthread_mutex_unlock(&lt_control_lock);
        return (int)barrier;
    }
    /* Only this process's rings: a forked child shares the area, and a child
     * killed inside a write would leave its busy flag set for ever. */
    uint64_t pid = (uint64_t)getpid();
    for (uint32_t i = 0; i < area->ring_count; i++) {
        struct lt_ring_header *ring = lt_area_ring(area, i);
        if (lt_atomic_load_acquire_u32(&ring->state) == LT_RING_FREE || ring->pid != pid) continue;
        for (uint32_t spins = 0; lt_atomic_load_acquire_u32(&ring->busy) != 0; spins++)
            if (spins >= 64) sched_yield();
    }
    pthread_mutex_unlock(&lt_control_lock);
    return 0;
}

int lt_record_release_area(struct lt_area_header *area) {
    pthread_mutex_lock(&lt_control_lock);
    if (lt_active_area != NULL) {
        pthread_mutex_unlock(&lt_control_lock);
        return -LT_RECORD_EACTIVE;
    }
    size_t size = (size_t)area->area_size;
    uint32_t count = area->ring_count;
    uint64_t pid = (uint64_t)getpid();
    /* The owner lines of this process's owned rings, then the zero pages,
     * then the lines copied back (a thread whose writer state points to a
     * ring finds it owned, in the reservation as in the next area). */
    uint32_t owned = 0;
    for (uint32_t i = 0; i < count; i++) {
        struct lt_ring_header *ring = lt_area_ring(area, i);
        if (lt_atomic_load_acquire_u32(&ring->state) == LT_RING_OWNED && ring->pid == pid) owned++;
    }
    struct { uint32_t index; uint64_t tid; } *owners = owned ? calloc(owned, sizeof *owners) : NULL;
    uint32_t copied = 0;
    for (uint32_t i = 0; owners != NULL && i < count; i++) {
        struct lt_ring_header *ring = lt_area_ring(area, i);
        if (copied == owned) break;
        if (lt_atomic_load_acquire_u32(&ring->state) != LT_RING_OWNED || ring->pid != pid) continue;
        owners[copied].index = i;
        owners[copied].tid = ring->tid;
        copied++;
    }
    struct lt_area_header header = *area;
    int reusable = owned == 0 || owners != NULL;
    (void)mmap(area, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED | MAP_NORESERVE, -1, 0);
    if (reusable) {
        area->ring_count = header.ring_count;
        area->ring_stride = header.ring_stride;
        area->rings_offset = header.rings_offset;
        for (uint32_t i = 0; i < copied; i++) {
            struct lt_ring_header *ring = lt_area_ring(area, owners[i].index);
            ring->tid = owners[i].tid;
            ring->pid = pid;
            lt_atomic_store_release_u32(&ring->state, LT_RING_OWNED);
        }
        /* An older reservation stays reserved: threads may point into it. */
        lt_reserved_area = area;
        lt_reserved_size = size;
    }
    free(owners);
    pthread_mutex_unlock(&lt_control_lock);
    return 0;
}

struct lt_area_header *lt_record_active_area(void) {
    return __atomic_load_n(&lt_active_area, __ATOMIC_ACQUIRE);
}
