#ifndef LT_UNLOAD_H
#define LT_UNLOAD_H
/* dlclose of an object with patched sites (lt_unload.c).
 *
 * The ops registry remembers every site it patched. When a dlclose unmaps
 * the object that holds some of them, the registry must forget them before
 * anything pokes those addresses again (reading an unmapped site would kill
 * the program; writing one now mapped by another object would corrupt it).
 *
 * Protocol of the dlclose interposer:
 *   1. find the object of the handle (dlinfo RTLD_DI_LINKMAP) and the ranges
 *      of its executable segments;
 *   2. close the unload gate: from here no other thread pokes sites (the
 *      registry enters the gate around each of its changes; a change from
 *      this thread, e.g. from the object's destructors, passes);
 *   3. call the real dlclose;
 *   4. if the object is no longer loaded (dlclose only drops a reference
 *      while others hold it), call the unload hook for each range: the
 *      registry forgets the sites in it and retires what only they used;
 *   5. open the gate.
 * A child forked meanwhile starts with the gate open (pthread_atfork). */
#include <stdint.h>

typedef void (*lt_unload_hook)(uintptr_t start, uintptr_t end);

/* Installs the hook called in step 4 (the ops registry, once). */
void lt_unload_set_hook(lt_unload_hook hook);

/* Enters the gate, waiting at most `timeout_ms` for a dlclose in another
 * thread. Returns a token for lt_unload_gate_leave: 1 entered, 0 passed
 * (this thread is the one inside dlclose), or -1 timed out (a dlclose that
 * cannot finish: a library constructor registering ops in another thread
 * while this one waits for the loader). */
int lt_unload_gate_enter(unsigned timeout_ms);
void lt_unload_gate_leave(int token);

/* Number of objects whose sites the hook was called for (tests). */
uint64_t lt_unload_count(void);
#endif
