/* misc: a relative nanosleep interrupted by the dump (ERESTART_RESTARTBLOCK),
 * queued signals with payloads, an interval timer, an unlinked open file and
 * an unlinked mapped file, an O_APPEND file, /dev/zero, an alternate stack,
 * a pipe whose writer closed with data still queued (read then end of
 * file) and one whose reader closed (EPIPE). */
#include "common.h"
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/time.h>
#include <time.h>

static volatile int rt_val = -1, usr1_val = -1;
static void on_rt(int s, siginfo_t *si, void *u) { (void)s; (void)u; rt_val = si->si_value.sival_int; }
static void on_usr1(int s, siginfo_t *si, void *u) { (void)s; (void)u; usr1_val = si->si_value.sival_int; }
static char altstack[1 << 16];

int main(int argc, char **argv) {
	setup_protocol();
	const char *dir = argc > 1 ? argv[1] : "/tmp";
	char path[256], path2[256], path3[256];
	snprintf(path, sizeof path, "%s/deleted", dir);
	snprintf(path2, sizeof path2, "%s/mapped-deleted", dir);
	snprintf(path3, sizeof path3, "%s/append", dir);

	int del = open(path, O_RDWR | O_CREAT, 0600);
	if (write(del, "deleted-contents", 16) != 16) fail("write");
	lseek(del, 8, SEEK_SET);
	unlink(path);
	int md = open(path2, O_RDWR | O_CREAT, 0600);
	char pg[4096];
	memset(pg, 'q', sizeof pg);
	if (write(md, pg, sizeof pg) != sizeof pg) fail("write");
	char *mdm = mmap(NULL, 4096, PROT_READ, MAP_PRIVATE, md, 0);
	close(md);
	unlink(path2);
	int ap = open(path3, O_WRONLY | O_CREAT | O_APPEND, 0600);
	if (write(ap, "one\n", 4) != 4) fail("write");
	int zero = open("/dev/zero", O_RDONLY);
	char path4[256];
	snprintf(path4, sizeof path4, "%s/shared", dir);
	int sf = open(path4, O_RDWR | O_CREAT, 0600);
	if (ftruncate(sf, 8192)) fail("ftruncate");
	char *shm = mmap(NULL, 8192, PROT_READ | PROT_WRITE, MAP_SHARED, sf, 0);
	close(sf);
	strcpy(shm + 4096, "shared-before");

	int hup[2], epipe[2];
	if (pipe(hup) || pipe(epipe) || write(hup[1], "tail", 4) != 4) fail("pipes");
	close(hup[1]);
	close(epipe[0]);
	signal(SIGPIPE, SIG_IGN);

	struct sigaction sa = {0};
	sa.sa_sigaction = on_rt;
	sa.sa_flags = SA_SIGINFO;
	sigaction(SIGRTMIN + 3, &sa, NULL);
	sa.sa_sigaction = on_usr1;
	sigaction(SIGUSR1, &sa, NULL);
	sigset_t bl;
	sigemptyset(&bl);
	sigaddset(&bl, SIGRTMIN + 3);
	sigaddset(&bl, SIGUSR1);
	sigprocmask(SIG_BLOCK, &bl, NULL);
	union sigval v = {.sival_int = 31337};
	if (sigqueue(getpid(), SIGRTMIN + 3, v)) fail("sigqueue");
	siginfo_t si = {0};
	si.si_signo = SIGUSR1;
	si.si_code = SI_QUEUE;
	si.si_pid = getpid();
	si.si_value.sival_int = 777;
	if (syscall(SYS_rt_tgsigqueueinfo, getpid(), getpid(), SIGUSR1, &si)) fail("tgsigqueueinfo");

	struct itimerval it = {{0, 0}, {3600, 0}};
	setitimer(ITIMER_REAL, &it, NULL);
	stack_t ss = {.ss_sp = altstack, .ss_size = sizeof altstack};
	sigaltstack(&ss, NULL);

	unblock_usr2();
	ready();
	/* A long relative sleep; SIGUSR2 interrupts it. The test signals only
	 * once the process sleeps again after restore. */
	while (!got_usr2) {
		struct timespec ts = {100000, 0};
		nanosleep(&ts, NULL);
	}

	sigset_t pend;
	sigpending(&pend);
	if (!sigismember(&pend, SIGRTMIN + 3) || !sigismember(&pend, SIGUSR1)) fail("pending signals");
	sigprocmask(SIG_UNBLOCK, &bl, NULL);
	if (rt_val != 31337 || usr1_val != 777) fail("signal payloads");
	getitimer(ITIMER_REAL, &it);
	if (it.it_value.tv_sec < 3000 || it.it_value.tv_sec > 3600) fail("itimer");
	char buf[32] = {0};
	if (read(del, buf, sizeof buf) != 8 || strcmp(buf, "contents")) fail("deleted file");
	if (mdm[0] != 'q' || mdm[4095] != 'q') fail("deleted mapping");
	if (!(fcntl(ap, F_GETFL) & O_APPEND)) fail("append flag");
	if (read(zero, buf, 4) != 4 || buf[0] != 0) fail("/dev/zero");
	if (strcmp(shm + 4096, "shared-before")) fail("shared file mapping contents");
	strcpy(shm, "shared-after");
	msync(shm, 8192, MS_SYNC);
	sf = open(path4, O_RDONLY);
	if (pread(sf, buf, 12, 0) != 12 || memcmp(buf, "shared-after", 12)) fail("shared file mapping writes reach the file");
	if (read(hup[0], buf, sizeof buf) != 4 || memcmp(buf, "tail", 4)) fail("data of a pipe whose writer closed");
	if (read(hup[0], buf, sizeof buf) != 0) fail("end of file of a pipe whose writer closed");
	if (write(epipe[1], "x", 1) != -1 || errno != EPIPE) fail("EPIPE on a pipe whose reader closed");
	stack_t cur;
	sigaltstack(NULL, &cur);
	if (cur.ss_sp != altstack) fail("altstack");
	pass();
	return 0;
}
