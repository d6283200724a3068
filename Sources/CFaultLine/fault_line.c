// The last line of defence against a damaged store: LMDB keeps no page checksums,
// and a flipped bit in a branch page can send it through a wild pointer. `noisy
// verify` and `noisy salvage` validate every page before LMDB touches it; other
// commands trust the store, and if it lies they end here. Only async-signal-safe
// calls (write, _exit) run inside the handler.
#include "fault_line.h"

#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char fl_message[1100] = "noisy: a read of the store faulted: the store looks damaged; noisy verify tells more\n";
static volatile size_t fl_length = 85;

static void fl_handler(int sig) {
    (void)sig;
    ssize_t ignored = write(2, fl_message, fl_length);
    (void)ignored;
    _exit(1);
}

void fl_set_message(const char *message) {
    size_t n = strlen(message);
    if (n > 1024) n = 1024;
    fl_length = 0;  // a signal between the copy and the length sees an empty line, not a torn one
    memcpy(fl_message, message, n);
    fl_message[n] = '\n';
    fl_length = n + 1;
}

void fl_install(void) {
    static char stack[64 * 1024];
    stack_t ss;
    memset(&ss, 0, sizeof ss);
    ss.ss_sp = stack;
    ss.ss_size = sizeof stack;
    sigaltstack(&ss, NULL);
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = fl_handler;
    sa.sa_flags = SA_ONSTACK;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGSEGV, &sa, NULL);
    sigaction(SIGBUS, &sa, NULL);
    // liblmdb's assertions (a damaged page that breaks its invariants) abort.
    sigaction(SIGABRT, &sa, NULL);
    /* A damaged page size can make liblmdb divide by zero. */
    sigaction(SIGFPE, &sa, NULL);
}
