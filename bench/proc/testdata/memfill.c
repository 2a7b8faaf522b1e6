/* memfill MIB [NPROC]: NPROC processes (the first one and NPROC-1 children
 * it forks; default 1) each fill MIB MiB with random bytes (xorshift, a
 * seed per process), then the first prints READY and all wait for SIGUSR2.
 * On SIGUSR2 the first one passes it to its children, each process checks
 * every byte of its memory against the sequence, and the first prints PASS
 * only if its own check and every child's exit status are good. The
 * children report readiness through a pipe that is closed before READY, so
 * the dumped tree holds no pipe between its processes. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static volatile sig_atomic_t go;
static void h(int s) { (void)s; go = 1; }

static unsigned long next(unsigned long *x) {
  *x ^= *x << 13; *x ^= *x >> 7; *x ^= *x << 17;
  return *x;
}

static void fill(unsigned long *p, size_t words, unsigned long seed) {
  unsigned long x = seed;
  for (size_t i = 0; i < words; i++) p[i] = next(&x);
}

static int good(const unsigned long *p, size_t words, unsigned long seed) {
  unsigned long x = seed;
  for (size_t i = 0; i < words; i++)
    if (p[i] != next(&x)) return 0;
  return 1;
}

int main(int argc, char **argv) {
  if (argc < 2) { fprintf(stderr, "usage: memfill MIB [NPROC]\n"); return 2; }
  size_t words = ((size_t)atol(argv[1]) << 20) / sizeof(unsigned long);
  int nproc = argc > 2 ? atoi(argv[2]) : 1;
  if (nproc < 1) nproc = 1;
  signal(SIGUSR2, h);
  pid_t *kids = calloc(nproc, sizeof(pid_t));
  int rd[2];
  if (pipe(rd)) { perror("pipe"); return 1; }
  for (int k = 1; k < nproc; k++) {
    pid_t c = fork();
    if (c < 0) { perror("fork"); return 1; }
    if (c == 0) {
      unsigned long seed = 88172645463325252UL + k;
      unsigned long *p = malloc(words * sizeof *p);
      fill(p, words, seed);
      close(rd[0]);
      if (write(rd[1], "r", 1) != 1) _exit(1);
      close(rd[1]);
      while (!go) pause();
      _exit(good(p, words, seed) ? 0 : 1);
    }
    kids[k] = c;
  }
  close(rd[1]);
  unsigned long *p = malloc(words * sizeof *p);
  fill(p, words, 88172645463325252UL);
  char b;
  for (int k = 1; k < nproc; k++)
    if (read(rd[0], &b, 1) != 1) { fprintf(stderr, "child died\n"); return 1; }
  close(rd[0]);
  printf("READY %d\n", nproc); fflush(stdout);
  while (!go) pause();
  int ok = good(p, words, 88172645463325252UL);
  /* The signal is repeated until each child exits: one that lands while a
   * restorer is finishing can run the handler just before pause(). */
  for (int left = nproc - 1; left > 0;) {
    for (int k = 1; k < nproc; k++)
      if (kids[k]) kill(kids[k], SIGUSR2);
    usleep(20000);
    for (int k = 1; k < nproc; k++) {
      int st;
      if (kids[k] && waitpid(kids[k], &st, WNOHANG) == kids[k]) {
        if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) ok = 0;
        kids[k] = 0;
        left--;
      }
    }
  }
  printf("%s\n", ok ? "PASS" : "FAIL");
  return ok ? 0 : 1;
}
