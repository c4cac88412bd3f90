#define DLF_IMPLEMENTATION
#include "dlf.h"
