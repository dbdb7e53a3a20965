/* lt_unload.c — the dlclose interposer and the unload gate (protocol in
 * lt_unload.h). */
#define _GNU_SOURCE
#include "lt_unload.h"
#include "lt_sys.h"
#include <dlfcn.h>
#include <errno.h>
#include <link.h>
#include <pthread.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define LT_UNLOAD_MAX_RANGES 16

static pthread_mutex_t lt_unload_gate = PTHREAD_MUTEX_INITIALIZER;
static int32_t lt_unload_gate_owner; /* tid inside dlclose, 0 when open */
static lt_unload_hook lt_unload_hook_function;
static uint64_t lt_unload_objects;

void lt_unload_set_hook(lt_unload_hook hook) {
    __atomic_store_n(&lt_unload_hook_function, hook, __ATOMIC_RELEASE);
}

uint64_t lt_unload_count(void) { return __atomic_load_n(&lt_unload_objects, __ATOMIC_RELAXED); }

/* A child forked while another thread was inside dlclose inherits a closed
 * gate whose owner does not exist there: it starts with the gate open. */
static void lt_unload_after_fork_in_child(void) {
    pthread_mutex_init(&lt_unload_gate, NULL);
    __atomic_store_n(&lt_unload_gate_owner, 0, __ATOMIC_RELAXED);
}

__attribute__((constructor)) static void lt_unload_init(void) {
    pthread_atfork(NULL, NULL, lt_unload_after_fork_in_child);
}

static int32_t lt_unload_gettid(void) { return (int32_t)lt_sys_gettid(); }

int lt_unload_gate_enter(unsigned timeout_ms) {
    if (__atomic_load_n(&lt_unload_gate_owner, __ATOMIC_ACQUIRE) == lt_unload_gettid()) return 0;
    struct timespec deadline;
    clock_gettime(CLOCK_REALTIME, &deadline);
    deadline.tv_sec += timeout_ms / 1000;
    deadline.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
    if (deadline.tv_nsec >= 1000000000L) {
        deadline.tv_sec += 1;
        deadline.tv_nsec -= 1000000000L;
    }
    return pthread_mutex_timedlock(&lt_unload_gate, &deadline) == 0 ? 1 : -1;
}

void lt_unload_gate_leave(int token) {
    if (token == 1) pthread_mutex_unlock(&lt_unload_gate);
}

struct lt_unload_object {
    uintptr_t base;
    const char *name;
    int found;
    int range_count;
    uintptr_t ranges[LT_UNLOAD_MAX_RANGES][2];
};

static int lt_unload_visit(struct dl_phdr_info *info, size_t size, void *context) {
    (void)size;
    struct lt_unload_object *object = context;
    if (info->dlpi_addr != object->base || strcmp(info->dlpi_name ? info->dlpi_name : "", object->name) != 0)
        return 0;
    object->found = 1;
    for (int i = 0; i < info->dlpi_phnum && object->range_count < LT_UNLOAD_MAX_RANGES; i++) {
        const ElfW(Phdr) *header = &info->dlpi_phdr[i];
        if (header->p_type != PT_LOAD || !(header->p_flags & PF_X)) continue;
        object->ranges[object->range_count][0] = info->dlpi_addr + header->p_vaddr;
        object->ranges[object->range_count][1] = info->dlpi_addr + header->p_vaddr + header->p_memsz;
        object->range_count++;
    }
    return 1;
}

int dlclose(void *handle) {
    static int (*real_dlclose)(void *);
    int (*real)(void *) = __atomic_load_n(&real_dlclose, __ATOMIC_ACQUIRE);
    if (real == NULL) {
        real = (int (*)(void *))dlsym(RTLD_NEXT, "dlclose");
        __atomic_store_n(&real_dlclose, real, __ATOMIC_RELEASE);
    }
    lt_unload_hook hook = __atomic_load_n(&lt_unload_hook_function, __ATOMIC_ACQUIRE);
    if (hook == NULL || handle == NULL) return real(handle);
    /* Step 1. The name is copied: the link map dies with the object. */
    struct link_map *map = NULL;
    if (dlinfo(handle, RTLD_DI_LINKMAP, &map) != 0 || map == NULL) return real(handle);
    char name[4096];
    strncpy(name, map->l_name ? map->l_name : "", sizeof name - 1);
    name[sizeof name - 1] = 0;
    struct lt_unload_object object = {.base = map->l_addr, .name = name};
    dl_iterate_phdr(lt_unload_visit, &object);
    /* Step 2 (a nested dlclose from a destructor already holds the gate). */
    int32_t self = lt_unload_gettid();
    int owner = __atomic_load_n(&lt_unload_gate_owner, __ATOMIC_ACQUIRE) == self;
    if (!owner) {
        pthread_mutex_lock(&lt_unload_gate);
        __atomic_store_n(&lt_unload_gate_owner, self, __ATOMIC_RELEASE);
    }
    /* Step 3. */
    int result = real(handle);
    int saved_errno = errno;
    /* Step 4. */
    if (result == 0 && object.range_count > 0) {
        struct lt_unload_object after = {.base = object.base, .name = name};
        dl_iterate_phdr(lt_unload_visit, &after);
        if (!after.found) {
            for (int i = 0; i < object.range_count; i++) hook(object.ranges[i][0], object.ranges[i][1]);
            __atomic_fetch_add(&lt_unload_objects, 1, __ATOMIC_RELAXED);
        }
    }
    /* Step 5. */
    if (!owner) {
        __atomic_store_n(&lt_unload_gate_owner, 0, __ATOMIC_RELEASE);
        pthread_mutex_unlock(&lt_unload_gate);
    }
    errno = saved_errno;
    return result;
}
