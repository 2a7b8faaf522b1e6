/* basic: heap, static data, anonymous and file-backed private memory,
 * a modified private file page, signal handler and mask, umask, cwd,
 * an open file with an offset, /dev/null, rlimit. */
#include "common.h"
#include <sched.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>

static char data_buf[100000] = {1};
static volatile int usr1_count;
static void on_usr1(int s, siginfo_t *si, void *u) { (void)s; (void)si; (void)u; usr1_count++; }

int main(int argc, char **argv) {
	setup_protocol();
	const char *dir = argc > 1 ? argv[1] : "/tmp";
	if (chdir(dir)) fail("chdir");
	umask(027);
	struct rlimit rl = {200, 300};
	if (setrlimit(RLIMIT_NOFILE, &rl)) fail("setrlimit");

	size_t hn = 3 << 20;
	unsigned char *heap = malloc(hn);
	for (size_t i = 0; i < hn; i++) heap[i] = (unsigned char)(i * 7 + nonce);
	for (size_t i = 0; i < sizeof data_buf; i++) data_buf[i] = (char)(i ^ 0x5a);
	unsigned char *anon = mmap(NULL, 1 << 20, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	for (size_t i = 0; i < (1 << 20); i += 4096) anon[i] = (unsigned char)(i >> 12);
	mprotect(anon + 8192, 4096, PROT_NONE); /* a guard page */
	/* A 64 GiB reservation, as runtimes make: nothing resident. */
	char *resv = mmap(NULL, 1ull << 36, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (resv == MAP_FAILED) fail("reservation");
	mprotect(resv + (1ull << 35), 4096, PROT_READ | PROT_WRITE);
	resv[(1ull << 35) + 5] = 42;

	/* A file: mapped privately and modified, and open at an offset. */
	char path[256];
	snprintf(path, sizeof path, "%s/basic-data", dir);
	int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0644);
	char blk[8192];
	memset(blk, 'f', sizeof blk);
	if (write(fd, blk, sizeof blk) != sizeof blk) fail("write");
	char *fm = mmap(NULL, 8192, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0);
	fm[4096] = 'M';
	lseek(fd, 1234, SEEK_SET);
	int nullfd = open("/dev/null", O_WRONLY | O_CLOEXEC);
	if (dup2(nullfd, 40) < 0) fail("dup2");

	struct sigaction sa = {0};
	sa.sa_sigaction = on_usr1;
	sa.sa_flags = SA_SIGINFO | SA_RESTART;
	sigaddset(&sa.sa_mask, SIGTERM);
	sigaction(SIGUSR1, &sa, NULL);
	signal(SIGHUP, SIG_IGN);
	sigset_t blocked;
	sigemptyset(&blocked);
	sigaddset(&blocked, SIGWINCH);
	sigprocmask(SIG_BLOCK, &blocked, NULL);
	pid_t pid0 = getpid();
	int cpu0 = sched_getcpu();
	(void)cpu0;
	struct timespec t0;
	clock_gettime(CLOCK_MONOTONIC, &t0);

	ready();
	wait_usr2();

	if (getpid() != pid0) fail("pid changed");
	for (size_t i = 0; i < hn; i++) if (heap[i] != (unsigned char)(i * 7 + nonce)) fail("heap");
	for (size_t i = 1; i < sizeof data_buf; i++) if (data_buf[i] != (char)(i ^ 0x5a)) fail("data");
	for (size_t i = 0; i < (1 << 20); i += 4096) if (i != 8192 && anon[i] != (unsigned char)(i >> 12)) fail("anon");
	if (fm[4096] != 'M' || fm[0] != 'f') fail("private file mapping");
	if (resv[(1ull << 35) + 5] != 42) fail("reservation page");
	if (lseek(fd, 0, SEEK_CUR) != 1234) fail("file offset");
	if (fcntl(fd, F_GETFL) & O_APPEND) fail("file flags");
	if (!(fcntl(nullfd, F_GETFD) & FD_CLOEXEC) || (fcntl(40, F_GETFD) & FD_CLOEXEC)) fail("cloexec");
	if (write(40, "x", 1) != 1) fail("/dev/null");
	mode_t m = umask(0);
	if (m != 027) fail("umask");
	char cwd[256];
	if (!getcwd(cwd, sizeof cwd) || strcmp(cwd, dir) != 0) fail("cwd");
	getrlimit(RLIMIT_NOFILE, &rl);
	if (rl.rlim_cur != 200 || rl.rlim_max != 300) fail("rlimit");
	struct sigaction old;
	sigaction(SIGUSR1, NULL, &old);
	if (old.sa_sigaction != on_usr1 || !(old.sa_flags & SA_SIGINFO) || !sigismember(&old.sa_mask, SIGTERM)) fail("sigaction");
	sigaction(SIGHUP, NULL, &old);
	if (old.sa_handler != SIG_IGN) fail("SIG_IGN");
	sigset_t cur;
	sigprocmask(SIG_BLOCK, NULL, &cur);
	if (!sigismember(&cur, SIGWINCH) || sigismember(&cur, SIGUSR1) || !sigismember(&cur, SIGUSR2)) fail("sigmask");
	kill(getpid(), SIGUSR1);
	if (usr1_count != 1) fail("handler");
	struct timespec t1;
	clock_gettime(CLOCK_MONOTONIC, &t1);
	if (t1.tv_sec < t0.tv_sec) fail("monotonic clock");
	if (sched_getcpu() < 0) fail("sched_getcpu");
	pass();
	return 0;
}
