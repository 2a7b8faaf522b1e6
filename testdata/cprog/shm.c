/* shm: memory shared between a parent and its child: MAP_SHARED anonymous
 * memory, a memfd (fd with offset and seals, a shared and a private
 * mapping), two System V segments (one removed while attached), a POSIX
 * shm object in /dev/shm, and one unlinked at once with its fd kept and an
 * odd size (what sem_open does for Python's multiprocessing). After SIGUSR2 the contents must be as before and
 * still shared: the parent writes, the child checks and writes, the parent
 * checks. */
#include "common.h"
#include <sys/ipc.h>
#include <sys/mman.h>
#include <sys/shm.h>
#include <sys/wait.h>

#define PG 4096

static char *anon, *mfd_sh, *mfd_priv, *sv1, *sv2, *px, *dx;
static int mfd, sv1id, sv2id, dfd, cpipe[2], ppipe[2];

#define DSIZE 100 /* the unlinked object's size: less than a page */

static void expect(const char *p, const char *want, const char *what) {
	if (strncmp(p, want, strlen(want))) {
		printf("%s: got %.20s, want %s\n", what, p, want);
		fail(what);
	}
}

static void child(void) {
	char c;
	if (read(cpipe[0], &c, 1) != 1) _exit(2);
	/* After restore: the parent's writes are visible here. */
	expect(anon + 2 * PG, "parent-2", "child sees anon");
	expect(mfd_sh + 100, "parent-memfd", "child sees memfd");
	expect(sv1 + 10, "parent-sysv", "child sees sysv");
	expect(sv2, "removed-seg", "child sees removed sysv");
	expect(px + 50, "parent-posix", "child sees posix");
	expect(dx + 40, "parent-del", "child sees unlinked");
	strcpy(anon + PG, "child-2");
	strcpy(mfd_sh + 200, "child-memfd");
	strcpy(sv1 + 20, "child-sysv");
	strcpy(px + 60, "child-posix");
	strcpy(dx + 70, "child-del");
	if (write(ppipe[1], "k", 1) != 1) _exit(3);
	_exit(0);
}

int main(int argc, char **argv) {
	setup_protocol();
	(void)argc;
	(void)argv;
	anon = mmap(NULL, 3 * PG, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (anon == MAP_FAILED) fail("anon");
	strcpy(anon, "parent-1");

	mfd = memfd_create("ckpt-memfd", MFD_ALLOW_SEALING);
	if (mfd < 0 || ftruncate(mfd, 2 * PG) || write(mfd, "memfd-data", 10) != 10 || lseek(mfd, 5, SEEK_SET) != 5)
		fail("memfd");
	mfd_sh = mmap(NULL, 2 * PG, PROT_READ | PROT_WRITE, MAP_SHARED, mfd, 0);
	mfd_priv = mmap(NULL, PG, PROT_READ | PROT_WRITE, MAP_PRIVATE, mfd, PG);
	if (mfd_sh == MAP_FAILED || mfd_priv == MAP_FAILED) fail("memfd mmap");
	strcpy(mfd_priv, "private-copy");
	if (fcntl(mfd, F_ADD_SEALS, F_SEAL_SHRINK)) fail("seal");

	sv1id = shmget(IPC_PRIVATE, 2 * PG, IPC_CREAT | 0640);
	sv2id = shmget(IPC_PRIVATE, PG, IPC_CREAT | 0600);
	if (sv1id < 0 || sv2id < 0) fail("shmget");
	sv1 = shmat(sv1id, NULL, 0);
	sv2 = shmat(sv2id, NULL, 0);
	if (sv1 == (void *)-1 || sv2 == (void *)-1) fail("shmat");
	strcpy(sv1, "sysv-one");
	strcpy(sv2, "removed-seg");
	if (shmctl(sv2id, IPC_RMID, NULL)) fail("IPC_RMID");

	char name[64];
	snprintf(name, sizeof name, "/ckpt-test-%d", getpid());
	int pfd = shm_open(name, O_CREAT | O_RDWR, 0600);
	if (pfd < 0 || ftruncate(pfd, PG)) fail("shm_open");
	px = mmap(NULL, PG, PROT_READ | PROT_WRITE, MAP_SHARED, pfd, 0);
	if (px == MAP_FAILED) fail("posix mmap");
	strcpy(px, "posix-shm");

	snprintf(name, sizeof name, "/ckpt-test-del-%d", getpid());
	dfd = shm_open(name, O_CREAT | O_EXCL | O_RDWR, 0600);
	if (dfd < 0 || ftruncate(dfd, DSIZE)) fail("shm_open unlinked");
	dx = mmap(NULL, PG, PROT_READ | PROT_WRITE, MAP_SHARED, dfd, 0);
	if (dx == MAP_FAILED || shm_unlink(name)) fail("unlinked mmap");
	strcpy(dx, "deleted-shm");
	snprintf(name, sizeof name, "/ckpt-test-%d", getpid());

	if (pipe(cpipe) || pipe(ppipe)) fail("pipe");
	pid_t ch = fork();
	if (ch == 0) child();
	strcpy(anon + PG, "child-1-not-yet");

	ready();
	wait_usr2();

	expect(anon, "parent-1", "anon contents");
	expect(anon + PG, "child-1-not-yet", "anon page 2");
	expect(mfd_sh, "memfd-data", "memfd contents");
	expect(mfd_priv, "private-copy", "memfd private copy");
	if (lseek(mfd, 0, SEEK_CUR) != 5) fail("memfd offset");
	if (fcntl(mfd, F_GET_SEALS) != F_SEAL_SHRINK) fail("memfd seals");
	if (ftruncate(mfd, PG) == 0 || errno != EPERM) fail("memfd shrink seal");
	if (pwrite(mfd, "via-fd", 6, 300) != 6) fail("memfd pwrite");
	expect(mfd_sh + 300, "via-fd", "memfd fd and mapping share");
	expect(sv1, "sysv-one", "sysv contents");
	expect(sv2, "removed-seg", "removed sysv contents");
	struct shmid_ds ds;
	if (shmctl(sv1id, IPC_STAT, &ds) || ds.shm_segsz != 2 * PG || ds.shm_nattch != 2 || (ds.shm_perm.mode & 0777) != 0640)
		fail("sysv ipc state");
	if (shmctl(sv2id, IPC_STAT, &ds) == 0 && !(ds.shm_perm.mode & SHM_DEST)) fail("removed sysv state");
	expect(px, "posix-shm", "posix contents");
	expect(dx, "deleted-shm", "unlinked contents");
	struct stat dst;
	if (fstat(dfd, &dst) || dst.st_size != DSIZE) fail("unlinked size");
	if (pwrite(dfd, "via-del-fd", 10, 20) != 10) fail("unlinked pwrite");
	expect(dx + 20, "via-del-fd", "unlinked fd and mapping share");

	strcpy(anon + 2 * PG, "parent-2");
	strcpy(mfd_sh + 100, "parent-memfd");
	strcpy(sv1 + 10, "parent-sysv");
	strcpy(px + 50, "parent-posix");
	strcpy(dx + 40, "parent-del");
	if (write(cpipe[1], "g", 1) != 1) fail("wake child");
	char c;
	if (read(ppipe[0], &c, 1) != 1) fail("child answer");
	int st;
	if (waitpid(ch, &st, 0) != ch || !WIFEXITED(st) || WEXITSTATUS(st)) fail("child");
	expect(anon + PG, "child-2", "parent sees child anon");
	expect(mfd_sh + 200, "child-memfd", "parent sees child memfd");
	expect(sv1 + 20, "child-sysv", "parent sees child sysv");
	expect(px + 60, "child-posix", "parent sees child posix");
	expect(dx + 70, "child-del", "parent sees child unlinked");
	char buf[16] = {0};
	if (pread(pfd, buf, 11, 60) != 11 || strcmp(buf, "child-posix")) fail("posix file contents");
	shmctl(sv1id, IPC_RMID, NULL);
	shm_unlink(name);
	pass();
	return 0;
}
