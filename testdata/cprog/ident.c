/* ident: timers, scheduling and identity. Before READY: POSIX timers with
 * explicit gaps in their ids (signal with a value, SIGEV_NONE, one aimed at
 * a thread, one periodic and blocked so it is pending at the dump), nice,
 * SCHED_BATCH in the main thread and SCHED_RR with RESET_ON_FORK in a worker,
 * different CPU affinities, a personality flag, groups and uids/gids
 * dropped with KEEP_CAPS, hand-picked capability sets with an ambient one
 * and a smaller bounding set in the main thread, no_new_privs and two
 * seccomp filters (getppid -> EPERM 42, sysinfo -> 43) in the main thread
 * only. Each thread snapshots its own view (status lines, sched_getattr,
 * affinity, securebits, personality, dumpable) and compares it after
 * SIGUSR2; /proc/self/timers must read the same; the periodic timer's
 * signal arrives with its value. */
#include "common.h"
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <linux/capability.h>
#include <pthread.h>
#include <sched.h>
#include <stddef.h>
#include <sys/personality.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/sysinfo.h>
#include <time.h>
#include <grp.h>

struct sattr {
	uint32_t size, policy;
	uint64_t flags;
	int32_t nice;
	uint32_t prio;
	uint64_t runtime, deadline, period;
	uint32_t umin, umax;
};

static void snap(char *out, size_t n) {
	char path[64], buf[8192];
	snprintf(path, sizeof path, "/proc/self/task/%ld/status", (long)syscall(SYS_gettid));
	int fd = open(path, O_RDONLY);
	ssize_t got = fd < 0 ? -1 : read(fd, buf, sizeof buf - 1);
	if (got <= 0) fail("read status");
	close(fd);
	buf[got] = 0;
	size_t o = 0;
	static const char *keys[] = {"Uid:", "Gid:", "Groups:", "CapInh:", "CapPrm:", "CapEff:", "CapBnd:",
				     "CapAmb:", "NoNewPrivs:", "Seccomp:", "Seccomp_filters:", NULL};
	for (char *l = strtok(buf, "\n"); l; l = strtok(NULL, "\n"))
		for (int i = 0; keys[i]; i++)
			if (!strncmp(l, keys[i], strlen(keys[i]))) o += snprintf(out + o, n - o, "%s\n", l);
	struct sattr a = {0};
	if (syscall(SYS_sched_getattr, 0, &a, sizeof a, 0)) fail("sched_getattr");
	cpu_set_t cs;
	if (sched_getaffinity(0, sizeof cs, &cs)) fail("getaffinity");
	o += snprintf(out + o, n - o, "sched %u flags %llx nice %d prio %u getpriority %d\n", a.policy,
		      (unsigned long long)a.flags, a.nice, a.prio, getpriority(PRIO_PROCESS, 0));
	o += snprintf(out + o, n - o, "affinity %lx\n", *(unsigned long *)&cs);
	o += snprintf(out + o, n - o, "securebits %d personality %x dumpable %d\n", prctl(PR_GET_SECUREBITS),
		      personality(0xffffffff), prctl(PR_GET_DUMPABLE));
}

static char before_main[4096], before_worker[4096], after_worker[4096];
static int wake[2], ack[2];
static volatile int worker_tid, worker_ok = -1;

static void *worker(void *arg) {
	(void)arg;
	worker_tid = syscall(SYS_gettid);
	struct sattr a = {.size = sizeof a, .policy = SCHED_RR, .prio = 3, .flags = 1 /* RESET_ON_FORK */};
	if (syscall(SYS_sched_setattr, 0, &a, 0)) fail("sched_setattr worker");
	cpu_set_t cs;
	CPU_ZERO(&cs);
	CPU_SET(0, &cs);
	if (sched_setaffinity(0, sizeof cs, &cs)) fail("affinity worker");
	char c;
	if (read(wake[0], &c, 1) != 1) fail("worker wait 1"); /* main has set everything */
	snap(before_worker, sizeof before_worker);
	if (write(ack[1], "w", 1) != 1) fail("worker ack");
	if (read(wake[0], &c, 1) != 1 || c != 'g') fail("worker wait 2"); /* after the restore */
	snap(after_worker, sizeof after_worker);
	worker_ok = !strcmp(before_worker, after_worker);
	return NULL;
}

static timer_t mk(clockid_t clk, int notify, int sig, int val, int tid, long sec, long nsec, long isec, long insec) {
	struct sigevent ev = {0};
	ev.sigev_notify = notify;
	ev.sigev_signo = sig;
	ev.sigev_value.sival_int = val;
	if (notify == SIGEV_THREAD_ID) ev._sigev_un._tid = tid;
	timer_t t;
	if (timer_create(clk, &ev, &t)) fail("timer_create");
	struct itimerspec its = {{isec, insec}, {sec, nsec}};
	if ((sec || nsec) && timer_settime(t, 0, &its, NULL)) fail("timer_settime");
	return t;
}

static void read_file(const char *p, char *out, size_t n) {
	int fd = open(p, O_RDONLY);
	ssize_t got = fd < 0 ? -1 : read(fd, out, n - 1);
	if (got < 0) fail(p);
	out[got] = 0;
	close(fd);
}

static struct sock_filter deny(int nr, int err, struct sock_filter *f) {
	struct sock_filter p[] = {
		BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, arch)),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, AUDIT_ARCH_X86_64, 0, 3),
		BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, nr, 0, 1),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | err),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
	};
	memcpy(f, p, sizeof p);
	return p[0];
}

static void install(int nr, int err, unsigned flags) {
	struct sock_filter f[6];
	deny(nr, err, f);
	struct sock_fprog prog = {6, f};
	if (syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, flags, &prog)) fail("seccomp");
}

int main(void) {
	setup_protocol();
	sigset_t rt;
	sigemptyset(&rt);
	sigaddset(&rt, SIGRTMIN + 1);
	sigaddset(&rt, SIGRTMIN + 2);
	sigaddset(&rt, SIGRTMIN + 3);
	sigprocmask(SIG_BLOCK, &rt, NULL);
	if (pipe(wake) || pipe(ack)) fail("pipe");
	pthread_t th;
	if (pthread_create(&th, NULL, worker, NULL)) fail("pthread_create");
	while (!worker_tid) usleep(1000);

	/* Timers, with a gap in the ids. */
	timer_t gap1 = mk(CLOCK_MONOTONIC, SIGEV_SIGNAL, SIGRTMIN + 1, 1, 0, 0, 0, 0, 0);
	timer_t t1 = mk(CLOCK_MONOTONIC, SIGEV_SIGNAL, SIGRTMIN + 1, 77, 0, 1000, 0, 500, 0);
	timer_t gap2 = mk(CLOCK_MONOTONIC, SIGEV_SIGNAL, SIGRTMIN + 1, 1, 0, 0, 0, 0, 0);
	timer_t t2 = mk(CLOCK_REALTIME, SIGEV_NONE, 0, 0, 0, 2000, 0, 0, 0);
	timer_t t3 = mk(CLOCK_MONOTONIC, SIGEV_THREAD_ID, SIGRTMIN + 2, 88, worker_tid, 300, 0, 0, 0);
	timer_t t4 = mk(CLOCK_MONOTONIC, SIGEV_SIGNAL, SIGRTMIN + 3, 99, 0, 0, 20000000, 0, 20000000);
	timer_delete(gap1);
	timer_delete(gap2);

	/* Scheduling and personality. */
	struct sattr a = {.size = sizeof a, .policy = SCHED_BATCH, .nice = 7};
	if (syscall(SYS_sched_setattr, 0, &a, 0)) fail("sched_setattr main");
	long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
	cpu_set_t cs;
	CPU_ZERO(&cs);
	CPU_SET(ncpu > 1 ? ncpu - 1 : 0, &cs);
	if (sched_setaffinity(0, sizeof cs, &cs)) fail("affinity main");
	if (personality(personality(0xffffffff) | ADDR_NO_RANDOMIZE) < 0) fail("personality");

	/* Credentials: the main thread keeps some capabilities, the worker none. */
	if (prctl(PR_CAPBSET_DROP, CAP_SYS_MODULE)) fail("bset drop");
	if (prctl(PR_SET_KEEPCAPS, 1)) fail("keepcaps");
	gid_t groups[] = {5, 6};
	if (setgroups(2, groups)) fail("setgroups");
	if (setresgid(1001, 1002, 1003)) fail("setresgid");
	if (setresuid(1004, 1005, 1006)) fail("setresuid");
	struct __user_cap_header_struct h = {_LINUX_CAPABILITY_VERSION_3, 0};
	struct __user_cap_data_struct d[2] = {{0}};
	d[0].effective = 1u << CAP_NET_BIND_SERVICE | 1u << CAP_KILL;
	d[0].permitted = d[0].effective | 1u << CAP_CHOWN;
	d[0].inheritable = 1u << CAP_NET_BIND_SERVICE;
	if (syscall(SYS_capset, &h, d)) fail("capset");
	if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE, CAP_NET_BIND_SERVICE, 0, 0)) fail("ambient");

	/* no_new_privs and seccomp last, main thread only. */
	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)) fail("no_new_privs");
	install(SYS_getppid, 42, 0);
	install(SYS_sysinfo, 43, SECCOMP_FILTER_FLAG_LOG);
	if (syscall(SYS_getppid) != -1 || errno != 42) fail("filter 1 before");

	snap(before_main, sizeof before_main);
	if (write(wake[1], "s", 1) != 1) fail("wake worker");
	char c;
	if (read(ack[0], &c, 1) != 1 || c != 'w') fail("worker ack");
	char timers_before[4096], timers_after[4096];
	read_file("/proc/self/timers", timers_before, sizeof timers_before);

	ready();
	wait_usr2();

	char after_main[4096];
	snap(after_main, sizeof after_main);
	if (strcmp(before_main, after_main)) {
		printf("main before:\n%safter:\n%s", before_main, after_main);
		fail("main thread identity");
	}
	read_file("/proc/self/timers", timers_after, sizeof timers_after);
	if (strcmp(timers_before, timers_after)) {
		printf("timers before:\n%safter:\n%s", timers_before, timers_after);
		fail("/proc/self/timers");
	}
	struct itimerspec its;
	if (timer_gettime(t1, &its) || its.it_interval.tv_sec != 500 || its.it_value.tv_sec > 1000 ||
	    its.it_value.tv_sec < 900)
		fail("timer 1");
	if (timer_gettime(t2, &its) || its.it_interval.tv_sec || its.it_value.tv_sec > 2000 || its.it_value.tv_sec < 1900)
		fail("timer 2");
	if (timer_gettime(t3, &its) || its.it_interval.tv_sec || its.it_value.tv_sec > 300 || its.it_value.tv_sec < 200)
		fail("timer 3");
	if (timer_gettime(gap1, &its) == 0 || errno != EINVAL) fail("deleted timer came back");
	sigset_t s4;
	sigemptyset(&s4);
	sigaddset(&s4, SIGRTMIN + 3);
	struct timespec five = {5, 0};
	for (int i = 0; i < 3; i++) {
		siginfo_t si;
		if (sigtimedwait(&s4, &si, &five) != SIGRTMIN + 3) fail("periodic timer signal");
		if (si.si_code != SI_TIMER || si.si_value.sival_int != 99) fail("periodic timer siginfo");
	}
	(void)t4;
	if (syscall(SYS_getppid) != -1 || errno != 42) fail("seccomp filter 1");
	struct sysinfo sinfo;
	if (sysinfo(&sinfo) != -1 || errno != 43) fail("seccomp filter 2");

	if (write(wake[1], "g", 1) != 1) fail("wake worker after");
	pthread_join(th, NULL);
	if (worker_ok != 1) {
		printf("worker before:\n%safter:\n%s", before_worker, after_worker);
		fail("worker thread identity");
	}
	pass();
	return 0;
}
