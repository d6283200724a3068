#ifndef NOISY_FAULT_LINE_H
#define NOISY_FAULT_LINE_H

/// Installs handlers for SIGSEGV, SIGBUS, SIGABRT and SIGFPE (on their own stack) that write the
/// current message to stderr and exit with status 1: a read through a damaged
/// store's wild page pointer inside liblmdb ends with one line, not a backtrace.
void fl_install(void);

/// Sets the line the handlers write (a newline is added); copied, at most 1 KiB.
void fl_set_message(const char *message);

#endif
