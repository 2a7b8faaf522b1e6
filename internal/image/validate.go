package image

import (
	"errors"
	"fmt"
)

// ErrInvalid is wrapped by every error Validate returns.
var ErrInvalid = errors.New("invalid process image")

func invalid(format string, a ...any) error {
	return fmt.Errorf("%w: %s", ErrInvalid, fmt.Sprintf(format, a...))
}

// Validate checks that the tree is consistent enough to restore.
func (t *Tree) Validate() error {
	if t.Version != FormatVersion {
		return invalid("format version %d, want %d", t.Version, FormatVersion)
	}
	if len(t.Processes) == 0 {
		return invalid("no processes")
	}
	pids := map[int]*Process{}
	tids := map[int]int{}
	for i, p := range t.Processes {
		if p == nil {
			return invalid("process %d is null", i)
		}
		if p.PID <= 0 {
			return invalid("process %d has PID %d", i, p.PID)
		}
		if pids[p.PID] != nil {
			return invalid("PID %d appears twice", p.PID)
		}
		pids[p.PID] = p
		if i > 0 && pids[p.PPID] == nil {
			return invalid("process %d: parent %d is not earlier in the tree", p.PID, p.PPID)
		}
	}
	if t.Processes[0].PID != t.Root {
		return invalid("first process is %d, root is %d", t.Processes[0].PID, t.Root)
	}
	socks := map[uint64]bool{}
	for _, s := range t.Sockets {
		if s == nil || s.ID == 0 || socks[s.ID] {
			return invalid("bad or duplicate socket in the image")
		}
		socks[s.ID] = true
	}
	for _, s := range t.Sockets {
		if s.Peer != 0 && !socks[s.Peer] {
			return invalid("socket %d: peer %d is not in the image", s.ID, s.Peer)
		}
		if s.PeerName != "" && (s.Peer != 0 || s.Type != 2 /* SOCK_DGRAM */ || len(s.Queue) > 0) {
			return invalid("socket %d: a peer outside the tree on a socket that is not an idle datagram socket", s.ID)
		}
		for _, in := range s.Rights {
			if in.Msg < 0 || in.Msg >= len(s.Queue) || s.Type == 1 /* SOCK_STREAM */ {
				return invalid("socket %d: descriptors in flight with message %d of %d", s.ID, in.Msg, len(s.Queue))
			}
			for _, fd := range in.FDs {
				if fd == nil || fd.Kind != FDFile && fd.Kind != FDDevice || fd.Path == "" {
					return invalid("socket %d: a descriptor in flight that is not a file or device", s.ID)
				}
			}
		}
	}
	inet := map[uint64]bool{}
	for _, s := range t.Inet {
		if s == nil || s.ID == 0 || inet[s.ID] || socks[s.ID] {
			return invalid("bad or duplicate inet socket in the image")
		}
		inet[s.ID] = true
		if err := s.validate(); err != nil {
			return err
		}
	}
	if t.Container != nil {
		if err := t.Container.validate(t); err != nil {
			return err
		}
	}
	for _, s := range t.Shm {
		if s == nil || s.ID == 0 || t.ShmObj(s.ID) != s {
			return invalid("bad or duplicate shared memory object in the image")
		}
		if err := s.validate(); err != nil {
			return err
		}
	}
	descs := map[int]*FD{}
	for _, p := range t.Processes {
		if p.Zombie {
			if len(p.Threads) != 0 || len(p.Mappings) != 0 || len(p.FDs) != 0 {
				return invalid("zombie %d has threads, memory or files", p.PID)
			}
			continue
		}
		if len(p.Threads) == 0 || p.Threads[0] == nil || p.Threads[0].TID != p.PID {
			return invalid("process %d: first thread must have TID %d", p.PID, p.PID)
		}
		for _, th := range p.Threads {
			if th == nil || th.TID <= 0 {
				return invalid("process %d: bad thread", p.PID)
			}
			if o, dup := tids[th.TID]; dup {
				return invalid("TID %d in processes %d and %d", th.TID, o, p.PID)
			}
			tids[th.TID] = p.PID
			if t.CPU.XStateSize != 0 && len(th.XSave) != t.CPU.XStateSize {
				return invalid("thread %d: XSAVE area is %d bytes, image says %d", th.TID, len(th.XSave), t.CPU.XStateSize)
			}
			for _, s := range th.Pending {
				if s.Signo < 1 || s.Signo > 64 || len(s.Raw) != 128 {
					return invalid("thread %d: bad pending signal %d", th.TID, s.Signo)
				}
			}
		}
		var prev uint64
		for i, m := range p.Mappings {
			if m == nil {
				return invalid("process %d: mapping %d is null", p.PID, i)
			}
			if m.Start%PageSize != 0 || m.End%PageSize != 0 || m.End <= m.Start {
				return invalid("process %d: mapping %#x-%#x is not a page-aligned range", p.PID, m.Start, m.End)
			}
			if m.Start < prev {
				return invalid("process %d: mapping %#x-%#x overlaps or is out of order", p.PID, m.Start, m.End)
			}
			prev = m.End
			switch m.Kind {
			case KindAnon, KindHeap, KindStack, KindDeleted, KindVvar, KindVvarVclock, KindVdso, KindVsyscall:
			case KindShm:
				if t.ShmObj(m.Shm) == nil {
					return invalid("process %d: mapping %#x-%#x: shared memory %d is not in the image", p.PID, m.Start, m.End, m.Shm)
				}
			case KindFile:
				if m.Path == "" || m.File == nil {
					return invalid("process %d: file mapping %#x-%#x without path or identity", p.PID, m.Start, m.End)
				}
			default:
				return invalid("process %d: mapping %#x-%#x has unknown kind %q", p.PID, m.Start, m.End, m.Kind)
			}
			if m.Saved > m.Size() {
				return invalid("process %d: mapping %#x-%#x saved %d bytes, more than its size", p.PID, m.Start, m.End, m.Saved)
			}
		}
		nums := map[int]bool{}
		for _, fd := range p.FDs {
			if fd == nil || fd.Num < 0 {
				return invalid("process %d: bad fd", p.PID)
			}
			if nums[fd.Num] {
				return invalid("process %d: fd %d appears twice", p.PID, fd.Num)
			}
			nums[fd.Num] = true
			switch fd.Kind {
			case FDFile, FDDevice:
				if fd.Path == "" {
					return invalid("process %d fd %d: %s without a path", p.PID, fd.Num, fd.Kind)
				}
			case FDPipe, FDFifo:
				if t.Pipe(fd.Pipe) == nil {
					return invalid("process %d fd %d: pipe %d is not in the image", p.PID, fd.Num, fd.Pipe)
				}
			case FDDeleted, FDOutside:
			case FDEventfd:
				if fd.Eventfd == nil {
					return invalid("process %d fd %d: eventfd without its state", p.PID, fd.Num)
				}
			case FDTimerfd:
				if fd.Timerfd == nil {
					return invalid("process %d fd %d: timerfd without its state", p.PID, fd.Num)
				}
			case FDSignalfd:
				if fd.Signalfd == nil {
					return invalid("process %d fd %d: signalfd without its state", p.PID, fd.Num)
				}
			case FDEpoll, FDInotify:
			case FDUnix:
				if t.Socket(fd.Socket) == nil {
					return invalid("process %d fd %d: socket %d is not in the image", p.PID, fd.Num, fd.Socket)
				}
			case FDMemfd:
				if t.ShmObj(fd.Shm) == nil {
					return invalid("process %d fd %d: shared memory %d is not in the image", p.PID, fd.Num, fd.Shm)
				}
			case FDInet:
				if !inet[fd.Inet] {
					return invalid("process %d fd %d: inet socket %d is not in the image", p.PID, fd.Num, fd.Inet)
				}
			default:
				return invalid("process %d fd %d: unknown kind %q", p.PID, fd.Num, fd.Kind)
			}
			if fd.Desc != 0 {
				if o := descs[fd.Desc]; o != nil && (o.Kind != fd.Kind || o.Path != fd.Path || o.Pipe != fd.Pipe || o.Socket != fd.Socket || o.Inet != fd.Inet || o.Shm != fd.Shm) {
					return invalid("process %d fd %d: shares description %d with a different file", p.PID, fd.Num, fd.Desc)
				}
				descs[fd.Desc] = fd
			}
		}
		for _, fd := range p.FDs {
			for _, e := range fd.Epoll {
				if !nums[e.FD] {
					return invalid("process %d fd %d: epoll target fd %d is not open", p.PID, fd.Num, e.FD)
				}
			}
			for _, l := range fd.Locks {
				if l.Kind != LockPOSIX && l.Kind != LockFlock && l.Kind != LockOFD {
					return invalid("process %d fd %d: unknown lock kind %q", p.PID, fd.Num, l.Kind)
				}
			}
		}
		for _, a := range p.SigActions {
			if a.Sig < 1 || a.Sig > 64 || a.Sig == 9 || a.Sig == 19 {
				return invalid("process %d: disposition for signal %d", p.PID, a.Sig)
			}
		}
		if len(p.Auxv)%2 != 0 {
			return invalid("process %d: odd auxv length", p.PID)
		}
	}
	return nil
}
