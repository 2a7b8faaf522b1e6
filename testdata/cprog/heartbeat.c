/* heartbeat: a process to migrate. Fills argv[1] MiB of anonymous memory
 * with pseudo-random pages (seed argv[3]) and keeps a checksum of each, then
 * every 10 ms prints one line with write(2) on stdout:
 *
 *   HB SEQ VALUE PID NS     VALUE: the generator's state (same seed, same
 *                           values: an uninterrupted run prints the same);
 *                           NS: CLOCK_REALTIME in nanoseconds (the gaps
 *                           show how long the process did not run)
 *
 * and rewrites argv[2] per mille of its pages per second (spread over the
 * beats). After argv[4] beats (0: until SIGUSR2) it checks every page
 * against its checksum and prints "PASS PID" (or FAIL) and exits.
 *
 *   heartbeat MIB PERMILLE SEED BEATS
 */
#include "common.h"
#include "pages.h"
#include <time.h>

static void unused(void) { (void)pass; (void)ready; (void)setup_protocol; (void)wait_usr2; (void)unblock_usr2; }

static void say(const char *s) {
	size_t n = strlen(s);
	while (n > 0) {
		ssize_t k = write(1, s, n);
		if (k < 0 && errno == EINTR) continue;
		if (k <= 0) exit(3);
		s += k;
		n -= k;
	}
}

int main(int argc, char **argv) {
	(void)unused;
	if (argc < 5) {
		fprintf(stderr, "usage: heartbeat MIB PERMILLE SEED BEATS\n");
		return 2;
	}
	struct sigaction sa = {0};
	sa.sa_handler = on_usr2;
	sigaction(SIGUSR2, &sa, NULL);
	size_t mib = strtoul(argv[1], NULL, 10);
	size_t permille = strtoul(argv[2], NULL, 10);
	rng = strtoull(argv[3], NULL, 10) | 1;
	long beats = strtol(argv[4], NULL, 10);
	alloc_pages(mib);
	char line[160];
	snprintf(line, sizeof line, "READY %d\n", getpid());
	say(line);
	double carry = 0;
	for (long seq = 1; !got_usr2 && (beats == 0 || seq <= beats); seq++) {
		struct timespec ts = {0, 10 * 1000 * 1000}, now;
		nanosleep(&ts, NULL);
		carry += (double)npages * permille / 1000 / 100;
		for (; carry >= 1; carry--) fill(next() % npages);
		clock_gettime(CLOCK_REALTIME, &now);
		snprintf(line, sizeof line, "HB %ld %016llx %d %lld\n", seq, (unsigned long long)rng, getpid(),
		         (long long)now.tv_sec * 1000000000LL + now.tv_nsec);
		say(line);
	}
	size_t bad = first_bad_page();
	if (bad < npages) {
		snprintf(line, sizeof line, "FAIL page %zu checksum\n", bad);
		say(line);
		return 1;
	}
	snprintf(line, sizeof line, "PASS %d\n", getpid());
	say(line);
	return 0;
}
