/* ctr OUT N: a worker for the container tests. N iterations, 20 ms apart,
 * each appending "i value hostname pid" to OUT (value: a Lehmer sequence,
 * so a resumed run must continue from exactly the saved state). It watches
 * CLOCK_MONOTONIC between iterations and ends with the line
 * "clock maxgap_us BACK", BACK being 1 if the clock ever went backwards. */
#define _GNU_SOURCE
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

static int64_t now_us(void) {
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

int main(int argc, char **argv) {
	if (argc != 3) {
		fprintf(stderr, "usage: ctr OUT N\n");
		return 2;
	}
	FILE *out = fopen(argv[1], "w");
	if (!out) {
		perror(argv[1]);
		return 1;
	}
	int n = atoi(argv[2]);
	uint64_t x = 7;
	int64_t prev = now_us(), maxgap = 0;
	int back = 0;
	char host[256];
	for (int i = 0; i < n; i++) {
		x = x * 48271 % 2147483647;
		if (gethostname(host, sizeof host) != 0) host[0] = 0;
		fprintf(out, "%d %llu %s %d\n", i, (unsigned long long)x, host, getpid());
		fflush(out);
		struct timespec d = {0, 20 * 1000 * 1000};
		nanosleep(&d, NULL);
		int64_t t = now_us();
		if (t < prev) back = 1;
		if (t - prev > maxgap) maxgap = t - prev;
		prev = t;
	}
	fprintf(out, "clock %lld %d\n", (long long)maxgap, back);
	fclose(out);
	return 0;
}
