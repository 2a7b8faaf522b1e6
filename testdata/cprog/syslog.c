/* syslog: a datagram socket connected to a named socket outside the tree
 * (argv[1]), as syslog() connects to /dev/log. A message sent before the
 * dump and one after the restore reach it, and the peer name is kept.
 * With argv[2] "gone" the peer is removed before the restore: the socket
 * comes back unconnected and the send after it fails with ENOTCONN. */
#include "common.h"
#include <sys/socket.h>
#include <sys/un.h>

int main(int argc, char **argv) {
	setup_protocol();
	if (argc < 2) fail("usage: syslog PATH [gone]");
	int gone = argc > 2 && !strcmp(argv[2], "gone");
	struct sockaddr_un a = {.sun_family = AF_UNIX};
	strncpy(a.sun_path, argv[1], sizeof a.sun_path - 1);
	int fd = socket(AF_UNIX, SOCK_DGRAM, 0);
	if (fd < 0 || connect(fd, (struct sockaddr *)&a, sizeof a)) fail("connect");
	if (send(fd, "before", 6, 0) != 6) fail("send before");
	ready();
	wait_usr2();
	ssize_t n = send(fd, "after", 5, 0);
	if (gone) {
		if (n >= 0 || errno != ENOTCONN) fail("send to a peer gone: want ENOTCONN");
	} else {
		if (n != 5) {
			printf("send after: %s\n", strerror(errno));
			fail("send after");
		}
		struct sockaddr_un p = {0};
		socklen_t l = sizeof p;
		if (getpeername(fd, (struct sockaddr *)&p, &l) || strcmp(p.sun_path, argv[1])) fail("peer name");
	}
	pass();
	return 0;
}
