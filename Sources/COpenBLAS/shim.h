/* Debian installs cblas.h for OpenBLAS under the multiarch include folder. */
#include <cblas.h>
