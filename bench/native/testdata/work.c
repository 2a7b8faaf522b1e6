/* compute: a floating-point loop; syscalls: 2M write(2) of one byte to /dev/null;
   opens: 300k open+close pairs. Prints nothing; the harness times it. */
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
int main(int argc, char **argv) {
	if (argc > 1 && strcmp(argv[1], "compute") == 0) {
		volatile double x = 1.0;
		for (long i = 0; i < 400000000L; i++) x = x * 1.0000001 + 1e-9;
		return x > 0 ? 0 : 1;
	}
	if (argc > 1 && strcmp(argv[1], "syscalls") == 0) {
		int fd = open("/dev/null", O_WRONLY);
		for (long i = 0; i < 2000000L; i++) write(fd, "x", 1);
		return 0;
	}
	for (long i = 0; i < 300000L; i++) close(open("/dev/null", O_RDONLY));
	return 0;
}
