/* See include/lt_loaded_objects.h. dl_iterate_phdr and struct dl_phdr_info
 * are GNU extensions: <link.h> declares them only under _GNU_SOURCE. */
#define _GNU_SOURCE
#include "lt_loaded_objects.h"
#include <link.h>
#include <stddef.h>

struct forward { lt_loaded_object_visitor visitor; void *context; };

static int forward_one(struct dl_phdr_info *info, size_t size, void *data) {
    (void)size;
    const struct forward *forward = data;
    struct lt_loaded_object object = {
        .load_bias = (uintptr_t)info->dlpi_addr,
        .name = info->dlpi_name ? info->dlpi_name : "",
        .program_headers = info->dlpi_phdr,
        .program_header_count = info->dlpi_phnum,
    };
    return forward->visitor(&object, forward->context);
}

int lt_iterate_loaded_objects(lt_loaded_object_visitor visitor, void *context) {
    struct forward forward = { visitor, context };
    return dl_iterate_phdr(forward_one, &forward);
}

static int read_generation(struct dl_phdr_info *info, size_t size, void *data) {
    uint64_t *counts = data;
    if (size >= offsetof(struct dl_phdr_info, dlpi_subs) + sizeof info->dlpi_subs) {
        counts[0] = info->dlpi_adds;
        counts[1] = info->dlpi_subs;
    }
    return 1;
}

uint64_t lt_loaded_objects_generation(void) {
    uint64_t counts[2] = {0, 0};
    dl_iterate_phdr(read_generation, counts);
    /* Each load and each unload moves one of the counters by one. */
    return counts[0] * 0x9E3779B97F4A7C15ull ^ counts[1];
}
