/* scm: descriptors in flight. A seqpacket pair carries "m1" with a file
 * (argv[1]/f, holding "hello", offset 3, its own fd closed since) and
 * /dev/null, then "m2" with none; a datagram pair carries "d1" with the
 * directory argv[1]. After SIGUSR2 the messages arrive in order with their
 * descriptors: the file at offset 3 reading "lo", /dev/null, the
 * directory. */
#include "common.h"
#include <sys/socket.h>
#include <sys/stat.h>

static void sendfds(int s, const char *msg, int *fds, int n) {
	char cbuf[CMSG_SPACE(4 * sizeof(int))] = {0};
	struct iovec io = {(void *)msg, strlen(msg)};
	struct msghdr mh = {.msg_iov = &io, .msg_iovlen = 1};
	if (n) {
		mh.msg_control = cbuf;
		mh.msg_controllen = CMSG_SPACE(n * sizeof(int));
		struct cmsghdr *c = CMSG_FIRSTHDR(&mh);
		c->cmsg_level = SOL_SOCKET;
		c->cmsg_type = SCM_RIGHTS;
		c->cmsg_len = CMSG_LEN(n * sizeof(int));
		memcpy(CMSG_DATA(c), fds, n * sizeof(int));
	}
	if (sendmsg(s, &mh, 0) != (ssize_t)strlen(msg)) fail("sendmsg");
}

static int recvfds(int s, const char *want, int *fds) {
	char buf[16] = {0}, cbuf[CMSG_SPACE(4 * sizeof(int))];
	struct iovec io = {buf, sizeof buf - 1};
	struct msghdr mh = {.msg_iov = &io, .msg_iovlen = 1, .msg_control = cbuf, .msg_controllen = sizeof cbuf};
	if (recvmsg(s, &mh, MSG_DONTWAIT) < 0 || strcmp(buf, want)) fail("recvmsg");
	struct cmsghdr *c = CMSG_FIRSTHDR(&mh);
	if (!c) return 0;
	int n = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
	memcpy(fds, CMSG_DATA(c), n * sizeof(int));
	return n;
}

int main(int argc, char **argv) {
	setup_protocol();
	if (argc < 2) fail("usage");
	char path[4096];
	snprintf(path, sizeof path, "%s/f", argv[1]);
	int f = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
	if (f < 0 || write(f, "hello", 5) != 5 || lseek(f, 3, SEEK_SET) != 3) fail("file");
	int null = open("/dev/null", O_WRONLY), dir = open(argv[1], O_RDONLY | O_DIRECTORY);
	int sp[2], dg[2];
	if (socketpair(AF_UNIX, SOCK_SEQPACKET, 0, sp) || socketpair(AF_UNIX, SOCK_DGRAM, 0, dg)) fail("socketpair");
	int two[2] = {f, null};
	sendfds(sp[0], "m1", two, 2);
	sendfds(sp[0], "m2", NULL, 0);
	sendfds(dg[0], "d1", &dir, 1);
	close(f);
	close(null);
	close(dir);

	ready();
	wait_usr2();

	int got[4];
	if (recvfds(sp[1], "m1", got) != 2) fail("m1 descriptors");
	char b[3] = {0};
	if (lseek(got[0], 0, SEEK_CUR) != 3 || read(got[0], b, 2) != 2 || strcmp(b, "lo")) fail("file in flight");
	char l[4096] = {0};
	snprintf(b, sizeof b, "%s", "");
	char proc[64];
	snprintf(proc, sizeof proc, "/proc/self/fd/%d", got[1]);
	if (readlink(proc, l, sizeof l - 1) < 0 || strcmp(l, "/dev/null")) fail("/dev/null in flight");
	if (recvfds(sp[1], "m2", got) != 0) fail("m2 has descriptors");
	if (recvfds(dg[1], "d1", got) != 1) fail("d1 descriptors");
	struct stat st;
	if (fstat(got[0], &st) || !S_ISDIR(st.st_mode)) fail("directory in flight");
	pass();
	return 0;
}
