// Translation unit for the CKVM module; all helpers are static inline in ckvm.h.
#include "ckvm.h"
