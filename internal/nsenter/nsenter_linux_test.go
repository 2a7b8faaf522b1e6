package nsenter

import (
	"net"
	"os"
	"testing"

	"golang.org/x/sys/unix"
)

func requireRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() == 0 {
		return
	}
	if os.Getenv("CKPT_REQUIRE_ROOT") == "1" {
		t.Fatal("needs root (CAP_SYS_ADMIN for network namespaces) and CKPT_REQUIRE_ROOT=1 is set")
	}
	t.Skip("skipping: needs root for network namespaces")
}

// A socket created by a function run in a new network namespace belongs
// to it for good: its loopback listener is reachable from inside, not from
// the test's own namespace, even after the thread is gone.
func TestNewNetAndRun(t *testing.T) {
	requireRoot(t)
	ns, err := NewNet()
	if err != nil {
		t.Fatal(err)
	}
	defer ns.Close()
	// Ours is the calling thread's: /proc/self/ns/net shows the main
	// thread's, and the main thread may be the one NewNet used (the
	// runtime never kills it; it stays parked in the new namespace).
	var mine, theirs unix.Stat_t
	unix.Stat("/proc/thread-self/ns/net", &mine)
	unix.Fstat(int(ns.Fd()), &theirs)
	if mine.Ino == theirs.Ino {
		t.Fatal("NewNet returned our own network namespace")
	}
	var l net.Listener
	err = Run(ns, unix.CLONE_NEWNET, func() error {
		ifs, err := net.Interfaces()
		if err != nil {
			return err
		}
		if len(ifs) != 1 || ifs[0].Name != "lo" {
			t.Errorf("interfaces of a new namespace: %v", ifs)
		}
		// The loopback of a new namespace is down.
		fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM, 0)
		if err != nil {
			return err
		}
		defer unix.Close(fd)
		ifr, _ := unix.NewIfreq("lo")
		unix.IoctlIfreq(fd, unix.SIOCGIFFLAGS, ifr)
		ifr.SetUint16(ifr.Uint16() | unix.IFF_UP)
		if err := unix.IoctlIfreq(fd, unix.SIOCSIFFLAGS, ifr); err != nil {
			return err
		}
		l, err = net.Listen("tcp", "127.0.0.1:0")
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	addr := l.Addr().String()
	if c, err := net.Dial("tcp", addr); err == nil {
		c.Close()
		t.Fatalf("%s, listening in the new namespace, answered in ours", addr)
	}
	err = Run(ns, unix.CLONE_NEWNET, func() error {
		c, err := net.Dial("tcp", addr)
		if err == nil {
			c.Close()
		}
		return err
	})
	if err != nil {
		t.Fatalf("dialing %s inside the namespace: %v", addr, err)
	}
}
