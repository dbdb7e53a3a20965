#include "lt_shims.h"
