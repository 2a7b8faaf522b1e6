/* bigmem: fills argv[1] MiB of heap with a pattern and checks it after restore. */
#include "common.h"

int main(int argc, char **argv) {
	setup_protocol();
	size_t mib = argc > 1 ? strtoul(argv[1], NULL, 10) : 64;
	size_t n = mib << 20;
	uint64_t *p = malloc(n);
	if (!p) fail("malloc");
	for (size_t i = 0; i < n / 8; i++) p[i] = i * 0x9e3779b97f4a7c15ull ^ nonce;
	ready();
	wait_usr2();
	for (size_t i = 0; i < n / 8; i++)
		if (p[i] != (i * 0x9e3779b97f4a7c15ull ^ nonce)) fail("memory");
	pass();
	return 0;
}
