/* Pseudo-random pages, each with a checksum, for the fixtures that keep
 * rewriting their memory while they are checkpointed (dirtier, heartbeat):
 * a page restored from the wrong round fails its checksum. Include after
 * common.h (fail). */
#include <sys/mman.h>

#define PAGE 4096

/* rng is the xorshift64 state; seed it non-zero before alloc_pages. */
static uint64_t rng;
static uint64_t next(void) {
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return rng;
}

static uint64_t sum(const uint64_t *w) {
	uint64_t h = 0xcbf29ce484222325ull;
	for (int i = 0; i < PAGE / 8; i++) h = (h ^ w[i]) * 0x100000001b3ull;
	return h;
}

static unsigned char *mem;
static uint64_t *sums;
static size_t npages;

static void fill(size_t i) {
	uint64_t *w = (uint64_t *)(mem + i * PAGE);
	for (int k = 0; k < PAGE / 8; k++) w[k] = next();
	sums[i] = sum(w);
}

/* alloc_pages maps mib MiB and fills every page. */
static void alloc_pages(size_t mib) {
	npages = (mib << 20) / PAGE;
	mem = mmap(NULL, npages * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	sums = mmap(NULL, npages * 8, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (mem == MAP_FAILED || sums == MAP_FAILED) fail("mmap");
	for (size_t i = 0; i < npages; i++) fill(i);
}

/* first_bad_page is the first page that fails its checksum, npages if none. */
static size_t first_bad_page(void) {
	size_t i = 0;
	while (i < npages && sums[i] == sum((uint64_t *)(mem + i * PAGE))) i++;
	return i;
}
