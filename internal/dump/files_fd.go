package dump

import (
	"bufio"
	"fmt"
	"os"
	"strconv"
	"strings"

	"github.com/ckpt/ckpt/internal/image"
	"github.com/ckpt/ckpt/internal/procfs"
	"golang.org/x/sys/unix"
)

// anonFD reads the state of an anon-inode descriptor (eventfd, timerfd,
// signalfd, epoll, inotify) from its fdinfo. It returns a non-empty refusal
// for kinds that cannot be restored.
func anonFD(pid, num int, kind string, info procfs.Fdinfo, fd *image.FD, warn func(string)) (string, error) {
	x := info.Extra
	switch kind {
	case "eventfd":
		fd.Kind = image.FDEventfd
		c, err := strconv.ParseUint(strings.TrimSpace(x["eventfd-count"]), 16, 64)
		if err != nil {
			return "", fmt.Errorf("eventfd-count %q: %w", x["eventfd-count"], err)
		}
		fd.Eventfd = &image.Eventfd{Count: c, Semaphore: strings.TrimSpace(x["eventfd-semaphore"]) == "1"}
	case "timerfd":
		fd.Kind = image.FDTimerfd
		t, err := parseTimerfd(x)
		if err != nil {
			return "", err
		}
		fd.Timerfd = t
	case "signalfd":
		fd.Kind = image.FDSignalfd
		m, err := strconv.ParseUint(strings.TrimSpace(x["sigmask"]), 16, 64)
		if err != nil {
			return "", fmt.Errorf("sigmask %q: %w", x["sigmask"], err)
		}
		fd.Signalfd = &image.Signalfd{Mask: m}
	case "eventpoll":
		fd.Kind = image.FDEpoll
		if x["tfd"] == "" {
			break
		}
		for _, l := range strings.Split(x["tfd"], "\n") {
			// "5 events: 19 data: 5  pos:0 ino:1a sdev:d"
			kv := fields(l)
			tfd, err := strconv.Atoi(strings.Fields(l)[0])
			if err != nil {
				return "", fmt.Errorf("epoll tfd line %q", l)
			}
			ev, err1 := strconv.ParseUint(kv["events"], 16, 32)
			data, err2 := strconv.ParseUint(kv["data"], 16, 64)
			ino, err3 := strconv.ParseUint(kv["ino"], 16, 64)
			if err1 != nil || err2 != nil || err3 != nil {
				return "", fmt.Errorf("epoll tfd line %q", l)
			}
			t := image.EpollTarget{FD: tfd, Events: uint32(ev), Data: data}
			var st unix.Stat_t
			if err := unix.Stat(fmt.Sprintf("/proc/%d/fd/%d", pid, tfd), &st); err != nil || st.Ino != ino {
				// The target's fd number was closed or reused in this
				// process: another process sharing the epoll may hold it.
				t.FD = -1 - tfd
			}
			fd.Epoll = append(fd.Epoll, t)
		}
	case "inotify":
		fd.Kind = image.FDInotify
		// "inotify wd:1 ino:..." parses as key "inotify wd".
		ws, err := inotifyWatches(pid, x["inotify wd"])
		if err != nil {
			return "", err
		}
		fd.Inotify = ws
		if f, err := targetFD(pid, num); err == nil {
			if q, err := unix.IoctlGetInt(int(f.Fd()), unix.TIOCINQ); err == nil && q > 0 {
				warn(fmt.Sprintf("process %d fd %d: %d bytes of queued inotify events are not saved (they are lost at restore)", pid, num, q))
			}
			f.Close()
		}
	default:
		return kind + " (anon_inode:" + kind + ")", nil
	}
	return "", nil
}

// fields parses "key: value key:value ..." into a map (values without
// spaces; a key followed by ": " takes the next word).
func fields(s string) map[string]string {
	out := map[string]string{}
	ws := strings.Fields(s)
	for i := 0; i < len(ws); i++ {
		w := ws[i]
		k, v, ok := strings.Cut(w, ":")
		if !ok {
			continue
		}
		if v == "" && i+1 < len(ws) {
			v = ws[i+1]
			i++
		}
		out[k] = v
	}
	return out
}

// parseTimespecPair parses "(sec, nsec)".
func parseTimespecPair(s string) (int64, error) {
	s = strings.Trim(strings.TrimSpace(s), "()")
	a, b, ok := strings.Cut(s, ",")
	if !ok {
		return 0, fmt.Errorf("bad time %q", s)
	}
	sec, err := strconv.ParseInt(strings.TrimSpace(a), 10, 64)
	if err != nil {
		return 0, err
	}
	ns, err := strconv.ParseInt(strings.TrimSpace(b), 10, 64)
	if err != nil {
		return 0, err
	}
	return sec*1e9 + ns, nil
}

func parseTimerfd(x map[string]string) (*image.Timerfd, error) {
	t := &image.Timerfd{}
	var err error
	if t.Clock, err = strconv.Atoi(strings.TrimSpace(x["clockid"])); err != nil {
		return nil, fmt.Errorf("timerfd clockid %q: %w", x["clockid"], err)
	}
	if t.Ticks, err = strconv.ParseUint(strings.TrimSpace(x["ticks"]), 10, 64); err != nil {
		return nil, fmt.Errorf("timerfd ticks %q: %w", x["ticks"], err)
	}
	fl, err := strconv.ParseUint(strings.TrimSpace(x["settime flags"]), 8, 32)
	if err != nil {
		return nil, fmt.Errorf("timerfd settime flags %q: %w", x["settime flags"], err)
	}
	t.SetFlags = int(fl)
	if t.ValueNs, err = parseTimespecPair(x["it_value"]); err != nil {
		return nil, fmt.Errorf("timerfd it_value: %w", err)
	}
	if t.IntervalNs, err = parseTimespecPair(x["it_interval"]); err != nil {
		return nil, fmt.Errorf("timerfd it_interval: %w", err)
	}
	if t.ValueNs != 0 && t.SetFlags&unix.TFD_TIMER_ABSTIME != 0 {
		var now unix.Timespec
		if err := unix.ClockGettime(int32(t.Clock), &now); err != nil {
			return nil, fmt.Errorf("timerfd clock %d: %w", t.Clock, err)
		}
		t.DeadlineNs = now.Nano() + t.ValueNs
	}
	return t, nil
}

// inotifyWatches resolves each watch of an inotify fdinfo to a path through
// its file handle.
func inotifyWatches(pid int, lines string) ([]image.InotifyWatch, error) {
	if lines == "" {
		return nil, nil
	}
	var out []image.InotifyWatch
	for _, l := range strings.Split(lines, "\n") {
		// wd:1 ino:3f1 sdev:800001 mask:fce ignored_mask:0 fhandle-bytes:8 fhandle-type:1 f_handle:f103000000000000
		kv := fields("wd:" + l)
		wd, err1 := strconv.ParseInt(kv["wd"], 16, 32)
		ino, err2 := strconv.ParseUint(kv["ino"], 16, 64)
		sdev, err3 := strconv.ParseUint(kv["sdev"], 16, 64)
		mask, err4 := strconv.ParseUint(kv["mask"], 16, 32)
		htype, err5 := strconv.ParseInt(kv["fhandle-type"], 16, 32)
		hb, err6 := hexBytes(kv["f_handle"])
		if err := firstErr(err1, err2, err3, err4, err5, err6); err != nil {
			return nil, fmt.Errorf("inotify watch %q: %w", l, err)
		}
		dev := unix.Mkdev(uint32(sdev>>20), uint32(sdev&0xfffff))
		path, err := handlePath(pid, dev, int32(htype), hb)
		if err != nil {
			return nil, fmt.Errorf("inotify watch %d (inode %d): %w", wd, ino, err)
		}
		out = append(out, image.InotifyWatch{WD: int(wd), Mask: uint32(mask), Path: path, Dev: dev, Ino: ino})
	}
	return out, nil
}

func firstErr(errs ...error) error {
	for _, e := range errs {
		if e != nil {
			return e
		}
	}
	return nil
}

func hexBytes(s string) ([]byte, error) {
	if len(s)%2 != 0 {
		return nil, fmt.Errorf("odd hex %q", s)
	}
	b := make([]byte, len(s)/2)
	for i := range b {
		v, err := strconv.ParseUint(s[2*i:2*i+2], 16, 8)
		if err != nil {
			return nil, err
		}
		b[i] = byte(v)
	}
	return b, nil
}

// handlePath opens a file handle on the mount of dev (as seen by pid) and
// returns the file's path.
func handlePath(pid int, dev uint64, htype int32, handle []byte) (string, error) {
	mnt, err := mountOf(pid, dev)
	if err != nil {
		return "", err
	}
	mfd, err := unix.Open(mnt, unix.O_RDONLY|unix.O_CLOEXEC|unix.O_DIRECTORY, 0)
	if err != nil {
		return "", fmt.Errorf("opening mount %s: %w", mnt, err)
	}
	defer unix.Close(mfd)
	fd, err := unix.OpenByHandleAt(mfd, unix.NewFileHandle(htype, handle), unix.O_PATH|unix.O_CLOEXEC)
	if err != nil {
		return "", fmt.Errorf("the watched file is gone (open_by_handle_at: %w)", err)
	}
	defer unix.Close(fd)
	p, err := os.Readlink(fmt.Sprintf("/proc/self/fd/%d", fd))
	if err != nil {
		return "", err
	}
	if strings.HasSuffix(p, " (deleted)") || !strings.HasPrefix(p, "/") {
		return "", fmt.Errorf("the watched file %s has no path", p)
	}
	return p, nil
}

// mountOf returns the mount point of a mount of dev whose root is the root
// of the filesystem (so paths under it are whole).
func mountOf(pid int, dev uint64) (string, error) {
	f, err := os.Open(procfs.Path(pid, "mountinfo"))
	if err != nil {
		return "", err
	}
	defer f.Close()
	want := fmt.Sprintf("%d:%d", unix.Major(dev), unix.Minor(dev))
	best := ""
	s := bufio.NewScanner(f)
	s.Buffer(make([]byte, 64<<10), 1<<20)
	for s.Scan() {
		w := strings.Fields(s.Text())
		if len(w) < 5 || w[2] != want {
			continue
		}
		if w[3] == "/" {
			return procfs.UnescapeMount(w[4]), nil
		}
		if best == "" {
			best = procfs.UnescapeMount(w[4])
		}
	}
	if best == "" {
		return "", fmt.Errorf("no mount of device %s", want)
	}
	return best, nil
}

// parseLocks reads the "lock:" lines of an fdinfo: the locks held through
// this descriptor. It returns a refusal for leases.
func parseLocks(lines string) ([]image.Lock, string, error) {
	if lines == "" {
		return nil, "", nil
	}
	var out []image.Lock
	for _, l := range strings.Split(lines, "\n") {
		// "1: POSIX  ADVISORY  WRITE 1234 00:1f:5 0 EOF"
		w := strings.Fields(l)
		if len(w) < 8 {
			return nil, "", fmt.Errorf("lock line %q", l)
		}
		var lk image.Lock
		switch w[1] {
		case "POSIX":
			lk.Kind = image.LockPOSIX
		case "FLOCK":
			lk.Kind = image.LockFlock
		case "OFDLCK":
			lk.Kind = image.LockOFD
		default:
			return nil, fmt.Sprintf("a file with a %s (%s)", strings.ToLower(w[1]), strings.Join(w[1:], " ")), nil
		}
		if w[2] != "ADVISORY" {
			return nil, "a file with a mandatory lock", nil
		}
		switch w[3] {
		case "WRITE":
			lk.Write = true
		case "READ":
		default:
			return nil, fmt.Sprintf("a file with a %s lock", w[3]), nil
		}
		start, err := strconv.ParseInt(w[6], 10, 64)
		if err != nil {
			return nil, "", fmt.Errorf("lock line %q", l)
		}
		lk.Start, lk.End = start, -1
		if w[7] != "EOF" {
			if lk.End, err = strconv.ParseInt(w[7], 10, 64); err != nil {
				return nil, "", fmt.Errorf("lock line %q", l)
			}
		}
		out = append(out, lk)
	}
	return out, "", nil
}
