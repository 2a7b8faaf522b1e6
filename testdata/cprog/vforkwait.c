/* vforkwait: the process waits, uninterruptibly (state D), for a vfork
 * child that never execs; it goes on once the child is killed, and then
 * passes. */
#include "common.h"
#include <sys/wait.h>

int main(void) {
	setup_protocol();
	ready();
	pid_t c = vfork();
	if (c == 0) {
		/* The child borrows the parent's memory: system calls only. */
		pause();
		_exit(0);
	}
	int st;
	if (c < 0 || waitpid(c, &st, 0) != c) fail("vfork child");
	pass();
	return 0;
}
