/* tty: fd 0 on a terminal (argv[1], a pty slave the test made) in raw mode
 * with VTIME 7; the test set its window size to 33x111. After SIGUSR2 the
 * (new) terminal must have the same settings and size, deliver "abc"
 * typed by the test without a newline (raw mode), and take "tty-ok". */
#include "common.h"
#include <sys/ioctl.h>
#include <termios.h>

int main(int argc, char **argv) {
	setup_protocol();
	if (argc < 2) fail("usage");
	int t = open(argv[1], O_RDWR | O_NOCTTY);
	if (t < 0 || dup2(t, 0) != 0) fail("open tty");
	close(t);
	struct termios tio;
	if (tcgetattr(0, &tio)) fail("tcgetattr");
	tio.c_lflag &= ~(ICANON | ECHO);
	tio.c_cc[VMIN] = 1;
	tio.c_cc[VTIME] = 7;
	if (tcsetattr(0, TCSANOW, &tio)) fail("tcsetattr");
	struct winsize ws;
	if (ioctl(0, TIOCGWINSZ, &ws) || ws.ws_row != 33 || ws.ws_col != 111) fail("window size before");

	ready();
	wait_usr2();

	struct termios now;
	if (tcgetattr(0, &now)) fail("tcgetattr after");
	if ((now.c_lflag & (ICANON | ECHO)) || now.c_cc[VTIME] != 7 || now.c_cc[VMIN] != 1 || now.c_lflag != tio.c_lflag ||
	    now.c_iflag != tio.c_iflag || now.c_oflag != tio.c_oflag)
		fail("terminal settings");
	if (ioctl(0, TIOCGWINSZ, &ws) || ws.ws_row != 33 || ws.ws_col != 111) fail("window size");
	char buf[4] = {0};
	for (int got = 0; got < 3;) {
		ssize_t n = read(0, buf + got, 3 - got);
		if (n <= 0) fail("read tty");
		got += n;
	}
	if (strcmp(buf, "abc")) fail("tty input");
	if (write(0, "tty-ok\n", 7) != 7) fail("write tty");
	pass();
	return 0;
}
