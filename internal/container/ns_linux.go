package container

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"

	"github.com/ckpt/ckpt/internal/image"
	"github.com/ckpt/ckpt/internal/nsenter"
	"github.com/ckpt/ckpt/internal/procfs"
	"golang.org/x/sys/unix"
)

// Namespaces a container gets besides its PID namespace and cgroup.
const nsFlags = unix.CLONE_NEWNS | unix.CLONE_NEWUTS | unix.CLONE_NEWIPC | unix.CLONE_NEWNET

// Snapshot reads the namespaces' state of the container whose PID 1 is
// host process pid. Call it while the container is frozen, so the clocks
// recorded are those of the freeze. veth, when not nil, is the veth pair
// ckpt gave the container (ParseVeth); any other interface but the
// loopback is refused.
func Snapshot(pid int, veth *image.NetIf) (*image.Container, error) {
	c := &image.Container{}
	err := nsenter.RunPID(pid, "uts", unix.CLONE_NEWUTS, func() error {
		var u unix.Utsname
		if err := unix.Uname(&u); err != nil {
			return err
		}
		c.Hostname = unix.ByteSliceToString(u.Nodename[:])
		return nil
	})
	if err != nil {
		return nil, err
	}
	mono, boot, err := timeOffsets(pid)
	if err != nil {
		return nil, err
	}
	c.Monotonic = clockNow(unix.CLOCK_MONOTONIC) + mono
	c.Boottime = clockNow(unix.CLOCK_BOOTTIME) + boot
	err = nsenter.RunPID(pid, "net", unix.CLONE_NEWNET, func() error {
		ifs, err := net.Interfaces()
		if err != nil {
			return fmt.Errorf("listing interfaces: %w", err)
		}
		for _, i := range ifs {
			n := image.NetIf{Name: i.Name, Up: i.Flags&net.FlagUp != 0}
			switch {
			case i.Flags&net.FlagLoopback != 0:
			case veth != nil && i.Name == veth.Name:
				n.Veth, n.Peer = true, veth.Peer
				if n.Addrs, err = ifAddrs(&i); err != nil {
					return err
				}
			default:
				return fmt.Errorf("interface %s: only the loopback and the veth of --veth are restored in a container's network namespace: %w", i.Name, errors.ErrUnsupported)
			}
			c.Net = append(c.Net, n)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("container network namespace: %w", err)
	}
	for i, n := range c.Net {
		if !n.Veth {
			continue
		}
		// The host end, in our own namespace.
		hi, err := net.InterfaceByName(n.Peer)
		if err != nil {
			return nil, fmt.Errorf("host end %s of the container's veth: %w", n.Peer, err)
		}
		if c.Net[i].PeerAddrs, err = ifAddrs(hi); err != nil {
			return nil, err
		}
	}
	return c, nil
}

func clockNow(id int32) int64 {
	var ts unix.Timespec
	_ = unix.ClockGettime(id, &ts)
	return ts.Nano()
}

// timeOffsets returns the CLOCK_MONOTONIC and CLOCK_BOOTTIME offsets (ns)
// of process pid's time namespace.
func timeOffsets(pid int) (mono, boot int64, err error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/timens_offsets", pid))
	if err != nil {
		return 0, 0, fmt.Errorf("reading the time namespace offsets of process %d: %w", pid, err)
	}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) != 3 {
			continue
		}
		sec, err1 := strconv.ParseInt(f[1], 10, 64)
		nsec, err2 := strconv.ParseInt(f[2], 10, 64)
		if err1 != nil || err2 != nil {
			return 0, 0, fmt.Errorf("process %d: bad timens_offsets line %q", pid, sc.Text())
		}
		v := sec*1e9 + nsec
		switch f[0] {
		case "monotonic", "1":
			mono = v
		case "boottime", "7":
			boot = v
		}
	}
	return mono, boot, nil
}

// SetClocks gives the time namespace that process pid created for its
// children (unshare(CLONE_NEWTIME), before any child entered it) the
// offsets that make its CLOCK_MONOTONIC and CLOCK_BOOTTIME read mono and
// boot (ns) now.
func SetClocks(pid int, mono, boot int64) error {
	m := mono - clockNow(unix.CLOCK_MONOTONIC)
	b := boot - clockNow(unix.CLOCK_BOOTTIME)
	split := func(v int64) (int64, int64) {
		s, ns := v/1e9, v%1e9
		if ns < 0 {
			s, ns = s-1, ns+1e9
		}
		return s, ns
	}
	ms, mns := split(m)
	bs, bns := split(b)
	s := fmt.Sprintf("monotonic %d %d\nboottime %d %d\n", ms, mns, bs, bns)
	if err := os.WriteFile(fmt.Sprintf("/proc/%d/timens_offsets", pid), []byte(s), 0); err != nil {
		return fmt.Errorf("setting time namespace offsets (%q): %w", strings.TrimSpace(s), err)
	}
	return nil
}

// SetHostname sets the hostname in the UTS namespace of process pid.
func SetHostname(pid int, name string) error {
	return nsenter.RunPID(pid, "uts", unix.CLONE_NEWUTS, func() error {
		if err := unix.Sethostname([]byte(name)); err != nil {
			return fmt.Errorf("setting hostname %q: %w", name, err)
		}
		return nil
	})
}

// SetupNet recreates the interfaces of nifs in network namespace ns (a
// fresh one: only the loopback, down): the loopback's state, and veth
// pairs with their addresses on both ends.
func SetupNet(ns *os.File, nifs []image.NetIf) error {
	for _, n := range nifs {
		switch {
		case n.Name == "lo":
			if !n.Up {
				continue
			}
			if err := nsenter.Run(ns, unix.CLONE_NEWNET, func() error { return linkUp("lo") }); err != nil {
				return err
			}
		case n.Veth:
			if err := SetupVeth(ns, n); err != nil {
				return err
			}
		default:
			return fmt.Errorf("interface %s: only the loopback and veth pairs are restored: %w", n.Name, errors.ErrUnsupported)
		}
	}
	return nil
}

// linkUp sets IFF_UP on an interface of the calling thread's namespace.
func linkUp(name string) error {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	ifr, err := unix.NewIfreq(name)
	if err != nil {
		return err
	}
	if err := unix.IoctlIfreq(fd, unix.SIOCGIFFLAGS, ifr); err != nil {
		return fmt.Errorf("interface %s: %w", name, err)
	}
	ifr.SetUint16(ifr.Uint16() | unix.IFF_UP)
	if err := unix.IoctlIfreq(fd, unix.SIOCSIFFLAGS, ifr); err != nil {
		return fmt.Errorf("bringing %s up: %w", name, err)
	}
	return nil
}

// ExtraMounts lists the mount points (with their file system types) that
// process pid's mount namespace has and ours has not, the container's own
// /proc aside: mounts made inside a container, which a checkpoint does not
// save.
func ExtraMounts(pid int) ([]string, error) {
	theirs, err := readMounts(fmt.Sprintf("/proc/%d/mountinfo", pid))
	if err != nil {
		return nil, err
	}
	ours, err := readMounts("/proc/self/mountinfo")
	if err != nil {
		return nil, err
	}
	have := map[mount]bool{}
	for _, m := range ours {
		have[m] = true
	}
	var extra []string
	for _, m := range theirs {
		if m == (mount{"/proc", "proc"}) || have[m] {
			continue
		}
		extra = append(extra, m.dir+" "+m.fstype)
	}
	return extra, nil
}

// mount is a line of a mountinfo file: where, and the file system type.
type mount struct{ dir, fstype string }

// readMounts reads a mountinfo file.
func readMounts(path string) ([]mount, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", path, err)
	}
	var ms []mount
	for _, l := range strings.Split(string(b), "\n") {
		// id parent maj:min root mountpoint opts [optional...] - fstype source superopts
		f := strings.Fields(l)
		for i, x := range f {
			if x == "-" && i >= 5 && i+1 < len(f) {
				ms = append(ms, mount{procfs.UnescapeMount(f[4]), f[i+1]})
				break
			}
		}
	}
	return ms, nil
}
