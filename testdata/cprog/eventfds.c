/* eventfds: eventfd (plain and semaphore, nonblocking), timerfd (periodic,
 * expired with unread ticks, absolute CLOCK_REALTIME), signalfd with a
 * pending signal, epoll over them (level and edge triggered, data), inotify
 * with a gap in its watch numbers, and file locks (flock, POSIX record
 * lock, OFD lock) checked from a child after restore. */
#include "common.h"
#include <poll.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/file.h>
#include <sys/inotify.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <sys/timerfd.h>
#include <sys/wait.h>
#include <time.h>

int main(int argc, char **argv) {
	setup_protocol();
	const char *dir = argc > 1 ? argv[1] : "/tmp";
	char p1[256], p2[256], p3[256], d1[256], d2[256], f4[256];
	snprintf(p1, sizeof p1, "%s/flock", dir);
	snprintf(p2, sizeof p2, "%s/posix", dir);
	snprintf(p3, sizeof p3, "%s/ofd", dir);
	snprintf(d1, sizeof d1, "%s/w1", dir);
	snprintf(d2, sizeof d2, "%s/w2", dir);
	snprintf(f4, sizeof f4, "%s/w2/created", dir);

	int ea = eventfd(5, EFD_NONBLOCK);
	int eb = eventfd(3, EFD_SEMAPHORE);
	if (ea < 0 || eb < 0) fail("eventfd");

	int t1 = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK);
	struct itimerspec its = {{50, 0}, {100, 0}};
	if (t1 < 0 || timerfd_settime(t1, 0, &its, NULL)) fail("timerfd 1");
	int t2 = timerfd_create(CLOCK_MONOTONIC, 0);
	struct itimerspec once = {{0, 0}, {0, 1000}};
	if (t2 < 0 || timerfd_settime(t2, 0, &once, NULL)) fail("timerfd 2");
	struct pollfd pf = {t2, POLLIN, 0};
	if (poll(&pf, 1, 5000) != 1) fail("timerfd 2 expiry");
	int t3 = timerfd_create(CLOCK_REALTIME, TFD_NONBLOCK);
	struct timespec now;
	clock_gettime(CLOCK_REALTIME, &now);
	struct itimerspec abs = {{0, 0}, {now.tv_sec + 1000, 0}};
	if (t3 < 0 || timerfd_settime(t3, TFD_TIMER_ABSTIME, &abs, NULL)) fail("timerfd 3");

	sigset_t m;
	sigemptyset(&m);
	sigaddset(&m, SIGUSR1);
	sigaddset(&m, SIGWINCH);
	sigprocmask(SIG_BLOCK, &m, NULL);
	int sf = signalfd(-1, &m, SFD_NONBLOCK);
	if (sf < 0) fail("signalfd");
	kill(getpid(), SIGUSR1);

	int pp[2];
	if (pipe(pp)) fail("pipe");
	if (write(pp[1], "x", 1) != 1) fail("pipe write");
	int ep = epoll_create1(EPOLL_CLOEXEC);
	struct epoll_event ev = {.events = EPOLLIN, .data.u64 = 0xaaaa0000aaaaULL};
	if (epoll_ctl(ep, EPOLL_CTL_ADD, ea, &ev)) fail("epoll add ea");
	ev.events = EPOLLIN | EPOLLET;
	ev.data.u64 = 0xbbbb;
	if (epoll_ctl(ep, EPOLL_CTL_ADD, pp[0], &ev)) fail("epoll add pipe");
	ev.events = EPOLLIN;
	ev.data.u64 = 0xcccc;
	if (epoll_ctl(ep, EPOLL_CTL_ADD, t1, &ev)) fail("epoll add t1");
	struct epoll_event got[8];
	/* Consume the edge of the pipe before the dump. */
	int n = epoll_wait(ep, got, 8, 0);
	if (n != 2) fail("epoll_wait before");
	/* Drain it: an edge-triggered target still ready at restore reports one
	 * more edge (documented). */
	char c1;
	if (read(pp[0], &c1, 1) != 1) fail("pipe read");

	if (mkdir(d1, 0700) || mkdir(d2, 0700)) fail("mkdir");
	int in = inotify_init1(IN_NONBLOCK);
	int w1 = inotify_add_watch(in, d1, IN_CREATE);
	int w2 = inotify_add_watch(in, d2, IN_CREATE | IN_DELETE);
	if (in < 0 || w1 != 1 || w2 != 2) fail("inotify");
	inotify_rm_watch(in, w1);
	char ibuf[4096];
	while (read(in, ibuf, sizeof ibuf) > 0) {
	}

	int lf = open(p1, O_RDWR | O_CREAT, 0600);
	int lp = open(p2, O_RDWR | O_CREAT, 0600);
	int lo = open(p3, O_RDWR | O_CREAT, 0600);
	if (flock(lf, LOCK_EX)) fail("flock");
	struct flock fl = {.l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = 10, .l_len = 10};
	if (fcntl(lp, F_SETLK, &fl)) fail("posix lock");
	struct flock ofl = {.l_type = F_RDLCK, .l_whence = SEEK_SET, .l_start = 0, .l_len = 0};
	if (fcntl(lo, F_OFD_SETLK, &ofl)) fail("ofd lock");

	ready();
	wait_usr2();

	uint64_t v;
	if (read(eb, &v, 8) != 8 || v != 1) fail("semaphore eventfd");
	n = epoll_wait(ep, got, 8, 0);
	if (n != 1 || got[0].data.u64 != 0xaaaa0000aaaaULL || !(got[0].events & EPOLLIN)) fail("epoll after restore");
	if (read(ea, &v, 8) != 8 || v != 5) fail("eventfd count");
	if (read(ea, &v, 8) != -1 || errno != EAGAIN) fail("eventfd nonblock");
	if (epoll_wait(ep, got, 8, 0) != 0) fail("epoll empty");
	if (write(pp[1], "y", 1) != 1) fail("pipe write");
	n = epoll_wait(ep, got, 8, 0);
	if (n != 1 || got[0].data.u64 != 0xbbbb) fail("epoll edge");
	if (epoll_wait(ep, got, 8, 0) != 0) fail("epoll edge consumed");
	ev.events = EPOLLOUT;
	ev.data.u64 = 7;
	if (epoll_ctl(ep, EPOLL_CTL_MOD, ea, &ev)) fail("epoll mod (key)");
	if (epoll_ctl(ep, EPOLL_CTL_DEL, t1, NULL)) fail("epoll del (key)");
	if (epoll_wait(ep, got, 8, 0) != 1 || got[0].data.u64 != 7) fail("epoll after mod");

	struct itimerspec cur;
	timerfd_gettime(t1, &cur);
	if (cur.it_interval.tv_sec != 50 || cur.it_value.tv_sec > 100 || cur.it_value.tv_sec < 50) fail("timerfd 1 times");
	if (read(t1, &v, 8) != -1 || errno != EAGAIN) fail("timerfd 1 nonblock");
	if (read(t2, &v, 8) != 8 || v != 1) fail("timerfd 2 ticks");
	timerfd_gettime(t3, &cur);
	clock_gettime(CLOCK_REALTIME, &now);
	if (cur.it_value.tv_sec > 1000 || cur.it_value.tv_sec < 900) fail("timerfd 3 absolute");

	struct signalfd_siginfo ssi;
	if (read(sf, &ssi, sizeof ssi) != sizeof ssi || ssi.ssi_signo != SIGUSR1) fail("signalfd");
	if (read(sf, &ssi, sizeof ssi) != -1 || errno != EAGAIN) fail("signalfd nonblock");
	sigset_t pend;
	kill(getpid(), SIGWINCH);
	if (read(sf, &ssi, sizeof ssi) != sizeof ssi || ssi.ssi_signo != SIGWINCH) fail("signalfd mask");
	sigpending(&pend);

	int fd4 = open(f4, O_CREAT | O_RDWR, 0600);
	close(fd4);
	struct inotify_event *ie = (struct inotify_event *)ibuf;
	if (read(in, ibuf, sizeof ibuf) <= 0 || ie->wd != 2 || !(ie->mask & IN_CREATE) || strcmp(ie->name, "created")) fail("inotify event");
	if (inotify_add_watch(in, d1, IN_CREATE) != 3) fail("inotify next wd");

	pid_t self = getpid();
	pid_t c = fork();
	if (c == 0) {
		int a = open(p1, O_RDWR);
		if (flock(a, LOCK_EX | LOCK_NB) != -1 || errno != EWOULDBLOCK) _exit(1);
		int b = open(p2, O_RDWR);
		struct flock q = {.l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = 0, .l_len = 0};
		if (fcntl(b, F_GETLK, &q) || q.l_type != F_WRLCK || q.l_start != 10 || q.l_len != 10 || q.l_pid != self) _exit(2);
		int o = open(p3, O_RDWR);
		struct flock w = {.l_type = F_WRLCK, .l_whence = SEEK_SET};
		if (fcntl(o, F_OFD_GETLK, &w) || w.l_type != F_RDLCK) _exit(3);
		_exit(0);
	}
	int st;
	if (waitpid(c, &st, 0) != c || !WIFEXITED(st)) fail("lock checker");
	if (WEXITSTATUS(st) == 1) fail("flock");
	if (WEXITSTATUS(st) == 2) fail("posix lock");
	if (WEXITSTATUS(st) == 3) fail("ofd lock");
	pass();
	return 0;
}
