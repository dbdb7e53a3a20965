#ifndef LT_RECORD_H
#define LT_RECORD_H
/* The writer side of recording: what the trampolines call on every traced
 * entry and exit. The hot path (lt_record_entry / lt_record_exit) takes no
 * lock, makes no system call and never allocates: it reads the thread's ring
 * from an initial-exec TLS slot, compares its head with the ring's limit
 * and the event with the stream's encoder state, stores one 8-byte record
 * and publishes it with one release store (protocol and records in
 * lt_ring.h).
 *
 * Slow paths, each counted, never silent:
 *   - the ring passes its high-water mark (at most twice per quarter ring): the
 *     writer reads the reader's tail and, if the ring really is that full,
 *     wakes the drain (a futex wake, only when the drain sleeps);
 *   - first event of a thread: claims a FREE ring by CAS; when every ring is
 *     taken the event is added to the area's lost_without_ring.
 *   - full ring: waits for the reader at most wait_timeout_us when a reader is
 *     attached (spinning, then a futex wait the reader ends when it releases
 *     room); otherwise, or when the wait
 *     expires, the event is added to the ring's lost_total and a LOST event
 *     carrying the count is written before the next stored event.
 *   - each context of a thread (its normal flow, each nested signal
 *     handler: lt_context.h) writes its own ring, so a handler that
 *     interrupts a write records its events without touching the
 *     interrupted one; only a handler nested beyond the deepest context
 *     shares that context's ring, and an event it makes while it
 *     interrupts a write there is lost (and counted).
 */
#include <stdint.h>
#include <stddef.h>
#include "lt_ring.h"

/* Error codes of the functions below that return int (negated). */
enum lt_record_error {
    LT_RECORD_OK = 0,
    LT_RECORD_EBADMAGIC = 1001,   /* the mapping does not start with LT_RING_AREA_MAGIC */
    LT_RECORD_EVERSION = 1002,    /* a ring-area version this writer does not know */
    LT_RECORD_ELAYOUT = 1003,     /* sizes in the header contradict the mapping */
    LT_RECORD_EACTIVE = 1004,     /* a recording is already active in this process */
    LT_RECORD_EINACTIVE = 1005,   /* no recording is active */
};

/* Lays out an empty ring area in the zero-filled mapping at `area` of `size`
 * bytes: `ring_count` rings of `ring_capacity` events (a power of two), the
 * calibration pair and coarse TSC rate, the writer's bounded wait. Every
 * field is written before the magic, which is written last (release), so a
 * mapper that sees the magic sees a whole header. Returns 0 or
 * -LT_RECORD_ELAYOUT when the sizes do not fit. */
int lt_ring_area_init(void *area, size_t size, uint32_t ring_count, uint32_t ring_capacity,
                      uint32_t wait_timeout_us, uint64_t start_tsc, uint64_t start_monotonic_ns,
                      uint64_t tsc_ticks_per_ms);

/* The same layout in the file `fd` (zero-filled, `size` bytes), before
 * anyone maps it: only the area header is written (pwrite), the rings stay
 * zero. A zero ring header is a FREE ring, and every field a writer or the
 * drain reads in it (index, limit, stall_tail, base, next_depth) is set when
 * the ring is claimed (lt_ring_own). The ring area's creator uses it
 * because the first store into each page of a fallocated ext4 file is an
 * extent conversion: through the shared mapping about 7 us for each of the
 * 1 + ring_count header pages (0.45 ms for 64 rings before the program
 * could start), with pwrite about 6 us each; now the one page, and a ring's
 * page is first written by the thread that claims it. Returns 0,
 * -LT_RECORD_ELAYOUT, or -errno of a failed write (-EIO for a short one). */
int lt_ring_area_write(int fd, size_t size, uint32_t ring_count, uint32_t ring_capacity,
                       uint32_t wait_timeout_us, uint64_t start_tsc, uint64_t start_monotonic_ns,
                       uint64_t tsc_ticks_per_ms);

/* Sets the high-water mark of a new area (lt_ring_area_init sets a quarter
 * of the capacity): the number of events in a ring at which its writer
 * wakes the drain, 1..ring_capacity. For the creator, before any writer
 * attaches. Returns 0 or -LT_RECORD_ELAYOUT. */
int lt_ring_area_set_high_water(void *area, uint32_t events);

/* The size of an area of `ring_count` rings of `ring_capacity` events. */
size_t lt_ring_area_size(uint32_t ring_count, uint32_t ring_capacity);

/* Starts recording this process into the ring area mapped at `area`
 * (`size` bytes, created by the drain side). Returns 0 or -lt_record_error. */
int lt_record_attach(void *area, size_t size);

/* Maps the ring-area file at `path` (MAP_SHARED) and attaches to it.
 * Returns 0, -errno (open/fstat/mmap), or -lt_record_error. */
int lt_record_attach_file(const char *path);

/* The environment variable through which a recording process (the CLI)
 * tells a traced program (the LD_PRELOAD shim) where its ring area is. */
#define LT_RECORD_RINGS_ENV "LIVETRACE_RINGS"

/* lt_record_attach_file(getenv(LT_RECORD_RINGS_ENV)); -ENOENT when the
 * variable is not set. For start-up code, not for signal handlers. */
int lt_record_attach_env(void);

/* Stops recording and waits until no thread is inside lt_record_*
 * (membarrier, then each ring's busy flag). On return no writer stores an
 * event in the area again: it may be drained for the last time. The mapping
 * is never unmapped (see lt_record.c). Returns 0, -lt_record_error, or
 * -errno of membarrier (quiescence not proven: a writer may still publish). */
int lt_record_detach(void);

/* The area being recorded into, or NULL. */
struct lt_area_header *lt_record_active_area(void);

/* After a successful lt_record_detach of the area mapped from a file by
 * lt_record_attach_file: gives the file's pages back and keeps the area's
 * addresses reserved by private zero pages, holding a copy of the owner
 * line of every ring a live thread of this process still owns (its writer
 * state points there). The next lt_record_attach_file of a file with the
 * same layout maps it at the same addresses and hands those rings to the
 * same owners, so repeated sessions reuse one reservation (record -p:
 * LiveTraceC/Attach.swift). Returns 0, or -LT_RECORD_EACTIVE while an area
 * is attached. */
int lt_record_release_area(struct lt_area_header *area);

/* Hot path. `depth` is the nesting depth the caller keeps (shadow stack);
 * `flags` are enum lt_event_flags. */
void lt_record_entry(uintptr_t ip, uint32_t depth);
void lt_record_exit(uintptr_t ip, uint32_t depth, uint32_t flags);
/* An entry with `flags` (LT_EVENT_FLAG_ENTRY_ONLY: a call that will never
 * have an exit). */
void lt_record_entry_flags(uintptr_t ip, uint32_t depth, uint32_t flags);

/* The reader's half of the wake-ups (lt_ring.h): releases `tail` (the
 * events before it are consumed) and wakes the ring's writer if it waits
 * for room. */
void lt_ring_release_tail(struct lt_ring_header *ring, uint64_t tail);

/* The drain's sleep: returns 1 at once when a ring was claimed since the
 * drain saw `claims_seen` claims, or one of the `ring_count` rings it
 * drains (`rings`, indices) is at or above the high-water mark (a writer
 * waiting for room is: its ring is full) or retired; otherwise sleeps until
 * a writer asks for the drain (1) or `timeout_ns` passes (0). */
int lt_area_drain_wait(struct lt_area_header *area, uint64_t timeout_ns, const uint32_t *rings,
                       uint32_t ring_count, uint32_t claims_seen);

/* Ends the drain's sleep now (as a writer asking for it does): for the
 * drain's owner stopping it. */
void lt_area_wake_drain(struct lt_area_header *area);

/* Marks the calling thread as the tracer's own (the drain thread): its
 * events are dropped before they are counted, since they are not the
 * program's. */
void lt_record_thread_ignore(int ignore);

/* Releases the calling thread's ring now (as thread exit does). */
void lt_record_thread_retire(void);

/* CRC-32C (Castagnoli) of `length` bytes, as the trace format's chunks
 * carry it (lt_record_crc.c). */
uint32_t lt_record_crc32c(const void *data, size_t length);

/* The CRC-32C of the bytes whose CRC-32C is `crc` followed by `length`
 * bytes at `data` (lt_record_crc32c(a ++ b) ==
 * lt_record_crc32c_extend(lt_record_crc32c(a), b)); extend(0, ...) is the
 * CRC of the bytes alone. */
uint32_t lt_record_crc32c_extend(uint32_t crc, const void *data, size_t length);

/* What the drain learns from one pass over a chunk of version 3 records
 * (lt_record_scan_records); `crc` and `base` are read (the CRC so far, 0
 * for none; the stream's BASE so far) and written, the counts added to. */
struct lt_chunk_scan {
    uint32_t crc;
    uint32_t reserved;
    uint64_t lost;         /* sum of the LOST records' counts */
    uint64_t lost_records; /* number of LOST records */
    uint64_t new_entries;  /* entry addresses appended to new_entries */
    uint64_t functions;    /* function records (entries and exits) */
    uint64_t base;         /* address >> 32 of the stream's last BASE record */
};

/* The drain's single pass over `count` records: the CRC-32C continued, the
 * LOST counts, the function records, and each entry address missing from
 * the direct-mapped `filter` (filter_mask + 1 slots; stored there and
 * appended to `new_entries`, room for `count`) (lt_record_crc.c). */
void lt_record_scan_records(const uint64_t *records, size_t count, struct lt_chunk_scan *scan,
                            uint64_t *filter, uint64_t filter_mask, uint64_t *new_entries);

/* CLOCK_MONOTONIC in nanoseconds, and a calibration pair read back to back. */
uint64_t lt_record_monotonic_ns(void);
/* Reserves the blocks of [offset, offset + length) of a file without
 * changing its size (fallocate, FALLOC_FL_KEEP_SIZE), for the drain's
 * stream files; 0 or -errno (EOPNOTSUPP on a file system without it). */
int lt_record_preallocate(int fd, uint64_t offset, uint64_t length);
void lt_record_calibration_pair(uint64_t *tsc, uint64_t *monotonic_ns);

/* ---- the writer's state ----------------------------------------------------
 * Shared with the function graph's assembly fast paths (lt_tramp_entry_graph
 * in lt_tramp_x86_64.S, the return trampoline in lt_return_x86_64.S), which
 * store an event the way lt_record_event's hot path does (lt_record.c): the
 * area, the thread's ring of that area, busy, the area rechecked, head below
 * the limit, no LOST event owed, then lt_store_event's stores. Anything else
 * they leave to the full path. Offsets: lt_graph_layout.h. */

struct lt_thread_state {
    struct lt_area_header *area; /* the area `ring` belongs to; NULL before the first claim */
    struct lt_ring_header *ring; /* NULL: no ring (not yet claimed, or none free) */
    uint32_t ignored;            /* the tracer's own thread */
    uint32_t exiting;            /* ring released at thread exit: later events are lost */
};

/* This thread's writer state (initial-exec TLS) and the attached area
 * (written by attach/detach only; read by writers with an acquire load). */
extern __thread struct lt_thread_state lt_thread
    __attribute__((tls_model("initial-exec"), visibility("hidden")));
extern struct lt_area_header *lt_active_area __attribute__((visibility("hidden")));

#endif
