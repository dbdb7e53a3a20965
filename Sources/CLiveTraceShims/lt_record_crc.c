/* CRC-32C (Castagnoli, reflected polynomial 0x82F63B78) of the trace
 * format's chunks, and the drain's one pass over a chunk's events. The drain checksums every byte it moves, so this runs at
 * recording throughput: the SSE4.2 `crc32` instruction does 8 bytes per
 * instruction, which Swift cannot emit; a table-driven loop covers CPUs
 * without SSE4.2. Both give the same result (checked in the tests against a
 * bitwise reference). */
#include "lt_record.h"
#include <sys/platform/x86.h>

#define LT_CRC32C_POLYNOMIAL 0x82F63B78u

static uint32_t lt_crc32c_table[256];
static int lt_crc32c_table_ready;

static uint32_t lt_crc32c_portable(uint32_t crc, const unsigned char *p, size_t n) {
    if (!__atomic_load_n(&lt_crc32c_table_ready, __ATOMIC_ACQUIRE)) {
        for (uint32_t i = 0; i < 256; i++) {
            uint32_t c = i;
            for (int k = 0; k < 8; k++) c = (c & 1) ? LT_CRC32C_POLYNOMIAL ^ (c >> 1) : c >> 1;
            lt_crc32c_table[i] = c;
        }
        __atomic_store_n(&lt_crc32c_table_ready, 1, __ATOMIC_RELEASE);
    }
    while (n--) crc = lt_crc32c_table[(crc ^ *p++) & 0xff] ^ (crc >> 8);
    return crc;
}

__attribute__((target("sse4.2")))
static uint32_t lt_crc32c_sse42(uint32_t crc, const unsigned char *p, size_t n) {
    uint64_t c = crc;
    while (n >= 8) {
        uint64_t word;
        __builtin_memcpy(&word, p, 8);
        c = __builtin_ia32_crc32di(c, word);
        p += 8;
        n -= 8;
    }
    uint32_t c32 = (uint32_t)c;
    while (n--) c32 = __builtin_ia32_crc32qi(c32, *p++);
    return c32;
}

/* SSE4.2, as glibc found it at start-up (glibc 2.33's <sys/platform/x86.h>
 * reads the features ld.so already computed). Not __builtin_cpu_supports:
 * that links libgcc's cpuinfo, whose constructor runs some ten `cpuid` at
 * every load of the shim and of the CLI, and in a virtual machine each
 * `cpuid` exits to the hypervisor (about 9 us measured on the project
 * machine). */
static int lt_crc32c_has_sse42(void) { return CPU_FEATURE_ACTIVE(SSE4_2); }

/* The register form of a CRC is the finished value xor 0xFFFFFFFF, so
 * continuing a finished CRC is: undo the final xor, run, xor again. */
uint32_t lt_record_crc32c_extend(uint32_t crc, const void *data, size_t length) {
    const unsigned char *p = data;
    uint32_t state = crc ^ 0xFFFFFFFFu;
    state = lt_crc32c_has_sse42() ? lt_crc32c_sse42(state, p, length)
                                             : lt_crc32c_portable(state, p, length);
    return state ^ 0xFFFFFFFFu;
}

uint32_t lt_record_crc32c(const void *data, size_t length) { return lt_record_crc32c_extend(0, data, length); }

/* One pass over `count` version 3 records (lt_ring.h): the CRC-32C
 * continued from `crc`, the LOST counts, the function records, and the
 * entry addresses missing from `filter` (a direct-mapped table of
 * `filter_mask + 1` addresses already seen; a miss is stored there and
 * appended to `new_entries`, which holds `count` addresses). Fused so that
 * the drain reads every record once at recording throughput: the CRC
 * instruction's chain and the record tests overlap. */
/* One record of the scan: an entry whose address the direct-mapped filter
 * has not seen is stored there and appended to new_entries; a LOST record
 * adds its count; a BASE record sets the high half of the addresses after it.
 * Entries and exits come in no order a branch predictor learns (a branch on
 * the kind missed about every other record: 6.6 ns a record on random
 * kinds, against 1.9 alternating), so the common case takes no branch on
 * the kind: the count is added from a compare, the filter is probed for
 * every record, and the only branches are the rare ones (a new entry
 * address, a metadata record). `scan` is the caller's local copy, which
 * keeps the counters in registers (the caller's struct might alias the
 * filter and new_entries stores). */
static inline __attribute__((always_inline)) void lt_scan_record(uint64_t record, struct lt_chunk_scan *scan,
                                                                 uint64_t *filter, uint64_t filter_mask,
                                                                 uint64_t *new_entries) {
    uint32_t kind = lt_rec_kind(record);
    scan->functions += kind - 1u < 2u; /* ENTRY or EXIT */
    uint64_t address = scan->base << 32 | (record & LT_REC_LOW_MASK);
    uint64_t slot = (address ^ address >> 12) & filter_mask;
    if (__builtin_expect((kind == LT_EVENT_ENTRY) & (filter[slot] != address), 0)) {
        filter[slot] = address;
        new_entries[scan->new_entries++] = address;
    }
    if (__builtin_expect(kind == LT_REC_META, 0)) {
        uint32_t type = lt_rec_type(record);
        if (type == LT_REC_LOST) {
            scan->lost += lt_rec_payload(record) & LT_REC_LOST_COUNT_MAX;
            scan->lost_records += 1;
        } else if (type == LT_REC_BASE) {
            scan->base = lt_rec_payload(record);
        }
    }
}

#define LT_SCAN_PREFETCH_AHEAD 128

__attribute__((target("sse4.2")))
static void lt_scan_sse42(const uint64_t *records, size_t count, struct lt_chunk_scan *scan,
                          uint64_t *filter, uint64_t filter_mask, uint64_t *new_entries) {
    struct lt_chunk_scan local = *scan;
    uint64_t c = local.crc ^ 0xFFFFFFFFu;
    for (size_t i = 0; i < count; i++) {
        /* The records were written on the writer's core: each line is a
         * miss, fetched LT_SCAN_PREFETCH_AHEAD records ahead so that the
         * misses overlap instead of stalling the CRC chain one line at a
         * time; never past the chunk, whose end may be the line the
         * writer is filling. */
        if ((i & 7) == 0 && i + LT_SCAN_PREFETCH_AHEAD < count) __builtin_prefetch(&records[i + LT_SCAN_PREFETCH_AHEAD], 0, 3);
        uint64_t record;
        __builtin_memcpy(&record, &records[i], 8);
        c = __builtin_ia32_crc32di(c, record);
        lt_scan_record(record, &local, filter, filter_mask, new_entries);
    }
    local.crc = (uint32_t)c ^ 0xFFFFFFFFu;
    *scan = local;
}

void lt_record_scan_records(const uint64_t *records, size_t count, struct lt_chunk_scan *scan,
                            uint64_t *filter, uint64_t filter_mask, uint64_t *new_entries) {
    if (lt_crc32c_has_sse42()) {
        lt_scan_sse42(records, count, scan, filter, filter_mask, new_entries);
        return;
    }
    struct lt_chunk_scan local = *scan;
    local.crc = lt_record_crc32c_extend(local.crc, records, count * sizeof *records);
    for (size_t i = 0; i < count; i++) lt_scan_record(records[i], &local, filter, filter_mask, new_entries);
    *scan = local;
}
