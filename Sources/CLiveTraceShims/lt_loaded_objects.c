/* See include/lt_loaded_objects.h. dl_iterate_phdr and struct dl_phdr_info
 * are GNU extensions: <link.h> declares them only under _GNU_SOURCE. */
#define _GNU_SOURCE
#include "lt_loaded_objects.h"
#include <link.h>

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
