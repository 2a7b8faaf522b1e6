package image

import (
	"fmt"
	"strings"
	"time"
)

// Descriptor kinds beyond files and pipes. Each keeps the state of its open
// file description in a field of FD named after it; the fields are optional
// in the JSON encoding, so images written before they existed still read.
const (
	FDEventfd  = "eventfd"  // Eventfd: counter and semaphore mode
	FDTimerfd  = "timerfd"  // Timerfd: clock, remaining time, interval, expirations
	FDSignalfd = "signalfd" // Signalfd: signal mask
	FDEpoll    = "epoll"    // Epoll: interest list (targets are fds of the same process)
	FDInotify  = "inotify"  // Inotify: watches by path with their wd numbers
	FDUnix     = "unix"     // Socket: an AF_UNIX socket in Tree.Sockets
)

// Eventfd is the state of an eventfd.
type Eventfd struct {
	Count     uint64 `json:"count"`
	Semaphore bool   `json:"semaphore,omitempty"` // EFD_SEMAPHORE
}

// Timerfd is the state of a timerfd. Value is the time left when the tree
// was frozen (0: disarmed); a timer set with TFD_TIMER_ABSTIME keeps its
// absolute expiry in Deadline (nanoseconds on Clock).
type Timerfd struct {
	Clock      int    `json:"clock"`
	SetFlags   int    `json:"settime_flags,omitempty"` // TFD_TIMER_ABSTIME, TFD_TIMER_CANCEL_ON_SET
	ValueNs    int64  `json:"value_ns,omitempty"`
	IntervalNs int64  `json:"interval_ns,omitempty"`
	DeadlineNs int64  `json:"deadline_ns,omitempty"`
	Ticks      uint64 `json:"ticks,omitempty"` // expirations not yet read
}

// Signalfd is the state of a signalfd.
type Signalfd struct {
	Mask uint64 `json:"mask"` // bit n-1 is signal n
}

// EpollTarget is one entry of an epoll interest list: the target is fd FD of
// the process that holds the epoll descriptor.
type EpollTarget struct {
	FD     int    `json:"fd"`
	Events uint32 `json:"events"` // including EPOLLET, EPOLLONESHOT, EPOLLEXCLUSIVE
	Data   uint64 `json:"data"`
}

// InotifyWatch is one inotify watch, re-added by path at restore with the
// same watch descriptor number.
type InotifyWatch struct {
	WD   int    `json:"wd"`
	Mask uint32 `json:"mask"`
	Path string `json:"path"`
	Dev  uint64 `json:"dev"` // st_dev, st_ino of the watched file at dump
	Ino  uint64 `json:"ino"`
}

// Lock is a file lock held through a descriptor.
type Lock struct {
	Kind  string `json:"kind"` // LockPOSIX, LockFlock, LockOFD
	Write bool   `json:"write,omitempty"`
	Start int64  `json:"start,omitempty"`
	End   int64  `json:"end"` // last byte, -1 for "to the end of the file"
}

// Lock kinds.
const (
	LockPOSIX = "posix" // fcntl F_SETLK: owned by the process
	LockFlock = "flock" // flock(2): owned by the open file description
	LockOFD   = "ofd"   // fcntl F_OFD_SETLK: owned by the open file description
)

// UnixSocket is an AF_UNIX socket of the tree, identified by its inode.
type UnixSocket struct {
	ID        uint64 `json:"id"`   // inode
	Type      int    `json:"type"` // SOCK_STREAM, SOCK_DGRAM, SOCK_SEQPACKET
	Name      string `json:"name,omitempty"`
	Abstract  bool   `json:"abstract,omitempty"` // Name is in the abstract namespace
	Listening bool   `json:"listening,omitempty"`
	Backlog   int    `json:"backlog,omitempty"`
	// Peer is the socket this one is connected to (0: none). A stream or
	// seqpacket socket whose peer has closed has Peer 0 and Connected set.
	Peer      uint64 `json:"peer,omitempty"`
	Connected bool   `json:"connected,omitempty"`
	// PeerName is the name of the socket outside the tree that a datagram
	// socket is connected to (syslog's /dev/log), connected again by name
	// at restore; Peer is then 0.
	PeerName     string `json:"peer_name,omitempty"`
	PeerAbstract bool   `json:"peer_abstract,omitempty"`
	Shutdown     int    `json:"shutdown,omitempty"` // 1: receive side, 2: send side
	SndBuf       int    `json:"sndbuf,omitempty"`   // as getsockopt reports it
	RcvBuf       int    `json:"rcvbuf,omitempty"`
	// Queue is the data waiting in this socket's receive queue: one
	// element per datagram or record, stream data as one element.
	Queue [][]byte `json:"queue,omitempty"`
	// Rights are descriptors in flight with messages of Queue.
	Rights []InFlight `json:"rights,omitempty"`
}

// Socket returns the unix socket with id, or nil.
func (t *Tree) Socket(id uint64) *UnixSocket {
	for _, s := range t.Sockets {
		if s.ID == id {
			return s
		}
	}
	return nil
}

// fdState renders the kind-specific state of fd for inspect.
func fdState(fd *FD) string {
	var b strings.Builder
	switch {
	case fd.Eventfd != nil:
		fmt.Fprintf(&b, " count %d", fd.Eventfd.Count)
		if fd.Eventfd.Semaphore {
			b.WriteString(" semaphore")
		}
	case fd.Timerfd != nil:
		t := fd.Timerfd
		fmt.Fprintf(&b, " clock %d value %s interval %s ticks %d", t.Clock, time.Duration(t.ValueNs), time.Duration(t.IntervalNs), t.Ticks)
	case fd.Signalfd != nil:
		fmt.Fprintf(&b, " mask %#x", fd.Signalfd.Mask)
	case fd.Socket != 0:
		fmt.Fprintf(&b, " socket:[%d]", fd.Socket)
	case fd.Inet != 0:
		fmt.Fprintf(&b, " socket:[%d]", fd.Inet)
	}
	for _, e := range fd.Epoll {
		fmt.Fprintf(&b, " [fd %d events %#x data %#x]", e.FD, e.Events, e.Data)
	}
	for _, w := range fd.Inotify {
		fmt.Fprintf(&b, " [wd %d %s mask %#x]", w.WD, w.Path, w.Mask)
	}
	for _, l := range fd.Locks {
		mode := "read"
		if l.Write {
			mode = "write"
		}
		end := "EOF"
		if l.End >= 0 {
			end = fmt.Sprint(l.End)
		}
		fmt.Fprintf(&b, " [%s %s lock %d-%s]", l.Kind, mode, l.Start, end)
	}
	return b.String()
}

func socketStr(s *UnixSocket) string {
	kind := map[int]string{1: "stream", 2: "dgram", 5: "seqpacket"}[s.Type]
	if kind == "" {
		kind = fmt.Sprintf("type %d", s.Type)
	}
	out := fmt.Sprintf("socket:[%d] %s", s.ID, kind)
	if s.Name != "" {
		if s.Abstract {
			out += " @" + s.Name
		} else {
			out += " " + s.Name
		}
	}
	if s.Listening {
		out += fmt.Sprintf(" listening (backlog %d)", s.Backlog)
	}
	switch {
	case s.Peer != 0:
		out += fmt.Sprintf(" peer socket:[%d]", s.Peer)
	case s.PeerName != "" && s.PeerAbstract:
		out += " connected outside the tree to @" + s.PeerName
	case s.PeerName != "":
		out += " connected outside the tree to " + s.PeerName
	case s.Connected:
		out += " peer closed"
	}
	n := 0
	for _, m := range s.Queue {
		n += len(m)
	}
	if n > 0 {
		out += fmt.Sprintf(", %d bytes in %d messages queued", n, len(s.Queue))
	}
	return out
}
