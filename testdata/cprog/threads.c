/* threads: pthreads blocked in futex waits and one spinning, each with its
 * own TLS value, TID and alternate signal stack; robust mutex; all must
 * survive and join after restore. */
#include "common.h"
#include <pthread.h>
#include <sys/syscall.h>

#define N 4
static __thread long tls_val;
static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cv = PTHREAD_COND_INITIALIZER;
static int go;
static volatile int stop_spin;
static pid_t tids[N + 1];
static int ready_count;
static char stacks[N][1 << 16];

static void *worker(void *arg) {
	long i = (long)arg;
	tls_val = 1000 + i;
	tids[i] = (pid_t)syscall(SYS_gettid);
	stack_t ss = {.ss_sp = stacks[i], .ss_size = sizeof stacks[i], .ss_flags = 0};
	if (sigaltstack(&ss, NULL)) fail("sigaltstack");
	pthread_mutex_lock(&mu);
	ready_count++;
	pthread_cond_broadcast(&cv);
	while (!go) pthread_cond_wait(&cv, &mu);
	pthread_mutex_unlock(&mu);
	if (tls_val != 1000 + i) fail("tls");
	if (syscall(SYS_gettid) != tids[i]) fail("tid");
	stack_t cur;
	sigaltstack(NULL, &cur);
	if (cur.ss_sp != stacks[i] || cur.ss_size != sizeof stacks[i]) fail("altstack");
	return (void *)(i * 3);
}

static void *spinner(void *arg) {
	(void)arg;
	volatile double x = 1;
	tids[N] = (pid_t)syscall(SYS_gettid);
	pthread_mutex_lock(&mu);
	ready_count++;
	pthread_cond_broadcast(&cv);
	pthread_mutex_unlock(&mu);
	while (!stop_spin) x = x * 1.0000001 + 1e-9;
	return NULL;
}

int main(void) {
	setup_protocol();
	sigset_t set;
	sigemptyset(&set);
	sigaddset(&set, SIGUSR2);
	pthread_t th[N + 1];
	/* Threads block SIGUSR2 so it goes to the main thread. */
	pthread_sigmask(SIG_BLOCK, &set, NULL);
	for (long i = 0; i < N; i++) pthread_create(&th[i], NULL, worker, (void *)i);
	pthread_create(&th[N], NULL, spinner, NULL);
	/* SIGUSR2 stays blocked in main too; wait_usr2 unblocks it atomically. */
	pthread_mutex_lock(&mu);
	while (ready_count < N + 1) pthread_cond_wait(&cv, &mu);
	pthread_mutex_unlock(&mu);
	tls_val = 7;
	ready();
	wait_usr2();
	if (tls_val != 7) fail("main tls");
	pthread_mutex_lock(&mu);
	go = 1;
	pthread_cond_broadcast(&cv);
	pthread_mutex_unlock(&mu);
	stop_spin = 1;
	for (long i = 0; i < N; i++) {
		void *ret;
		pthread_join(th[i], &ret);
		if ((long)ret != i * 3) fail("join value");
	}
	pthread_join(th[N], NULL);
	pass();
	return 0;
}
