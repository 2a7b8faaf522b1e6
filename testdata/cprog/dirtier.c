/* dirtier: fills argv[1] MiB of anonymous memory with random data and keeps
 * a checksum of every page, then writes random pages.
 *
 *   dirtier MIB cmd        after READY, reads "w N" lines from stdin: writes
 *                          N distinct random pages, prints "WROTE addr..." and
 *                          "DONE N".
 *   dirtier MIB PERMILLE   after READY, rewrites PERMILLE/1000 of the pages
 *                          per second (every 10 ms a share) until SIGUSR2,
 *                          then checks every page against its checksum and
 *                          prints PASS (a restored copy must be consistent).
 */
#include "common.h"
#include "pages.h"
#include <time.h>

int main(int argc, char **argv) {
	(void)wait_usr2;
	setup_protocol();
	size_t mib = argc > 1 ? strtoul(argv[1], NULL, 10) : 16;
	rng = nonce | 1;
	alloc_pages(mib);
	printf("REGION %lx %lx\n", (unsigned long)mem, (unsigned long)(npages * PAGE));
	ready();
	if (argc > 2 && strcmp(argv[2], "cmd") == 0) {
		char line[64];
		unsigned char *seen = calloc(npages, 1);
		while (fgets(line, sizeof line, stdin)) {
			size_t n = strtoul(line + 2, NULL, 10);
			memset(seen, 0, npages);
			printf("WROTE");
			for (size_t k = 0; k < n && k < npages; k++) {
				size_t i;
				do i = next() % npages; while (seen[i]);
				seen[i] = 1;
				mem[i * PAGE + next() % PAGE]++;
				printf(" %lx", (unsigned long)(mem + i * PAGE));
			}
			printf("\nDONE %zu\n", n);
			fflush(stdout);
		}
		return 0;
	}
	size_t permille = argc > 2 ? strtoul(argv[2], NULL, 10) : 10;
	unblock_usr2();
	double carry = 0;
	while (!got_usr2) {
		struct timespec ts = {0, 10 * 1000 * 1000};
		nanosleep(&ts, NULL);
		carry += (double)npages * permille / 1000 / 100;
		for (; carry >= 1; carry--) fill(next() % npages);
	}
	if (first_bad_page() < npages) fail("page checksum");
	pass();
	return 0;
}
