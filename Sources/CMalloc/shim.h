// glibc allocator tuning (mallopt): Foundation does not export <malloc.h>.
#include <malloc.h>
