// The function graph through the C API of liblivetrace.so, in a C++ program
// (so the unwinder interposers must work from the shared library): records
// its own calls into a ring area it maps itself, then prints every event as
// "<tid-index> > name depth" / "< name depth" / "<! name depth" (unwound),
// followed by the results. FunctionGraphTests compares the output exactly.
#include <dlfcn.h>
#include <stdio.h>
#include <stdexcept>
#include <sys/mman.h>
#include <pthread.h>
#include "livetrace.h"
#include "lt_graph.h"
// lt_record.h and lt_ring.h are C headers (C11 _Static_assert, no extern "C").
#define _Static_assert static_assert
extern "C" {
#include "lt_record.h"
#include "lt_ring.h"
}
#undef _Static_assert

extern "C" {
int cx_leaf(int x) { return x + 1; }
int cx_fib(int n) { return n < 2 ? n : cx_fib(n - 1) + cx_fib(n - 2); }
int cx_thrower(int x) {
    cx_leaf(x);
    throw std::runtime_error("through liblivetrace.so");
}
int cx_catcher(int x) {
    try {
        return cx_thrower(x);
    } catch (const std::exception &) {
        return cx_leaf(50);
    }
}
int cx_main_work(void) { return cx_catcher(1) + cx_fib(3); }
}

static const char *name_of(uint64_t address) {
    Dl_info info;
    if (dladdr((void *)address, &info) && info.dli_sname) return info.dli_sname;
    return "?";
}

int main(int argc, char **argv) {
    const char *const filters[] = {"cx_*", nullptr};
    const char *const none[] = {nullptr};
    int bad = lt_graph_start(filters, none, 0, 1000);
    printf("min_time refused: %s\n", bad == -LT_EINVAL ? "yes" : "no");

    uint32_t rings = 8, capacity = 1 << 12;
    size_t size = lt_ring_area_size(rings, capacity);
    void *area = mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    uint64_t tsc, ns;
    lt_record_calibration_pair(&tsc, &ns);
    if (lt_ring_area_init(area, size, rings, capacity, 0, tsc, ns, 1000000) != 0) return 10;
    if (lt_record_attach(area, size) != 0) return 11;
    int started = lt_graph_start(filters, none, 0, 0);
    if (started != 0) {
        printf("lt_graph_start: %s\n", lt_strerror(started));
        return 12;
    }
    int again = lt_graph_start(filters, none, 0, 0);
    int result = cx_main_work();
    if (lt_graph_stop() != 0) return 13;
    int stopped_twice = lt_graph_stop();
    if (lt_record_detach() != 0) return 14;

    struct lt_area_header *header = (struct lt_area_header *)area;
    for (uint32_t i = 0; i < header->ring_count; i++) {
        struct lt_ring_header *ring = lt_area_ring(header, i);
        if (ring->state == LT_RING_FREE) continue;
        /* Version 3 records (lt_ring.h), decoded here: BASE and DEPTH
         * records set the state, the depth is derived otherwise. */
        uint64_t *records = lt_ring_records(ring);
        uint64_t base = 0, depth = 0;
        int have_depth = 0, last_entry = 0, pending = 0;
        for (uint64_t e = 0; e < ring->head; e++) {
            uint64_t record = records[e];
            uint32_t kind = lt_rec_kind(record);
            if (kind == LT_REC_META) {
                if (lt_rec_type(record) == LT_REC_BASE) base = lt_rec_payload(record);
                if (lt_rec_type(record) == LT_REC_DEPTH) { depth = lt_rec_payload(record); pending = 1; }
                continue;
            }
            int entry = kind == LT_EVENT_ENTRY;
            if (!pending && have_depth) depth = last_entry ? (entry ? depth + 1 : depth) : (entry ? depth : depth - 1);
            pending = 0;
            have_depth = 1;
            last_entry = entry;
            const char *mark = entry ? ">" : lt_rec_flag(record) ? "<!" : "<";
            printf("%s %s %u\n", mark, name_of(base << 32 | (record & 0xFFFFFFFFull)), (unsigned)depth);
        }
        printf("lost %lu\n", (unsigned long)ring->lost_total);
    }
    printf("second start: %s\n", again == -LT_EALREADY ? "already" : "?");
    printf("second stop: %s\n", stopped_twice == -LT_ENOTREG ? "not registered" : "?");
    printf("result %d\n", result);
    return 0;
}
