/* inherit: writes to fd 3, which the test passes in from outside the tree. */
#include "common.h"

int main(void) {
	setup_protocol();
	if (fcntl(3, F_GETFD) < 0) fail("fd 3");
	ready();
	wait_usr2();
	if (write(3, "inherited\n", 10) != 10) fail("write fd 3");
	pass();
	return 0;
}
