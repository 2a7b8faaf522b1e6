/* ctty: a session on a terminal. The root (a process group leader, so it
 * cannot start a session) forks a leader that starts its own session on
 * the pty slave argv[1] (its controlling terminal); the leader forks a
 * child into a process group of its own and makes that group the
 * terminal's foreground. After SIGUSR2 (passed down): the leader's fd 0 is
 * its controlling terminal (tcgetsid), the child's group is in the
 * foreground, /dev/tty opens to the same terminal in both, and the child,
 * in the foreground, writes "child-ok" to the terminal. */
#include "common.h"
#include <sys/ioctl.h>
#include <sys/wait.h>
#include <termios.h>

static int same_tty(void) {
	int t = open("/dev/tty", O_RDWR);
	if (t < 0) return 0;
	/* /dev/tty is the controlling terminal: its session is ours, and fd 0
	 * is the same terminal (fstat would show /dev/tty's own inode). */
	int ok = tcgetsid(t) == getsid(0) && tcgetsid(0) == getsid(0);
	close(t);
	return ok;
}

static int reap(pid_t c) {
	int st;
	return waitpid(c, &st, 0) == c && WIFEXITED(st) ? WEXITSTATUS(st) : 100;
}

static void leader(const char *path, int up) {
	if (setsid() < 0) _exit(10);
	int t = open(path, O_RDWR); /* no O_NOCTTY: becomes the controlling terminal */
	if (t < 0 || dup2(t, 0) != 0) _exit(11);
	close(t);
	if (tcgetsid(0) != getpid()) _exit(12);
	pid_t c = fork();
	if (c < 0) _exit(13);
	if (c == 0) {
		setpgid(0, 0);
		wait_usr2();
		if (getsid(0) != getppid() || tcgetpgrp(0) != getpid() || !same_tty()) _exit(2);
		if (write(0, "child-ok\n", 9) != 9) _exit(3); /* a foreground write */
		_exit(0);
	}
	setpgid(c, c);
	if (tcsetpgrp(0, c)) _exit(14);
	if (write(up, "r", 1) != 1) _exit(15);
	wait_usr2();
	if (tcgetsid(0) != getpid()) _exit(20);
	if (tcgetpgrp(0) != c) _exit(21);
	if (!same_tty()) _exit(22);
	kill(c, SIGUSR2);
	int st = reap(c);
	_exit(st ? 30 + st : 0);
}

int main(int argc, char **argv) {
	setup_protocol();
	if (argc < 2) fail("usage");
	int p[2];
	if (pipe(p)) fail("pipe");
	pid_t l = fork();
	if (l < 0) fail("fork");
	if (l == 0) leader(argv[1], p[1]);
	char c;
	if (read(p[0], &c, 1) != 1) fail("leader setup");

	ready();
	wait_usr2();

	kill(l, SIGUSR2);
	int st = reap(l);
	if (st) {
		printf("leader exit %d\n", st);
		fail("leader");
	}
	pass();
	return 0;
}
