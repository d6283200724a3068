#ifndef NOISY_SHARED_MEMORY_H
#define NOISY_SHARED_MEMORY_H

#include <stddef.h>

/// An anonymous shared-memory file of `size` bytes (memfd_create, close-on-exec).
/// It has no name in any file system, so nothing is left behind when every process
/// that holds it has closed it or died. Returns the descriptor, or -errno.
int nsm_memfd(const char *name, size_t size);

/// Sends one byte carrying descriptor `fd` (SCM_RIGHTS) over the Unix socket `sock`.
/// Returns 0, or -errno.
int nsm_send_fd(int sock, int fd);

/// 1 when `sock` is a Unix-domain socket (descriptors can travel over it), else 0.
int nsm_is_unix_socket(int sock);

#endif
