#ifndef LT_SHIMS_H
#define LT_SHIMS_H
/* The C layer of LiveTrace. Each mechanism has its own header in this
 * directory; this file only exists so the target has a stable umbrella. */
#include <stdint.h>
#endif
