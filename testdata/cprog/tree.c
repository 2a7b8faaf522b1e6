/* tree: a child with its own process group that has a grandchild, a child
 * in its own session, a zombie, a pipe with queued data between parent and
 * child, and a FIFO with queued data. */
#include "common.h"
#include <sys/stat.h>
#include <sys/wait.h>

static volatile sig_atomic_t got_usr1;
static void on_usr1(int s) { (void)s; got_usr1 = 1; }

static void child_wait(void) {
	sigset_t none;
	sigemptyset(&none);
	while (!got_usr1) sigsuspend(&none);
}

int main(int argc, char **argv) {
	setup_protocol();
	const char *dir = argc > 1 ? argv[1] : "/tmp";
	struct sigaction sa = {0};
	sa.sa_handler = on_usr1;
	sigaction(SIGUSR1, &sa, NULL);
	sigset_t usr1;
	sigemptyset(&usr1);
	sigaddset(&usr1, SIGUSR1);
	sigprocmask(SIG_BLOCK, &usr1, NULL); /* children unblock in sigsuspend */

	char fifo[256];
	snprintf(fifo, sizeof fifo, "%s/fifo", dir);
	if (mkfifo(fifo, 0600)) fail("mkfifo");
	int ff = open(fifo, O_RDONLY | O_NONBLOCK);

	int pp[2], sync[2];
	if (pipe(pp) || pipe(sync)) fail("pipe");
	pid_t root = getpid();

	pid_t a = fork();
	if (a == 0) {
		setpgid(0, 0);
		close(pp[0]);
		pid_t b = fork();
		if (b == 0) {
			long v = 4242;
			if (write(sync[1], "b", 1) != 1) fail("sync");
			child_wait();
			if (getpgid(0) != getppid()) fail("grandchild pgid");
			_exit(v == 4242 ? 0 : 1);
		}
		int fw = open(fifo, O_WRONLY);
		if (fw < 0 || write(fw, "fifo-data", 9) != 9) fail("fifo write");
		if (write(pp[1], "hello from A", 12) != 12) fail("pipe write");
		if (write(sync[1], "a", 1) != 1) fail("sync");
		child_wait();
		if (getppid() != root || getpgid(0) != getpid()) fail("child ids");
		kill(b, SIGUSR1);
		int st;
		if (waitpid(b, &st, 0) != b || !WIFEXITED(st) || WEXITSTATUS(st) != 0) fail("grandchild");
		_exit(0);
	}
	pid_t c = fork();
	if (c == 0) {
		setsid();
		if (write(sync[1], "c", 1) != 1) fail("sync");
		child_wait();
		if (getsid(0) != getpid()) fail("session");
		_exit(0);
	}
	pid_t z = fork();
	if (z == 0) _exit(7);
	pid_t z2 = fork();
	if (z2 == 0) {
		signal(SIGTERM, SIG_DFL);
		sigset_t all;
		sigemptyset(&all);
		sigprocmask(SIG_SETMASK, &all, NULL);
		raise(SIGTERM);
		_exit(1);
	}
	close(pp[1]);
	char buf[16];
	for (int i = 0; i < 3; i++)
		if (read(sync[0], buf, 1) != 1) fail("sync read");
	/* Wait until z is a zombie without reaping it. */
	siginfo_t si;
	if (waitid(P_PID, z, &si, WEXITED | WNOWAIT)) fail("waitid");
	if (waitid(P_PID, z2, &si, WEXITED | WNOWAIT)) fail("waitid z2");
	ready();
	wait_usr2();

	char got[64] = {0};
	if (read(pp[0], got, sizeof got) != 12 || strcmp(got, "hello from A")) fail("pipe data");
	memset(got, 0, sizeof got);
	if (read(ff, got, sizeof got) != 9 || strcmp(got, "fifo-data")) fail("fifo data");
	int st;
	if (waitpid(z, &st, 0) != z || !WIFEXITED(st) || WEXITSTATUS(st) != 7) fail("zombie status");
	if (waitpid(z2, &st, 0) != z2 || !WIFSIGNALED(st) || WTERMSIG(st) != SIGTERM) fail("signaled zombie status");
	kill(a, SIGUSR1);
	kill(c, SIGUSR1);
	if (waitpid(a, &st, 0) != a || !WIFEXITED(st) || WEXITSTATUS(st) != 0) fail("child a");
	if (waitpid(c, &st, 0) != c || !WIFEXITED(st) || WEXITSTATUS(st) != 0) fail("child c");
	pass();
	return 0;
}
