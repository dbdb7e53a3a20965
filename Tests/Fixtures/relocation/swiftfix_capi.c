/* The Swift fixture (swiftfix.swift, built with plain swiftc: no entry
 * sites) traced through the C API alone: lt_include_dynamic, then one ops
 * per function pattern, each counting its callback's calls. Prints, per
 * pattern, the calls the callback saw and the calls the Swift code counted
 * itself (swiftfix_counter), then the run's results traced and untraced.
 *
 *   swiftfix_capi LIBRARY MODULE
 */
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include "livetrace.h"

typedef long (*run_fn)(long);
typedef long (*counter_fn)(long);

static void count(uintptr_t ip, uintptr_t parent_ip, lt_ops *ops, lt_regs *regs) {
    (void)ip; (void)parent_ip; (void)regs;
    __atomic_add_fetch((long *)lt_ops_data(ops), 1, __ATOMIC_RELAXED);
}

int main(int argc, char **argv) {
    if (argc != 3) { fprintf(stderr, "usage: %s LIBRARY MODULE\n", argv[0]); return 2; }
    void *library = dlopen(argv[1], RTLD_NOW | RTLD_LOCAL);
    if (!library) { fprintf(stderr, "dlopen: %s\n", dlerror()); return 2; }
    run_fn run = (run_fn)dlsym(library, "swiftfix_run");
    counter_fn counter = (counter_fn)dlsym(library, "swiftfix_counter");
    if (!run || !counter) { fprintf(stderr, "dlsym: %s\n", dlerror()); return 2; }
    const char *module = argv[2];
    /* As SwiftDynamicTests: "*" in front takes a function's specializations
     * ("... of NAME") too. */
    const char *shapes[6] = {"*%s.fib(*", "*%s.Shape.area() *", "*%s.Animal.speak() *",
                             "*%s.Dog.speak() *", "*%s.Bell.loudness() *", "*%s.checked(*"};
    long untraced = run(50);
    long before[6], seen[6] = {0};
    for (int i = 0; i < 6; i++) before[i] = counter(i);

    lt_include_dynamic(1);
    lt_ops *ops[6];
    for (int i = 0; i < 6; i++) {
        char pattern[256];
        snprintf(pattern, sizeof pattern, shapes[i], module);
        ops[i] = lt_ops_create(count, &seen[i], 0);
        int error = ops[i] ? lt_ops_set_filter(ops[i], pattern) : -LT_ENOMEM;
        if (error == 0) error = lt_ops_register(ops[i]);
        if (error != 0) { fprintf(stderr, "%s: %s\n", pattern, lt_strerror(error)); return 1; }
    }
    long traced = run(50);
    long own[6];
    for (int i = 0; i < 6; i++) own[i] = counter(i) - before[i];
    for (int i = 0; i < 6; i++) {
        int error = lt_ops_unregister(ops[i]);
        if (error != 0) { fprintf(stderr, "unregister: %s\n", lt_strerror(error)); return 1; }
        lt_ops_destroy(ops[i]);
    }
    int restored = lt_restore_relocated();
    long after = run(50);
    for (int i = 0; i < 6; i++) {
        char pattern[256];
        snprintf(pattern, sizeof pattern, shapes[i], module);
        printf("%s seen %ld own %ld\n", pattern, seen[i], own[i]);
    }
    printf("results %ld %ld %ld restored %d skipped %llu\n", untraced, traced, after, restored,
           (unsigned long long)lt_skipped_calls());
    return 0;
}
