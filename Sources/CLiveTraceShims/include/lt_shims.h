#ifndef LT_SHIMS_H
#define LT_SHIMS_H
/* The C layer of LiveTrace. Each mechanism has its own header in this
 * directory; this file only exists so the target has a stable umbrella. */
#include <stdint.h>
#include "lt_sys.h"
#include "lt_trap.h"
#include "lt_sigmask.h"
#endif
