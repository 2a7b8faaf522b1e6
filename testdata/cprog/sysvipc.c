/* sysvipc: System V semaphores and message queues. A private set of three
 * semaphores {5,0,2}, of which the process takes one with SEM_UNDO (so the
 * kernel gives it back when the dumped process is killed: the restore must
 * put 4 back); a set under the key argv[1] {1,8}; a queue with messages of
 * types 1..4 (one of 4000 bytes), type 2 received before the dump. A child
 * blocks in semop on semaphore 1 and then in msgrcv for type 99. After
 * SIGUSR2: values and queue as saved, the child woken by both and exiting
 * 0 (retrying after EINTR); then everything is removed. */
#include "common.h"
#include <sys/ipc.h>
#include <sys/msg.h>
#include <sys/sem.h>
#include <sys/wait.h>

struct msg {
	long type;
	char text[4096];
};

static int sema, semk, q;

static void child(void) {
	/* The kernel never restarts semop and msgrcv: the freeze (like any
	 * signal) makes them fail with EINTR, and careful programs retry. */
	struct sembuf down = {1, -1, 0};
	int r;
	while ((r = semop(sema, &down, 1)) && errno == EINTR)
		;
	if (r) _exit(2);
	struct msg m;
	ssize_t n;
	while ((n = msgrcv(q, &m, sizeof m.text, 99, 0)) < 0 && errno == EINTR)
		;
	if (n != 4 || memcmp(m.text, "wake", 4)) _exit(3);
	_exit(0);
}

int main(int argc, char **argv) {
	setup_protocol();
	if (argc < 2) fail("usage");
	key_t key = (key_t)strtol(argv[1], NULL, 0);
	sema = semget(IPC_PRIVATE, 3, 0600);
	semk = semget(key, 2, IPC_CREAT | IPC_EXCL | 0640);
	q = msgget(IPC_PRIVATE, 0600);
	if (sema < 0 || semk < 0 || q < 0) fail("get");
	unsigned short va[3] = {5, 0, 2}, vk[2] = {1, 7};
	if (semctl(sema, 0, SETALL, va) || semctl(semk, 0, SETALL, vk)) fail("setall");
	struct sembuf take = {0, -1, SEM_UNDO}, up = {1, 1, 0};
	if (semop(sema, &take, 1) || semop(semk, &up, 1)) fail("semop");
	struct msg m;
	for (int i = 1; i <= 4; i++) {
		m.type = i;
		int len = i == 4 ? 4000 : snprintf(m.text, sizeof m.text, "message %d", i);
		if (i == 4) memset(m.text, 'x', len);
		if (msgsnd(q, &m, len, 0)) fail("msgsnd");
	}
	if (msgrcv(q, &m, sizeof m.text, 2, 0) < 0) fail("msgrcv 2");
	pid_t c = fork();
	if (c < 0) fail("fork");
	if (c == 0) child();
	/* Wait until the child sleeps in semop. */
	while (semctl(sema, 1, GETNCNT) != 1) usleep(1000);

	ready();
	wait_usr2();

	unsigned short a[3], k[2];
	if (semctl(sema, 0, GETALL, a) || semctl(semk, 0, GETALL, k)) fail("getall");
	if (a[0] != 4 || a[1] != 0 || a[2] != 2 || k[0] != 1 || k[1] != 8) {
		printf("values %d %d %d / %d %d\n", a[0], a[1], a[2], k[0], k[1]);
		fail("semaphore values");
	}
	struct semid_ds sd;
	union {
		struct semid_ds *buf;
	} arg = {&sd};
	if (semctl(semk, 0, IPC_STAT, arg) || sd.sem_perm.__key != key || (sd.sem_perm.mode & 0777) != 0640) fail("keyed set");
	struct msqid_ds qd;
	if (msgctl(q, IPC_STAT, &qd) || qd.msg_qnum != 3) fail("queue length");
	int want[] = {1, 3, 4};
	for (int i = 0; i < 3; i++) {
		ssize_t n = msgrcv(q, &m, sizeof m.text, 0, IPC_NOWAIT);
		if (n < 0 || m.type != want[i]) fail("message order");
		if (want[i] == 4 ? n != 4000 || m.text[0] != 'x' || m.text[3999] != 'x'
				 : n != 9 || m.text[8] != '0' + want[i])
			fail("message text");
	}
	struct sembuf wake = {1, 1, 0};
	if (semop(sema, &wake, 1)) fail("semop wake");
	m.type = 99;
	memcpy(m.text, "wake", 4);
	if (msgsnd(q, &m, 4, 0)) fail("msgsnd wake");
	int st;
	if (waitpid(c, &st, 0) != c || !WIFEXITED(st) || WEXITSTATUS(st) != 0) {
		printf("child status %x\n", st);
		fail("child");
	}
	semctl(sema, 0, IPC_RMID);
	semctl(semk, 0, IPC_RMID);
	msgctl(q, IPC_RMID, NULL);
	pass();
	return 0;
}
