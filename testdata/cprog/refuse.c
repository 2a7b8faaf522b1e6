/* refuse: opens one resource the dumper must refuse (argv[1]) and runs on. */
#include "common.h"
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/shm.h>
#include <netinet/in.h>
#include <sys/fanotify.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <linux/netlink.h>

int main(int argc, char **argv) {
	setup_protocol();
	const char *what = argc > 1 ? argv[1] : "socket";
	int fd = -1;
	if (!strcmp(what, "socket")) fd = socket(AF_NETLINK, SOCK_RAW, 0); /* NETLINK_ROUTE */
	else if (!strcmp(what, "pidfd")) fd = syscall(SYS_pidfd_open, getpid(), 0);
	else if (!strcmp(what, "fanotify")) fd = fanotify_init(FAN_CLASS_NOTIF, O_RDONLY);
	else if (!strcmp(what, "unix-outside")) {
		/* Connected to a listener outside the tree (argv[2]). */
		struct sockaddr_un a = {.sun_family = AF_UNIX};
		strncpy(a.sun_path, argv[2], sizeof a.sun_path - 1);
		fd = socket(AF_UNIX, SOCK_STREAM, 0);
		if (connect(fd, (struct sockaddr *)&a, sizeof a)) fail("connect");
	} else if (!strcmp(what, "scm-rights")) {
		/* A socketpair with a descriptor in flight. */
		int sv[2];
		if (socketpair(AF_UNIX, SOCK_DGRAM, 0, sv)) fail("socketpair");
		char cbuf[CMSG_SPACE(sizeof(int))] = {0};
		char d = 'x';
		struct iovec io = {&d, 1};
		struct msghdr mh = {.msg_iov = &io, .msg_iovlen = 1, .msg_control = cbuf, .msg_controllen = sizeof cbuf};
		struct cmsghdr *c = CMSG_FIRSTHDR(&mh);
		c->cmsg_level = SOL_SOCKET;
		c->cmsg_type = SCM_RIGHTS;
		c->cmsg_len = CMSG_LEN(sizeof(int));
		int one = 1;
		memcpy(CMSG_DATA(c), &one, sizeof one);
		if (sendmsg(sv[0], &mh, 0) != 1) fail("sendmsg");
		fd = sv[1];
	}
	else if (!strcmp(what, "sysv-partial")) {
		/* A System V segment of which the first page was unmapped. */
		int id = shmget(IPC_PRIVATE, 8192, IPC_CREAT | 0600);
		char *p = shmat(id, NULL, 0);
		if (id < 0 || p == (void *)-1) fail("shm");
		shmctl(id, IPC_RMID, NULL);
		munmap(p, 4096);
		fd = 99;
	}
	if (fd < 0) fail(what);
	if (fd != 99 && dup2(fd, 42) < 0) fail("dup2");
	ready();
	wait_usr2();
	pass();
	return 0;
}
