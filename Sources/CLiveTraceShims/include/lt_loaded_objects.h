#ifndef LT_LOADED_OBJECTS_H
#define LT_LOADED_OBJECTS_H
/* Site discovery in the running process (LiveTraceSites/ProcessObjects.swift)
 * enumerates the loaded ELF objects with dl_iterate_phdr(3): the executable,
 * every shared library and every object loaded later with dlopen. <link.h>
 * declares it only under _GNU_SOURCE, which Swift's Glibc module does not
 * define, so this forwards the call and hands each object over in a plain
 * struct.
 * The visitor runs under the loader's lock: it must copy and return. */
#include <stddef.h>
#include <stdint.h>

struct lt_loaded_object {
    uintptr_t load_bias;            /* dlpi_addr: run-time minus link-time address */
    const char *name;               /* dlpi_name: "" for the executable */
    const void *program_headers;    /* dlpi_phdr: Elf64_Phdr[program_header_count] */
    uint16_t program_header_count;  /* dlpi_phnum */
};

typedef int (*lt_loaded_object_visitor)(const struct lt_loaded_object *object, void *context);

/* Calls `visitor` once per loaded object, in the loader's order (the
 * executable first); stops early when it returns non-zero. */
int lt_iterate_loaded_objects(lt_loaded_object_visitor visitor, void *context);

/* A value that changes whenever an object is loaded or unloaded (from the
 * loader's dlpi_adds and dlpi_subs counters): the process's site list is
 * reloaded when it moves. No system call, no /proc read. */
uint64_t lt_loaded_objects_generation(void);
#endif
