/* Shared by the fixtures: the READY / SIGUSR2 / PASS protocol. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static volatile sig_atomic_t got_usr2;
static uint64_t nonce;

static void on_usr2(int s) { (void)s; got_usr2 = 1; }

static void fail(const char *what) {
	printf("FAIL %s (errno %d)\n", what, errno);
	fflush(stdout);
	exit(1);
}

/* setup_protocol reads a nonce, installs the SIGUSR2 handler and prints START. */
static void setup_protocol(void) {
	int fd = open("/dev/urandom", O_RDONLY);
	if (fd < 0 || read(fd, &nonce, sizeof nonce) != sizeof nonce) fail("urandom");
	close(fd);
	struct sigaction sa = {0};
	sa.sa_handler = on_usr2;
	sigaction(SIGUSR2, &sa, NULL);
	/* SIGUSR2 stays blocked except inside sigsuspend, so it cannot slip in
	 * between the flag check and the wait. */
	sigset_t usr2;
	sigemptyset(&usr2);
	sigaddset(&usr2, SIGUSR2);
	sigprocmask(SIG_BLOCK, &usr2, NULL);
	printf("START %d\n", getpid());
	fflush(stdout);
}

static void ready(void) {
	printf("READY %d %016llx\n", getpid(), (unsigned long long)nonce);
	fflush(stdout);
}

/* wait_usr2 blocks in sigsuspend() until SIGUSR2 arrives. */
static void wait_usr2(void) {
	sigset_t m;
	sigprocmask(SIG_BLOCK, NULL, &m);
	sigdelset(&m, SIGUSR2);
	while (!got_usr2) sigsuspend(&m);
}

/* unblock_usr2 is for fixtures that wait in another call (nanosleep). */
static void unblock_usr2(void) {
	sigset_t usr2;
	sigemptyset(&usr2);
	sigaddset(&usr2, SIGUSR2);
	sigprocmask(SIG_UNBLOCK, &usr2, NULL);
}

static void pass(void) {
	printf("PASS %d %016llx\n", getpid(), (unsigned long long)nonce);
	fflush(stdout);
}
