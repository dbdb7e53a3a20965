#ifndef LT_RING_H
#define LT_RING_H
/* The shared ring area: per-thread single-producer/single-consumer event
 * rings in one MAP_SHARED file mapping, written by the traced process
 * (lt_record.c) and read by the drain (LiveTraceRecording, possibly in
 * another process, possibly after the traced process died).
 *
 * Format history of the ring area (LT_RING_AREA_VERSION):
 *   1  first version: 4096-byte area header, rings of 192-byte header
 *      plus `ring_capacity` 24-byte events.
 *   2  16-byte events (TSC, then address/depth/flags/kind packed in one
 *      word); 256-byte ring headers (a fourth line of writer statistics);
 *      the high-water mark and the two futex words of the wake-ups.
 *   3  8-byte records (struct lt_event is kept for reading version 2
 *      streams): a function record packs kind, flag, TSC delta and the
 *      address's low half; metadata records carry what does not fit
 *      (full TSC, the address's high bits, a depth that cannot be derived,
 *      LOST counts). The writer's hot line holds its private encoder state;
 *      the statistics and writer_waiting moved to the published line.
 *
 * Byte layout (all little-endian, offsets from the start of the mapping):
 *
 *   0      struct lt_area_header   (4096 bytes)
 *   4096   ring 0: struct lt_ring_header (256 bytes), then
 *                  uint64_t record[ring_capacity] (8-byte records)
 *   4096 + k * ring_stride   ring k
 *
 * Ownership of every field is stated beside it. Cross-process fields are
 * accessed only with the atomic helpers at the end of this file.
 *
 * The ring protocol (one writer thread W, one reader R):
 *
 *   W: slot[head % cap] = event          R: h = load_acquire(head)
 *      store_release(head, head + 1)  ─┐    copy slots [tail, h)
 *                                      └──▶ store_release(tail, h)
 *   W sees room when head - load_acquire(tail) < cap; the slot it writes
 *   next was copied by R before R released that tail (the pairing of R's
 *   release with W's acquire).
 *
 * An event is one record in the common case, several when metadata records
 * go with it (lt_record.c); all of an event's records are published by one
 * store of head, so a reader, a nested context's writer and a crash see
 * all of them or none: a crash loses at most the event being written.
 *
 * The writer does not read `tail` per event: it compares head with `limit`,
 * a position it computed the last time it read tail, and only there takes
 * the slow path (lt_record.c):
 *
 *   limit = tail + high_water   while head - tail < high_water
 *         = tail + capacity     once the mark is passed (the ring is full there)
 *
 * Wake-ups (futex words in the shared mapping, so across processes):
 *
 *   drain asleep, writer passes its mark     writer waits for room (ring full)
 *   ─────────────────────────────────────    ──────────────────────────────────
 *   R: seen = load(drain_wake)               W: writer_waiting = 1
 *      drain_sleeping = 1; full fence           full fence
 *      any ring with head - tail >= mark?       tail = load(tail); room? → go
 *        yes: do not sleep                      futex_wait(&tail (low 32 bits))
 *      futex_wait(&drain_wake, seen)         R: store_release(tail, h)
 *   W: (head published) full fence             full fence
 *      drain_wake += 1                          writer_waiting? → futex_wake(&tail)
 *      drain_sleeping? → futex_wake
 *
 * Each side stores its flag, fences, then reads the other's state (a Dekker
 * pairing): either the sleeper sees the work, or the waker sees the sleeper.
 * The writer makes these system calls only where it crosses its mark (at
 * most twice per quarter ring) or finds its ring full: never per event.
 *
 * Ring states (lt_ring_header.state), the only legal transitions:
 *   FREE ──claim CAS (any writer)──▶ CLAIMING ──writer──▶ OWNED
 *   OWNED ──thread exit (writer)──▶ RETIRED ──drain, after its last copy──▶ FREE
 */
#include <stdint.h>
#include <stddef.h>

#define LT_RING_AREA_MAGIC "LTRINGS"   /* 8 bytes with the terminating NUL */
#define LT_RING_AREA_VERSION 3u
#define LT_AREA_HEADER_SIZE 4096u
#define LT_RING_HEADER_SIZE 256u

enum lt_ring_state {
    LT_RING_FREE = 0,
    LT_RING_CLAIMING = 1,
    LT_RING_OWNED = 2,
    LT_RING_RETIRED = 3,
};

enum lt_reader_state {
    LT_READER_NONE = 0,     /* no reader has attached yet: a full ring loses at once */
    LT_READER_ATTACHED = 1, /* a reader drains: a full ring waits for it, boundedly */
    LT_READER_GONE = 2,     /* the reader detached: a full ring loses at once */
};

/* Event kinds (bits 62-63 of lt_event.word; 0 is never written). */
enum lt_event_kind {
    LT_EVENT_ENTRY = 1,
    LT_EVENT_EXIT = 2,
    LT_EVENT_LOST = 3, /* the address bits hold the number of events lost just before */
};

/* Event flags (bit 61 of lt_event.word). */
enum lt_event_flags {
    LT_EVENT_FLAG_UNWOUND = 1u << 0, /* exit by unwinding (longjmp, exception), not by return;
                                      * the same bit on an entry is LT_EVENT_FLAG_ENTRY_ONLY */
};

/* One event, 16 bytes:
 *
 *   0   u64 timestamp   raw TSC ticks (rdtsc)
 *   8   u64 word        bits  0-47  function entry address (LOST: the count)
 *                       bits 48-60  nesting depth, 0 = outermost; 8191 means
 *                                   8191 or deeper (the field saturates)
 *                       bit  61     UNWOUND on an exit, ENTRY_ONLY on an
 *                                   entry (never on LOST)
 *                       bits 62-63  kind (enum lt_event_kind)
 *
 * A user-space address on x86-64 fits in 47 bits (48 with LA57 hints
 * excepted): a writer given a larger one counts the event as lost rather
 * than store a wrong address. */
struct lt_event {
    uint64_t timestamp;
    uint64_t word;
};

#define LT_EVENT_ADDRESS_BITS 48
#define LT_EVENT_ADDRESS_MAX 0xFFFFFFFFFFFFull /* (1 << LT_EVENT_ADDRESS_BITS) - 1 */
#define LT_EVENT_DEPTH_SHIFT 48
#define LT_EVENT_DEPTH_MAX 8191u
#define LT_EVENT_UNWOUND_SHIFT 61
#define LT_EVENT_KIND_SHIFT 62

/* The packed word of an event. `depth` saturates at LT_EVENT_DEPTH_MAX;
 * `address` must be at most LT_EVENT_ADDRESS_MAX. */
static inline uint64_t lt_event_pack(uint64_t address, uint32_t depth, uint32_t kind, uint32_t flags) {
    uint64_t d = depth < LT_EVENT_DEPTH_MAX ? depth : LT_EVENT_DEPTH_MAX;
    return address | d << LT_EVENT_DEPTH_SHIFT | (uint64_t)(flags & LT_EVENT_FLAG_UNWOUND) << LT_EVENT_UNWOUND_SHIFT |
           (uint64_t)kind << LT_EVENT_KIND_SHIFT;
}
static inline uint64_t lt_event_address(uint64_t word) { return word & LT_EVENT_ADDRESS_MAX; }
static inline uint32_t lt_event_depth(uint64_t word) { return (uint32_t)(word >> LT_EVENT_DEPTH_SHIFT) & LT_EVENT_DEPTH_MAX; }
static inline uint32_t lt_event_flags(uint64_t word) { return (uint32_t)(word >> LT_EVENT_UNWOUND_SHIFT) & 1u; }
static inline uint32_t lt_event_kind(uint64_t word) { return (uint32_t)(word >> LT_EVENT_KIND_SHIFT); }

/* ---- version 3 records (the ring's and the stream's unit, 8 bytes) ------
 *
 * Function record, kind 1 ENTRY or 2 EXIT:
 *   bits  0-31  the function entry address's bits 0-31 (bits 32-47 are
 *               those of the last BASE record of the stream)
 *   bits 32-60  TSC ticks since the stream's previous timestamp
 *   bit  61     flag: UNWOUND on an EXIT, ENTRY_ONLY on an ENTRY (a call
 *               that will never have an exit)
 *   bits 62-63  kind
 * Its depth is not stored: it is that of a DEPTH record just before it, or
 * else derived from the previous function record (d its depth):
 *   previous ENTRY: next ENTRY d + 1, next EXIT d;
 *   previous EXIT:  next ENTRY d,     next EXIT d - 1.
 * (The writer keeps `next_depth`, the depth an entry would be given: an
 * event of depth D and kind K is derivable when D + (K == EXIT) ==
 * next_depth, and leaves next_depth = D + (K == ENTRY).)
 *
 * Metadata record, kind 3: bits 56-60 type, bit 61 zero, bits 0-55 payload:
 *   LOST  bits 0-42 the number of events lost at this point, bits 43-55
 *         a depth (that of the function record after it when the writer
 *         wrote it); its timestamp is the stream's current one
 *   TSC   payload: the new bits 0-55 of the stream's timestamp
 *   BASE  payload: bits 32-55 of the addresses of the function records after it
 *   DEPTH payload: the depth of the next function record
 *   EPOCH payload: the new bits 56-63 of the stream's timestamp (written
 *         before a TSC record when they change; a stream's timestamp is 0
 *         before its first record)
 * Kind 0, bit 61 on a metadata record and an unknown type are damage.
 * Records between two function records carry no time: a stream's state
 * (timestamp, epoch, base, depth) runs across chunks, from its first
 * record on. */
#define LT_REC_KIND_SHIFT 62
#define LT_REC_FLAG_SHIFT 61
#define LT_REC_DELTA_SHIFT 32
#define LT_REC_DELTA_BITS 29
#define LT_REC_DELTA_LIMIT (1ull << LT_REC_DELTA_BITS)
#define LT_REC_LOW_MASK 0xFFFFFFFFull
#define LT_REC_META 3u
#define LT_REC_TYPE_SHIFT 56
#define LT_REC_PAYLOAD_MASK 0xFFFFFFFFFFFFFFull
#define LT_REC_LOST_COUNT_BITS 43
#define LT_REC_LOST_COUNT_MAX ((1ull << LT_REC_LOST_COUNT_BITS) - 1)

enum lt_rec_meta_type {
    LT_REC_LOST = 0,
    LT_REC_TSC = 1,
    LT_REC_BASE = 2,
    LT_REC_DEPTH = 3,
    LT_REC_EPOCH = 4,
};

/* Event flags in version 3 (bit 61 of a function record; for the writer's
 * callers, enum lt_event_flags values). */
#define LT_EVENT_FLAG_ENTRY_ONLY LT_EVENT_FLAG_UNWOUND

static inline uint64_t lt_rec_function(uint32_t kind, uint32_t flag, uint64_t delta, uint64_t address) {
    return (uint64_t)kind << LT_REC_KIND_SHIFT | (uint64_t)(flag & 1u) << LT_REC_FLAG_SHIFT |
           delta << LT_REC_DELTA_SHIFT | (address & LT_REC_LOW_MASK);
}
static inline uint64_t lt_rec_meta(uint32_t type, uint64_t payload) {
    return (uint64_t)LT_REC_META << LT_REC_KIND_SHIFT | (uint64_t)type << LT_REC_TYPE_SHIFT |
           (payload & LT_REC_PAYLOAD_MASK);
}
static inline uint64_t lt_rec_lost(uint64_t count, uint32_t depth) {
    uint64_t d = depth < LT_EVENT_DEPTH_MAX ? depth : LT_EVENT_DEPTH_MAX;
    return lt_rec_meta(LT_REC_LOST, count | d << LT_REC_LOST_COUNT_BITS);
}
/* The limits above, for Swift (which imports no computed macro). */
static inline uint64_t lt_rec_lost_count_max(void) { return LT_REC_LOST_COUNT_MAX; }
static inline uint64_t lt_rec_delta_limit(void) { return LT_REC_DELTA_LIMIT; }
static inline uint32_t lt_rec_kind(uint64_t record) { return (uint32_t)(record >> LT_REC_KIND_SHIFT); }
static inline uint32_t lt_rec_flag(uint64_t record) { return (uint32_t)(record >> LT_REC_FLAG_SHIFT) & 1u; }
static inline uint64_t lt_rec_delta(uint64_t record) { return (record >> LT_REC_DELTA_SHIFT) & (LT_REC_DELTA_LIMIT - 1); }
static inline uint32_t lt_rec_type(uint64_t record) { return (uint32_t)(record >> LT_REC_TYPE_SHIFT) & 31u; }
static inline uint64_t lt_rec_payload(uint64_t record) { return record & LT_REC_PAYLOAD_MASK; }

/* The area header, 4096 bytes. Lines 0..1 are written once by the creator
 * before any writer or reader maps the area; later lines hold the shared
 * counters, one cache line each. */
struct lt_area_header {
    /* line 0-1: immutable after creation */
    char magic[8];             /* LT_RING_AREA_MAGIC */
    uint32_t version;          /* LT_RING_AREA_VERSION */
    uint32_t header_size;      /* LT_AREA_HEADER_SIZE */
    uint32_t ring_count;
    uint32_t ring_capacity;    /* events per ring, a power of two */
    uint32_t ring_header_size; /* LT_RING_HEADER_SIZE */
    uint32_t event_size;       /* bytes per record: 8 */
    uint64_t ring_stride;      /* bytes from one ring to the next */
    uint64_t rings_offset;     /* LT_AREA_HEADER_SIZE */
    uint64_t area_size;        /* total bytes of the mapping */
    uint64_t start_tsc;        /* calibration pair taken at creation */
    uint64_t start_monotonic_ns;
    uint64_t tsc_ticks_per_ms; /* coarse, for the writer's bounded wait only */
    uint32_t wait_timeout_us;  /* bounded wait of a writer whose ring is full */
    uint32_t high_water;       /* events in a ring at which its writer wakes the drain (1..capacity; capacity / 4 by default) */
    uint8_t pad0[128 - 88];
    /* line 2: written by the reader only */
    uint32_t reader_state;     /* enum lt_reader_state (release/acquire) */
    uint32_t reader_pid;
    uint32_t drain_sleeping;   /* 1 while the drain waits on drain_wake (seq_cst) */
    uint8_t pad1[64 - 12];
    /* line 3: written by any writer (atomic add) */
    uint64_t lost_without_ring; /* events lost because every ring was taken */
    uint8_t pad2[64 - 8];
    /* line 4: written by any writer */
    uint32_t claim_hint;       /* relaxed hint for the claim scan */
    uint32_t claims;           /* bumped (release) after each FREE → OWNED: the drain
                                  rescans ring states only when it changed */
    uint8_t pad3[64 - 8];
    /* line 5: written by any writer (atomic add), the drain's futex word */
    uint32_t drain_wake;       /* bumped by a writer that wants the drain */
    uint8_t pad4[64 - 4];
    uint8_t pad5[LT_AREA_HEADER_SIZE - 384];
};

/* A ring header, 256 bytes: four cache lines, one per owner. The writer's
 * common case (lt_record.c) touches line 1 and the record slots only: no
 * line the drain writes. */
struct lt_ring_header {
    /* line 0: written by the claiming writer while CLAIMING, by the drain
     * while RETIRED; `state` by CAS/release as drawn above. */
    uint32_t state;       /* enum lt_ring_state */
    uint32_t index;       /* position of this ring in the area (set when claimed) */
    uint64_t tid;         /* owner thread (gettid) */
    uint64_t pid;         /* owner process (a forked child claims its own) */
    uint64_t generation;  /* counts claims of this ring; names the stream */
    uint8_t pad0[64 - 32];
    /* line 1: written by the owning writer only, on every event (read by
     * the drain once per pass and by the stopper); the encoder's state is
     * that of the records up to head. */
    uint64_t head;        /* records published (store_release) */
    uint64_t limit;       /* head at which the writer next takes its slow path */
    uint64_t last_tsc;    /* timestamp of the stream so far (0 at a claim) */
    uint64_t lost_total;  /* events this writer could not store (atomic add) */
    uint64_t lost_emitted;/* part of lost_total already written as LOST records */
    uint64_t base;        /* address >> 32 of the last BASE record; ~0 none */
    uint64_t next_depth;  /* depth an ENTRY would be derived to have; ~0 unknown */
    uint32_t busy;        /* 1 while the writer is inside lt_record_* */
    uint8_t pad1[64 - 60];
    /* line 2: written by the owning writer on its slow path only */
    uint64_t stall_tail;  /* tail at which a bounded wait expired; ~0 when none */
    uint32_t writer_waiting; /* 1 while the writer waits on tail (seq_cst; read by the drain) */
    uint32_t pad2a;
    uint64_t waits;       /* bounded waits for room begun */
    uint64_t wait_ticks;  /* TSC ticks spent in them */
    uint64_t wakes;       /* times this writer asked the drain to run */
    uint8_t pad2[64 - 40];
    /* line 3: written by the reader only; the low 32 bits of `tail` are the
     * writer's futex word */
    uint64_t tail;        /* records consumed (store_release) */
    uint8_t pad3[64 - 8];
};

_Static_assert(sizeof(struct lt_event) == 16, "lt_event is 16 bytes");
_Static_assert(sizeof(struct lt_area_header) == LT_AREA_HEADER_SIZE, "area header size");
_Static_assert(sizeof(struct lt_ring_header) == LT_RING_HEADER_SIZE, "ring header size");
_Static_assert(offsetof(struct lt_area_header, high_water) == 84, "high-water mark");
_Static_assert(offsetof(struct lt_area_header, reader_state) == 128, "reader line");
_Static_assert(offsetof(struct lt_area_header, lost_without_ring) == 192, "lost line");
_Static_assert(offsetof(struct lt_area_header, claims) == 260, "claims counter");
_Static_assert(offsetof(struct lt_area_header, drain_wake) == 320, "wake line");
_Static_assert(offsetof(struct lt_ring_header, head) == 64, "writer line");
_Static_assert(offsetof(struct lt_ring_header, stall_tail) == 128, "slow-path line");
_Static_assert(offsetof(struct lt_ring_header, tail) == 192, "reader line");

/* Atomic accessors for the reader side (Swift cannot apply C11 atomics to
 * memory it did not allocate). */
static inline uint64_t lt_atomic_load_acquire_u64(const uint64_t *p) { return __atomic_load_n(p, __ATOMIC_ACQUIRE); }
static inline uint32_t lt_atomic_load_acquire_u32(const uint32_t *p) { return __atomic_load_n(p, __ATOMIC_ACQUIRE); }
static inline void lt_atomic_store_release_u64(uint64_t *p, uint64_t v) { __atomic_store_n(p, v, __ATOMIC_RELEASE); }
static inline void lt_atomic_store_release_u32(uint32_t *p, uint32_t v) { __atomic_store_n(p, v, __ATOMIC_RELEASE); }
static inline int lt_atomic_cas_u32(uint32_t *p, uint32_t expected, uint32_t desired) {
    return __atomic_compare_exchange_n(p, &expected, desired, 0, __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE);
}

/* The ring `index` of the area at `area`. */
static inline struct lt_ring_header *lt_area_ring(struct lt_area_header *area, uint32_t index) {
    return (struct lt_ring_header *)((char *)area + area->rings_offset + (uint64_t)index * area->ring_stride);
}
static inline uint64_t *lt_ring_records(struct lt_ring_header *ring) {
    return (uint64_t *)((char *)ring + LT_RING_HEADER_SIZE);
}

/* The writer's prefetch: every event, the writer asks for the slot
 * LT_RING_PREFETCH_AHEAD records ahead of head (8 cache lines, about 32
 * calls) for writing (prefetchw), masked into its own ring so it never
 * pulls another ring's header line. That line was last read by the drain,
 * on another core when the drain runs there, so a store to it is a miss
 * (a read-for-ownership from the drain's cache); fetched ahead, the miss
 * overlaps the writer's TSC reads instead of stalling its store. A
 * prefetch never faults, and one of a line already owned costs about
 * nothing, so it is issued per event without a test. It needs the CPUID
 * flag PRFCHW (AMD: 3DNowPrefetch, every x86-64 AMD CPU; Intel: Broadwell
 * on). Older Intel CPUs decode 0F 0D /1 as a NOP without reporting the flag
 * (the reason 64-bit Windows 8.1, which requires PREFETCHW, runs on them),
 * so no CPU faults on it; not checked on such a CPU here. */
#define LT_RING_PREFETCH_AHEAD 64u
static inline void lt_ring_prefetch_slot(uint64_t *records, uint64_t head, uint64_t mask) {
    __asm__ __volatile__("prefetchw %0" : : "m"(records[(head + LT_RING_PREFETCH_AHEAD) & mask]));
}

/* The TSC, as the hot path reads it. */
static inline uint64_t lt_rdtsc(void) {
    uint32_t lo, hi;
    __asm__ __volatile__("rdtsc" : "=a"(lo), "=d"(hi));
    return ((uint64_t)hi << 32) | lo;
}

#endif
