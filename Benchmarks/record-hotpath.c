/* Benchmark: the cost of the recording hot path (lt_record_entry +
 * lt_record_exit) per traced call, against a baseline measured in the same
 * run: the same loop calling the same empty function without recording.
 *
 * A consumer thread plays the drain: it copies every published event out of
 * the ring (as TraceDrain does before writing it) and advances the tail, so
 * the writer runs in steady state, never on the full-ring path. The events
 * lost (normally 0) are printed with the result.
 *
 * The floor beside it: the same loop reading the TSC twice per call, as the
 * writer must (one timestamp per event, two events per call), with nothing
 * recorded. The writer's figure minus this one is what the ring costs; this
 * one is what no encoding of the events can remove.
 *
 * RECORD_PIN=W,R pins the writer (the main thread) to CPU W and the
 * consumer to CPU R: W = R puts both on one core, W != R makes every ring
 * line cross between cores (issue 14: the cost of the writer/drain protocol
 * across cores).
 *
 *   record-hotpath [CALLS]
 */
#define _GNU_SOURCE
#include "lt_record.h"
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

enum { RINGS = 4, CAPACITY = 1 << 16, REPEATS = 7 };

static struct lt_area_header *area;
static volatile int consumer_running = 1;
static uint64_t consumed;

__attribute__((noinline)) void traced_function(long i) { __asm__ __volatile__("" : : "r"(i) : "memory"); }

static double now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e9 + ts.tv_nsec;
}

static int pin_writer = -1, pin_reader = -1;

static void pin_self(int cpu) {
    if (cpu < 0) return;
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(cpu, &set);
    pthread_setaffinity_np(pthread_self(), sizeof set, &set);
}

static void *consumer(void *unused) {
    (void)unused;
    pin_self(pin_reader);
    lt_record_thread_ignore(1);
    static uint64_t copy[CAPACITY];
    while (__atomic_load_n(&consumer_running, __ATOMIC_ACQUIRE)) {
        int moved = 0;
        for (uint32_t r = 0; r < RINGS; r++) {
            struct lt_ring_header *ring = lt_area_ring(area, r);
            if (lt_atomic_load_acquire_u32(&ring->state) != LT_RING_OWNED) continue;
            uint64_t head = lt_atomic_load_acquire_u64(&ring->head), tail = ring->tail;
            uint64_t *events = lt_ring_records(ring);
            for (uint64_t i = tail; i < head; i++) copy[i & (CAPACITY - 1)] = events[i & (CAPACITY - 1)];
            consumed += head - tail;
            moved += head != tail;
            lt_ring_release_tail(ring, head);
        }
        if (!moved) usleep(50);
    }
    return NULL;
}

static double run_baseline(long calls) {
    double start = now_ns();
    for (long i = 0; i < calls; i++) traced_function(i);
    return (now_ns() - start) / calls;
}

static double run_recorded(long calls) {
    uintptr_t ip = (uintptr_t)traced_function;
    double start = now_ns();
    for (long i = 0; i < calls; i++) {
        lt_record_entry(ip, 0);
        traced_function(i);
        lt_record_exit(ip, 0, 0);
    }
    return (now_ns() - start) / calls;
}

static uint64_t timestamp_sink;

/* The floor: two TSC reads per call, kept (summed) so neither is dead. */
static double run_timestamps(long calls) {
    uint64_t sum = 0;
    double start = now_ns();
    for (long i = 0; i < calls; i++) {
        sum += lt_rdtsc();
        traced_function(i);
        sum += lt_rdtsc();
    }
    double elapsed = now_ns() - start;
    timestamp_sink = sum;
    return elapsed / calls;
}

static int compare_doubles(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

int main(int argc, char **argv) {
    long calls = argc > 1 ? atol(argv[1]) : 20000000;
    const char *pin = getenv("RECORD_PIN");
    if (pin != NULL && sscanf(pin, "%d,%d", &pin_writer, &pin_reader) != 2) pin_writer = pin_reader = -1;
    pin_self(pin_writer);
    size_t size = lt_ring_area_size(RINGS, CAPACITY);
    area = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (area == MAP_FAILED) { perror("mmap"); return 1; }
    uint64_t tsc0, ns0, tsc1, ns1;
    lt_record_calibration_pair(&tsc0, &ns0);
    usleep(10000);
    lt_record_calibration_pair(&tsc1, &ns1);
    uint64_t per_ms = (tsc1 - tsc0) * 1000000 / (ns1 - ns0);
    /* A writer waits up to 1 s for the consumer: on a busy machine the
     * measurement stays one of the hot path, not of the loss path. */
    if (lt_ring_area_init(area, size, RINGS, CAPACITY, 1000000, tsc0, ns0, per_ms) != 0) return 1;
    __atomic_store_n(&area->reader_state, LT_READER_ATTACHED, __ATOMIC_RELEASE);
    pthread_t reader;
    pthread_create(&reader, NULL, consumer, NULL);
    if (lt_record_attach(area, size) != 0) return 1;

    /* Alternating runs (baseline, then recorded, REPEATS times): the figure
     * is the median and range of the per-run added cost, never the best. */
    double base[REPEATS], added[REPEATS], floor_added[REPEATS];
    run_recorded(calls / 10); /* warm-up: claims the ring, faults its pages in */
    for (int r = 0; r < REPEATS; r++) {
        base[r] = run_baseline(calls);
        added[r] = run_recorded(calls) - base[r];
        floor_added[r] = run_timestamps(calls) - base[r];
    }
    lt_record_detach();
    __atomic_store_n(&consumer_running, 0, __ATOMIC_RELEASE);
    pthread_join(reader, NULL);
    uint64_t lost = area->lost_without_ring;
    for (uint32_t r = 0; r < RINGS; r++) lost += lt_area_ring(area, r)->lost_total;
    qsort(base, REPEATS, sizeof base[0], compare_doubles);
    qsort(added, REPEATS, sizeof added[0], compare_doubles);
    qsort(floor_added, REPEATS, sizeof floor_added[0], compare_doubles);
    double median = added[REPEATS / 2];
    printf("record hot path: %d alternating runs of %ld calls; baseline %.2f ns/call (median); "
           "added per entry+exit pair %.2f ns median (range %.2f-%.2f), %.2f ns per event; %llu events lost\n",
           REPEATS, calls, base[REPEATS / 2], median, added[0], added[REPEATS - 1], median / 2,
           (unsigned long long)lost);
    printf("  floor, two TSC reads per call and nothing recorded: added %.2f ns median (range %.2f-%.2f)\n",
           floor_added[REPEATS / 2], floor_added[0], floor_added[REPEATS - 1]);
    const char *rows = getenv("BENCH_ROWS");
    FILE *out = rows ? fopen(rows, "a") : NULL;
    if (out) {
        fprintf(out, "writer hot path (lt_record_entry+exit, C loop), added per call\t%.2f\t%.2f-%.2f\tns\t\n",
                median, added[0], added[REPEATS - 1]);
        fprintf(out, "two TSC reads per call (rdtsc, the writer's floor), added per call\t%.2f\t%.2f-%.2f\tns\t\n",
                floor_added[REPEATS / 2], floor_added[0], floor_added[REPEATS - 1]);
        fclose(out);
    }
    return 0;
}
