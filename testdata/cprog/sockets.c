/* sockets: unix socketpairs (stream, datagram, seqpacket) with queued data
 * in both directions and a shutdown, a pair whose other end closed, a pair
 * shared with a child blocked in read, a listening socket on a path with an
 * accepted connection holding data, an abstract listener, a bound datagram
 * socket with queued datagrams and a socket connected to it. */
#include "common.h"
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <stddef.h>

static void rd(int fd, const char *want, const char *what) {
	char buf[256] = {0};
	ssize_t n = read(fd, buf, sizeof buf - 1);
	if (n != (ssize_t)strlen(want) || memcmp(buf, want, n)) {
		printf("got %zd %.40s\n", n, buf);
		fail(what);
	}
}

static void wr(int fd, const char *s) {
	if (write(fd, s, strlen(s)) != (ssize_t)strlen(s)) fail("write");
}

int main(int argc, char **argv) {
	setup_protocol();
	const char *dir = argc > 1 ? argv[1] : "/tmp";
	struct sockaddr_un la = {.sun_family = AF_UNIX}, da = {.sun_family = AF_UNIX}, ab = {.sun_family = AF_UNIX};
	snprintf(la.sun_path, sizeof la.sun_path, "%s/listen.sock", dir);
	snprintf(da.sun_path, sizeof da.sun_path, "%s/dgram.sock", dir);
	snprintf(ab.sun_path + 1, sizeof ab.sun_path - 1, "ckpt-test-%d", getpid());
	socklen_t abl = offsetof(struct sockaddr_un, sun_path) + 1 + strlen(ab.sun_path + 1);

	int st[2], dg[2], sp[2], cl[2], ch[2];
	if (socketpair(AF_UNIX, SOCK_STREAM, 0, st) || socketpair(AF_UNIX, SOCK_DGRAM, 0, dg) ||
	    socketpair(AF_UNIX, SOCK_SEQPACKET, 0, sp) || socketpair(AF_UNIX, SOCK_STREAM, 0, cl) ||
	    socketpair(AF_UNIX, SOCK_STREAM, 0, ch))
		fail("socketpair");
	wr(st[0], "hello");
	wr(st[0], "world");
	wr(st[1], "back");
	static char big[100000];
	memset(big, 'z', sizeof big);
	wr(dg[0], "a");
	if (write(dg[0], big, sizeof big) != sizeof big) fail("big datagram");
	wr(dg[0], "ccc");
	wr(sp[0], "rec1");
	wr(sp[0], "record-two");
	shutdown(sp[0], SHUT_WR);
	wr(cl[1], "last");
	close(cl[1]);

	pid_t child = fork();
	if (child == 0) {
		close(ch[0]);
		char buf[16] = {0};
		if (read(ch[1], buf, sizeof buf) != 4 || strcmp(buf, "ping")) _exit(1);
		wr(ch[1], "pong");
		_exit(0);
	}
	close(ch[1]);

	int l = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0);
	if (l < 0 || bind(l, (struct sockaddr *)&la, sizeof la) || listen(l, 5)) fail("listen");
	int c = socket(AF_UNIX, SOCK_STREAM, 0);
	if (connect(c, (struct sockaddr *)&la, sizeof la)) fail("connect");
	int a = accept(l, NULL, NULL);
	if (a < 0) fail("accept");
	wr(c, "from-client");
	int al = socket(AF_UNIX, SOCK_SEQPACKET, 0);
	if (bind(al, (struct sockaddr *)&ab, abl) || listen(al, 2)) fail("abstract listen");

	int d = socket(AF_UNIX, SOCK_DGRAM, 0);
	if (bind(d, (struct sockaddr *)&da, sizeof da)) fail("bind dgram");
	int e = socket(AF_UNIX, SOCK_DGRAM, 0);
	if (connect(e, (struct sockaddr *)&da, sizeof da)) fail("connect dgram");
	wr(e, "dg1");
	wr(e, "dg2");

	ready();
	wait_usr2();

	rd(st[1], "helloworld", "stream queue");
	rd(st[0], "back", "stream queue back");
	wr(st[0], "again");
	rd(st[1], "again", "stream after restore");
	rd(dg[1], "a", "datagram 1");
	static char got[200000];
	if (read(dg[1], got, sizeof got) != sizeof big || memcmp(got, big, sizeof big)) fail("datagram 2");
	rd(dg[1], "ccc", "datagram 3");
	wr(dg[1], "reply");
	rd(dg[0], "reply", "datagram reply");
	rd(sp[1], "rec1", "record 1");
	rd(sp[1], "record-two", "record 2");
	if (read(sp[1], got, 10) != 0) fail("seqpacket shutdown");
	rd(cl[0], "last", "closed peer data");
	if (read(cl[0], got, 10) != 0) fail("closed peer EOF");

	wr(ch[0], "ping");
	rd(ch[0], "pong", "child pair");
	int stc;
	if (waitpid(child, &stc, 0) != child || !WIFEXITED(stc) || WEXITSTATUS(stc)) fail("child");

	rd(a, "from-client", "accepted queue");
	wr(a, "from-server");
	rd(c, "from-server", "accepted reply");
	struct sockaddr_un n1 = {0}, n2 = {0};
	socklen_t l1 = sizeof n1, l2 = sizeof n2;
	if (getsockname(a, (struct sockaddr *)&n1, &l1) || strcmp(n1.sun_path, la.sun_path)) fail("accepted name");
	if (getpeername(c, (struct sockaddr *)&n2, &l2) || strcmp(n2.sun_path, la.sun_path)) fail("client peer name");
	if (!(fcntl(l, F_GETFL) & O_NONBLOCK)) fail("listener nonblock");
	int c2 = socket(AF_UNIX, SOCK_STREAM, 0);
	if (connect(c2, (struct sockaddr *)&la, sizeof la)) fail("connect after restore");
	int a2 = accept(l, NULL, NULL);
	if (a2 < 0) fail("accept after restore");
	wr(c2, "new");
	rd(a2, "new", "new connection");
	int c3 = socket(AF_UNIX, SOCK_SEQPACKET, 0);
	if (connect(c3, (struct sockaddr *)&ab, abl)) fail("connect abstract");
	int a3 = accept(al, NULL, NULL);
	if (a3 < 0) fail("accept abstract");

	rd(d, "dg1", "bound datagram 1");
	rd(d, "dg2", "bound datagram 2");
	wr(e, "dg3");
	rd(d, "dg3", "connected datagram");
	pass();
	return 0;
}
