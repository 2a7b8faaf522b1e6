/* pidhog PID...: occupies each PID of the host's PID namespace with a
 * sleeping child created by clone3 with set_tid (root only), so that a
 * restore inside a container's own PID namespace can be shown not to care.
 * A PID already in use is left to its owner ("taken N"). Prints READY once
 * every PID is occupied, then waits for SIGTERM and kills its children. */
#define _GNU_SOURCE
#include <errno.h>
#include <linux/sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

int main(int argc, char **argv) {
	pid_t kids[256];
	int nk = 0;
	for (int i = 1; i < argc && nk < 256; i++) {
		pid_t want = atoi(argv[i]);
		struct clone_args a;
		memset(&a, 0, sizeof a);
		a.exit_signal = SIGCHLD;
		a.set_tid = (uint64_t)(uintptr_t)&want;
		a.set_tid_size = 1;
		long r = syscall(SYS_clone3, &a, sizeof a);
		if (r == 0) {
			prctl(PR_SET_PDEATHSIG, SIGKILL);
			for (;;) pause();
		}
		if (r < 0 && errno == EEXIST) {
			printf("taken %d\n", want);
			continue;
		}
		if (r < 0) {
			printf("FAIL clone3 %d errno %d\n", want, errno);
			fflush(stdout);
			return 1;
		}
		kids[nk++] = r;
		printf("hog %ld\n", r);
	}
	printf("READY\n");
	fflush(stdout);
	sigset_t s;
	sigemptyset(&s);
	sigaddset(&s, SIGTERM);
	sigprocmask(SIG_BLOCK, &s, NULL);
	int sig;
	sigwait(&s, &sig);
	for (int i = 0; i < nk; i++) kill(kids[i], SIGKILL);
	for (int i = 0; i < nk; i++) waitpid(kids[i], NULL, 0);
	return 0;
}
