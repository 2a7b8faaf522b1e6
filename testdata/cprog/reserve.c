/* reserve: a large reservation never touched (1 GiB writable, 1 GiB
 * PROT_NONE, as a JVM or Go runtime reserves its heap), a part of it read
 * but never written (the zero page), and 4 MiB written. After SIGUSR2 the
 * written part keeps its pattern and the rest reads as zeros. */
#include "common.h"
#include <sys/mman.h>

#define GIB (1UL << 30)
#define DATA (4UL << 20)

int main(void) {
	setup_protocol();
	unsigned char *rw = mmap(NULL, GIB, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	unsigned char *none = mmap(NULL, GIB, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (rw == MAP_FAILED || none == MAP_FAILED) fail("mmap");
	for (size_t i = 0; i < DATA; i++) rw[i] = (unsigned char)(i * 31 + 7);
	volatile unsigned sum = 0;
	for (size_t i = DATA; i < DATA + (64UL << 20); i += 4096) sum += rw[i]; /* read only */
	ready();
	wait_usr2();
	for (size_t i = 0; i < DATA; i++)
		if (rw[i] != (unsigned char)(i * 31 + 7)) fail("written pattern");
	for (size_t i = DATA; i < GIB; i += 1UL << 20)
		if (rw[i] != 0) fail("untouched memory is not zero");
	if (mprotect(none, 4096, PROT_READ) || none[0] != 0) fail("PROT_NONE reservation");
	pass();
	return 0;
}
