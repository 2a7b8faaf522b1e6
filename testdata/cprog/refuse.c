/* refuse: opens one resource the dumper must refuse (argv[1]) and runs on. */
#include "common.h"
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/socket.h>

int main(int argc, char **argv) {
	setup_protocol();
	const char *what = argc > 1 ? argv[1] : "socket";
	int fd = -1;
	if (!strcmp(what, "socket")) fd = socket(AF_UNIX, SOCK_STREAM, 0);
	else if (!strcmp(what, "eventfd")) fd = eventfd(0, 0);
	else if (!strcmp(what, "epoll")) fd = epoll_create1(0);
	else if (!strcmp(what, "memfd")) fd = memfd_create("ckpt-test", 0);
	else if (!strcmp(what, "shm")) {
		char *p = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
		p[0] = 1;
		fd = 99;
	}
	if (fd < 0) fail(what);
	if (fd != 99 && dup2(fd, 42) < 0) fail("dup2");
	ready();
	wait_usr2();
	pass();
	return 0;
}
