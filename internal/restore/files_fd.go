package restore

import (
	"encoding/binary"
	"fmt"
	"os"

	"github.com/ckpt/ckpt/internal/image"
	"golang.org/x/sys/unix"
)

const inotifyIocSetNextWD = 0x40044900 // _IOW('I', 0, __s32)

// openAnon creates, in the restorer, an eventfd, timerfd, signalfd, epoll
// or inotify descriptor with the saved state. Epoll interest lists are
// filled later, in the process, once its fds are in place (addEpoll).
func (r *restorer) openAnon(p *image.Process, fd *image.FD) (*os.File, error) {
	nb := fd.Flags & unix.O_NONBLOCK
	name := fmt.Sprintf("%s of %d fd %d", fd.Kind, p.PID, fd.Num)
	switch fd.Kind {
	case image.FDEventfd:
		fl := nb | unix.EFD_CLOEXEC
		if fd.Eventfd.Semaphore {
			fl |= unix.EFD_SEMAPHORE
		}
		n, err := unix.Eventfd(0, fl)
		if err != nil {
			return nil, fmt.Errorf("eventfd: %w", err)
		}
		f := os.NewFile(uintptr(n), name)
		if c := fd.Eventfd.Count; c > 0 {
			if _, err := unix.Write(n, binary.LittleEndian.AppendUint64(nil, c)); err != nil {
				f.Close()
				return nil, fmt.Errorf("eventfd: setting the count to %d: %w", c, err)
			}
		}
		return f, nil
	case image.FDTimerfd:
		t := fd.Timerfd
		n, err := unix.TimerfdCreate(t.Clock, nb|unix.TFD_CLOEXEC)
		if err != nil {
			return nil, fmt.Errorf("timerfd_create(clock %d): %w", t.Clock, err)
		}
		f := os.NewFile(uintptr(n), name)
		if t.ValueNs != 0 {
			spec := unix.ItimerSpec{Interval: unix.NsecToTimespec(t.IntervalNs), Value: unix.NsecToTimespec(t.ValueNs)}
			fl := 0
			if t.SetFlags&unix.TFD_TIMER_ABSTIME != 0 && t.DeadlineNs != 0 {
				fl = t.SetFlags
				spec.Value = unix.NsecToTimespec(t.DeadlineNs)
			}
			if err := unix.TimerfdSettime(n, fl, &spec, nil); err != nil {
				f.Close()
				return nil, fmt.Errorf("timerfd_settime: %w", err)
			}
		}
		if t.Ticks > 0 {
			if err := setTimerfdTicks(n, t.Ticks); err != nil {
				f.Close()
				return nil, fmt.Errorf("timerfd: restoring %d expirations (TFD_IOC_SET_TICKS): %w", t.Ticks, err)
			}
		}
		return f, nil
	case image.FDSignalfd:
		set := unix.Sigset_t{Val: [16]uint64{fd.Signalfd.Mask}}
		n, err := unix.Signalfd(-1, &set, nb|unix.SFD_CLOEXEC)
		if err != nil {
			return nil, fmt.Errorf("signalfd: %w", err)
		}
		return os.NewFile(uintptr(n), name), nil
	case image.FDEpoll:
		n, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
		if err != nil {
			return nil, fmt.Errorf("epoll_create1: %w", err)
		}
		f := os.NewFile(uintptr(n), name)
		if err := setFL(f, fd.Flags); err != nil {
			f.Close()
			return nil, err
		}
		return f, nil
	case image.FDInotify:
		n, err := unix.InotifyInit1(nb | unix.IN_CLOEXEC)
		if err != nil {
			return nil, fmt.Errorf("inotify_init1: %w", err)
		}
		f := os.NewFile(uintptr(n), name)
		for _, w := range fd.Inotify {
			if err := unix.IoctlSetInt(n, inotifyIocSetNextWD, w.WD); err != nil {
				f.Close()
				return nil, fmt.Errorf("inotify: setting the next watch descriptor to %d: %w", w.WD, err)
			}
			got, err := unix.InotifyAddWatch(n, w.Path, w.Mask|unix.IN_DONT_FOLLOW)
			if err != nil {
				f.Close()
				return nil, fmt.Errorf("inotify: watching %s: %w", w.Path, err)
			}
			if got != w.WD {
				f.Close()
				return nil, fmt.Errorf("inotify: watch on %s got descriptor %d, want %d", w.Path, got, w.WD)
			}
			var st unix.Stat_t
			if err := unix.Lstat(w.Path, &st); err == nil && (st.Ino != w.Ino || st.Dev != w.Dev) {
				r.warn("process %d fd %d: inotify watch %d: %s is another file than at dump (inode %d, was %d)", p.PID, fd.Num, w.WD, w.Path, st.Ino, w.Ino)
			}
		}
		return f, nil
	}
	return nil, fmt.Errorf("unknown fd kind %q", fd.Kind)
}

// takeDescLocks takes, in the restorer, the locks that belong to an open
// file description (flock, OFD locks): they follow the description into
// the process.
func (r *restorer) takeDescLocks() error {
	for _, p := range r.tree.Processes {
		for _, fd := range p.FDs {
			f := r.files[fd]
			if fd.Kind != image.FDFile && fd.Kind != image.FDDeleted {
				continue
			}
			for _, l := range fd.Locks {
				var err error
				switch l.Kind {
				case image.LockFlock:
					how := unix.LOCK_SH
					if l.Write {
						how = unix.LOCK_EX
					}
					err = unix.Flock(int(f.Fd()), how|unix.LOCK_NB)
				case image.LockOFD:
					lk := flockOf(l)
					err = unix.FcntlFlock(f.Fd(), unix.F_OFD_SETLK, &lk)
				default:
					continue
				}
				if err != nil {
					return fmt.Errorf("process %d fd %d: re-taking a %s lock on %s: %w", p.PID, fd.Num, l.Kind, fd.Path, err)
				}
			}
		}
	}
	return nil
}

func flockOf(l image.Lock) unix.Flock_t {
	lk := unix.Flock_t{Type: unix.F_RDLCK, Whence: 0, Start: l.Start}
	if l.Write {
		lk.Type = unix.F_WRLCK
	}
	if l.End >= 0 {
		lk.Len = l.End - l.Start + 1
	}
	return lk
}

// fdState restores, by injection into the process once all its fds are in
// place, what belongs to the process rather than to a description: POSIX
// record locks, and epoll interest lists (the kernel keys each entry by the
// target's file and fd number in this process).
func (r *restorer) fdState(p *rproc) error {
	for _, fd := range p.img.FDs {
		for _, l := range fd.Locks {
			if l.Kind != image.LockPOSIX {
				continue
			}
			lk := flockOf(l)
			b := make([]byte, 32)
			binary.LittleEndian.PutUint16(b[0:], uint16(lk.Type))
			binary.LittleEndian.PutUint64(b[8:], uint64(lk.Start))
			binary.LittleEndian.PutUint64(b[16:], uint64(lk.Len))
			if err := p.mem.Write(r.scratch+offStruct, b); err != nil {
				return err
			}
			if _, err := p.in.Syscall(unix.SYS_FCNTL, uint64(fd.Num), unix.F_SETLK, r.scratch+offStruct); err != nil {
				return fmt.Errorf("fd %d: re-taking a POSIX lock on %s (%d-%d): %w", fd.Num, fd.Path, l.Start, l.End, err)
			}
		}
		if fd.Kind != image.FDEpoll || len(fd.Epoll) == 0 {
			continue
		}
		if fd.Desc != 0 {
			if r.epollDone[fd.Desc] {
				continue
			}
			r.epollDone[fd.Desc] = true
		}
		for _, t := range fd.Epoll {
			b := make([]byte, 12) // struct epoll_event is packed on x86-64
			binary.LittleEndian.PutUint32(b[0:], t.Events)
			binary.LittleEndian.PutUint64(b[4:], t.Data)
			if err := p.mem.Write(r.scratch+offStruct, b); err != nil {
				return err
			}
			if _, err := p.in.Syscall(unix.SYS_EPOLL_CTL, uint64(fd.Num), unix.EPOLL_CTL_ADD, uint64(t.FD), r.scratch+offStruct); err != nil {
				return fmt.Errorf("epoll fd %d: adding fd %d (events %#x): %w", fd.Num, t.FD, t.Events, err)
			}
		}
	}
	return nil
}
