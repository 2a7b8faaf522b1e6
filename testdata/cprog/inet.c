/* inet: TCP and UDP on loopback. Default mode: a listener (SO_REUSEADDR)
 * with an accepted connection holding unread data in both directions, a
 * bulk connection whose receiver reads nothing (full receive queue, data
 * sent but not acknowledged and data never sent on the sender), an IPv6
 * listener with a connection, a bound UDP socket with datagrams queued from
 * two senders (one connected to it), a connected UDP pair. After SIGUSR2
 * every byte must come out in order, the addresses must be the same and the
 * listeners must accept new connections.
 * "outside PORT": connect to 127.0.0.1:PORT (a peer outside the tree), read
 * nothing of what it sent; after SIGUSR2 read "pre" and "post" and answer
 * "echo:prepost" on the same connection. */
#include "common.h"
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>

static void wr(int fd, const char *s) {
	if (write(fd, s, strlen(s)) != (ssize_t)strlen(s)) fail("write");
}

/* rd reads exactly strlen(want) bytes (stream) or one datagram. */
static void rd(int fd, const char *want, const char *what) {
	char buf[256] = {0};
	size_t got = 0, n = strlen(want);
	while (got < n) {
		ssize_t r = read(fd, buf + got, n - got);
		if (r <= 0) {
			printf("read %zd after %zu bytes: %.40s\n", r, got, buf);
			fail(what);
		}
		got += r;
	}
	if (memcmp(buf, want, n)) {
		printf("got %.40s\n", buf);
		fail(what);
	}
}

static void rd_from(int fd, const char *want, struct sockaddr_in *from, const char *what) {
	char buf[256] = {0};
	struct sockaddr_in sa;
	socklen_t sl = sizeof sa;
	ssize_t r = recvfrom(fd, buf, sizeof buf, MSG_DONTWAIT, (struct sockaddr *)&sa, &sl);
	if (r != (ssize_t)strlen(want) || memcmp(buf, want, r)) {
		printf("got %zd %.40s\n", r, buf);
		fail(what);
	}
	if (from && (sa.sin_port != from->sin_port || sa.sin_addr.s_addr != from->sin_addr.s_addr)) {
		printf("from port %d, want %d\n", ntohs(sa.sin_port), ntohs(from->sin_port));
		fail(what);
	}
}

static struct sockaddr_in lo(int port) {
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port)};
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	return a;
}

static struct sockaddr_in name_of(int fd, int peer) {
	struct sockaddr_in a;
	socklen_t l = sizeof a;
	if ((peer ? getpeername : getsockname)(fd, (struct sockaddr *)&a, &l)) fail("getsockname");
	return a;
}

static int same(struct sockaddr_in a, struct sockaddr_in b) {
	return a.sin_port == b.sin_port && a.sin_addr.s_addr == b.sin_addr.s_addr;
}

static int tcp_listen(void) {
	int l = socket(AF_INET, SOCK_STREAM, 0), one = 1;
	struct sockaddr_in a = lo(0);
	if (l < 0 || setsockopt(l, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) ||
	    bind(l, (struct sockaddr *)&a, sizeof a) || listen(l, 8))
		fail("tcp listen");
	return l;
}

static int tcp_connect(struct sockaddr_in to) {
	int c = socket(AF_INET, SOCK_STREAM, 0);
	if (c < 0 || connect(c, (struct sockaddr *)&to, sizeof to)) fail("tcp connect");
	return c;
}

static unsigned char pattern(size_t i) { return (unsigned char)(i * 7 + (i >> 13)); }

static int outside(int port) {
	int c = tcp_connect(lo(port));
	/* Wait until the peer's "pre" has arrived, without reading it. */
	struct pollfd p = {.fd = c, .events = POLLIN};
	if (poll(&p, 1, 10000) != 1) fail("poll pre");
	ready();
	wait_usr2();
	rd(c, "pre", "outside pre");
	rd(c, "post", "outside post");
	wr(c, "echo:prepost");
	pass();
	return 0;
}

int main(int argc, char **argv) {
	setup_protocol();
	if (argc > 2 && !strcmp(argv[1], "outside")) return outside(atoi(argv[2]));

	int l = tcp_listen();
	struct sockaddr_in la = name_of(l, 0);
	int c = tcp_connect(la);
	int a = accept(l, NULL, NULL);
	if (a < 0) fail("accept");
	int one = 1;
	if (setsockopt(c, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one)) fail("nodelay");
	wr(c, "hello");
	wr(a, "back");
	struct sockaddr_in cname = name_of(c, 0), cpeer = name_of(c, 1), aname = name_of(a, 0), apeer = name_of(a, 1);

	/* Bulk: the receiver reads nothing; the sender fills everything. */
	int c2 = tcp_connect(la);
	int a2 = accept(l, NULL, NULL);
	if (a2 < 0) fail("accept bulk");
	int sz = 64 << 10;
	setsockopt(a2, SOL_SOCKET, SO_RCVBUF, &sz, sizeof sz);
	setsockopt(c2, SOL_SOCKET, SO_SNDBUF, &sz, sizeof sz);
	fcntl(c2, F_SETFL, O_NONBLOCK);
	static unsigned char big[1 << 20];
	size_t total = 0;
	for (int idle = 0; idle < 20;) {
		unsigned char chunk[4096];
		for (size_t i = 0; i < sizeof chunk; i++) chunk[i] = pattern(total + i);
		ssize_t n = write(c2, chunk, sizeof chunk);
		if (n > 0) {
			total += n;
			idle = 0;
			continue;
		}
		if (errno != EAGAIN) fail("bulk write");
		/* Let loopback move what it can, then try again. */
		struct pollfd p = {.fd = c2, .events = POLLOUT};
		if (poll(&p, 1, 5) == 0) idle++;
	}

	/* IPv6 loopback, if configured. */
	int l6 = socket(AF_INET6, SOCK_STREAM, 0), c6 = -1, a6 = -1;
	struct sockaddr_in6 la6 = {.sin6_family = AF_INET6, .sin6_addr = IN6ADDR_LOOPBACK_INIT};
	socklen_t la6l = sizeof la6;
	if (l6 >= 0 && bind(l6, (struct sockaddr *)&la6, sizeof la6) == 0) {
		if (listen(l6, 4) || getsockname(l6, (struct sockaddr *)&la6, &la6l)) fail("listen6");
		c6 = socket(AF_INET6, SOCK_STREAM, 0);
		if (connect(c6, (struct sockaddr *)&la6, sizeof la6)) fail("connect6");
		a6 = accept(l6, NULL, NULL);
		wr(c6, "six");
	}

	/* UDP. */
	int u1 = socket(AF_INET, SOCK_DGRAM, 0), u2 = socket(AF_INET, SOCK_DGRAM, 0), u3 = socket(AF_INET, SOCK_DGRAM, 0);
	struct sockaddr_in any = lo(0);
	if (bind(u1, (struct sockaddr *)&any, sizeof any) || bind(u2, (struct sockaddr *)&any, sizeof any)) fail("udp bind");
	struct sockaddr_in u1a = name_of(u1, 0), u2a = name_of(u2, 0);
	if (connect(u2, (struct sockaddr *)&u1a, sizeof u1a)) fail("udp connect");
	wr(u2, "dg1");
	wr(u2, "dg-two");
	if (sendto(u3, "dg3", 3, 0, (struct sockaddr *)&u1a, sizeof u1a) != 3) fail("udp sendto");
	struct sockaddr_in u3a = name_of(u3, 0); /* autobound: 0.0.0.0:port */
	u3a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	/* A connected pair with a datagram queued each way. */
	int p1 = socket(AF_INET, SOCK_DGRAM, 0), p2 = socket(AF_INET, SOCK_DGRAM, 0);
	if (bind(p1, (struct sockaddr *)&any, sizeof any) || bind(p2, (struct sockaddr *)&any, sizeof any)) fail("pair bind");
	struct sockaddr_in p1a = name_of(p1, 0), p2a = name_of(p2, 0);
	if (connect(p1, (struct sockaddr *)&p2a, sizeof p2a) || connect(p2, (struct sockaddr *)&p1a, sizeof p1a)) fail("pair connect");
	wr(p1, "to-p2");
	wr(p2, "to-p1");
	/* The datagrams must have arrived before the dump. */
	struct pollfd pf[3] = {{.fd = u1, .events = POLLIN}, {.fd = p1, .events = POLLIN}, {.fd = p2, .events = POLLIN}};
	for (int i = 0; i < 3; i++)
		if (poll(&pf[i], 1, 5000) != 1) fail("udp arrival");
	printf("bulk %zu bytes\n", total);

	ready();
	wait_usr2();

	rd(a, "hello", "accepted queue");
	rd(c, "back", "client queue");
	wr(c, "more");
	rd(a, "more", "after restore");
	wr(a, "reply");
	rd(c, "reply", "reply after restore");
	if (!same(name_of(c, 0), cname) || !same(name_of(c, 1), cpeer) || !same(name_of(a, 0), aname) ||
	    !same(name_of(a, 1), apeer))
		fail("connection addresses");
	int nd = 0;
	socklen_t ndl = sizeof nd;
	if (getsockopt(c, IPPROTO_TCP, TCP_NODELAY, &nd, &ndl) || !nd) fail("TCP_NODELAY");

	/* The bulk stream, in order, to the last byte. */
	size_t got = 0;
	while (got < total) {
		ssize_t n = read(a2, big, sizeof big);
		if (n <= 0) fail("bulk read");
		for (ssize_t i = 0; i < n; i++)
			if (big[i] != pattern(got + i)) {
				printf("byte %zu differs\n", got + i);
				fail("bulk data");
			}
		got += n;
	}
	wr(a2, "bulk-ok");
	fcntl(c2, F_SETFL, 0);
	rd(c2, "bulk-ok", "bulk reply");

	if (c6 >= 0) {
		rd(a6, "six", "ipv6 queue");
		wr(a6, "xis");
		rd(c6, "xis", "ipv6 reply");
	}

	rd_from(u1, "dg1", &u2a, "udp datagram 1");
	rd_from(u1, "dg-two", &u2a, "udp datagram 2");
	rd_from(u1, "dg3", &u3a, "udp datagram 3");
	wr(u2, "dg4");
	rd(u1, "dg4", "udp after restore");
	if (sendto(u1, "r", 1, 0, (struct sockaddr *)&u2a, sizeof u2a) != 1) fail("udp reply");
	rd(u2, "r", "connected udp reply");
	rd(p2, "to-p2", "pair 1");
	rd(p1, "to-p1", "pair 2");
	if (!same(name_of(p1, 1), p2a)) fail("udp peer");

	/* The listeners accept new connections. */
	int c3 = tcp_connect(la);
	int a3 = accept(l, NULL, NULL);
	if (a3 < 0) fail("accept after restore");
	wr(c3, "new");
	rd(a3, "new", "new connection");
	if (c6 >= 0) {
		int c7 = socket(AF_INET6, SOCK_STREAM, 0);
		if (connect(c7, (struct sockaddr *)&la6, sizeof la6) || accept(l6, NULL, NULL) < 0) fail("ipv6 listener");
	}
	pass();
	return 0;
}
