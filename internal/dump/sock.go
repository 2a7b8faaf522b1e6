package dump

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/ckpt/ckpt/internal/image"
	"github.com/ckpt/ckpt/internal/procfs"
	"golang.org/x/sys/unix"
)

const (
	siocUnixFile = 0x89e0 // SIOCPROTOPRIVATE: O_PATH fd of a bound socket's file
	shutdownBoth = 3      // RCV_SHUTDOWN|SEND_SHUTDOWN, as UNIX_DIAG_SHUTDOWN reports it
)

// dumpSocket records fd num of pid, a socket with inode ino. It returns a
// refusal (empty when the socket is supported) or an error.
func (h *Handle) dumpSocket(pid, num int, ino uint64, fd *image.FD, tree *image.Tree) (string, error) {
	if s := tree.Socket(ino); s != nil {
		fd.Kind, fd.Socket = image.FDUnix, ino
		return "", nil
	}
	if s := tree.InetSock(ino); s != nil {
		fd.Kind, fd.Inet = image.FDInet, ino
		return "", nil
	}
	ds, err := UnixSockets(ino)
	if errors.Is(err, errNoSocket) {
		if f, err := targetFD(pid, num); err == nil {
			defer f.Close()
			if fam, err := unix.GetsockoptInt(int(f.Fd()), unix.SOL_SOCKET, unix.SO_DOMAIN); err == nil && (fam == unix.AF_INET || fam == unix.AF_INET6) {
				return h.dumpInet(f, ino, fam, fd, tree)
			}
		}
		return "a socket (" + socketFamily(pid, num) + ") socket:[" + strconv.FormatUint(ino, 10) + "]", nil
	}
	if err != nil {
		return "", err
	}
	d := ds[0]
	f, err := targetFD(pid, num)
	if err != nil {
		return "", err
	}
	defer f.Close()
	sfd := int(f.Fd())
	s := &image.UnixSocket{ID: ino, Type: d.Type, Name: d.Name, Abstract: d.Abstract, Peer: d.Peer, Shutdown: d.Shutdown}
	what := fmt.Sprintf("a unix socket socket:[%d]", ino)
	switch d.Type {
	case unix.SOCK_STREAM, unix.SOCK_DGRAM, unix.SOCK_SEQPACKET:
	default:
		return fmt.Sprintf("%s of type %d", what, d.Type), nil
	}
	if s.Name != "" && !s.Abstract && !strings.HasPrefix(s.Name, "/") {
		// Bound by a relative path: find the file the name refers to.
		if pfd, err := unix.IoctlRetInt(sfd, siocUnixFile); err == nil {
			p, err := os.Readlink(fmt.Sprintf("/proc/self/fd/%d", pfd))
			unix.Close(pfd)
			if err == nil && strings.HasPrefix(p, "/") {
				s.Name = p
			}
		}
		if !strings.HasPrefix(s.Name, "/") {
			cwd, _ := os.Readlink(procfs.Path(pid, "cwd"))
			tree.Warnings = append(tree.Warnings, fmt.Sprintf("process %d fd %d: socket name %q is relative; taken relative to the working directory %s", pid, num, s.Name, cwd))
			s.Name = filepath.Join(cwd, s.Name)
		}
	}
	if d.State == tcpListen {
		if len(d.Pending) > 0 {
			return fmt.Sprintf("a listening unix socket %s with %d connections not yet accepted", s.Name, len(d.Pending)), nil
		}
		s.Listening, s.Backlog = true, int(d.WQueue)
	} else {
		s.Connected = d.State == tcpEstablished && d.Type != unix.SOCK_DGRAM
		if s.Connected && s.Peer == 0 && d.Shutdown != shutdownBoth {
			// The peer is alive (its release would have shut this side
			// down both ways) but has no inode: a connection its listener
			// has not accepted yet, which nothing can recreate.
			return fmt.Sprintf("%s connected to %s, which has not accepted the connection yet", what, pendingListener(ino)), nil
		}
		if s.SndBuf, err = unix.GetsockoptInt(sfd, unix.SOL_SOCKET, unix.SO_SNDBUF); err != nil {
			return "", err
		}
		if s.RcvBuf, err = unix.GetsockoptInt(sfd, unix.SOL_SOCKET, unix.SO_RCVBUF); err != nil {
			return "", err
		}
		q, inflight, why, err := peekQueue(sfd, d.Type)
		if err != nil {
			return "", fmt.Errorf("reading the queue of socket:[%d]: %w", ino, err)
		}
		if why != "" {
			return what + " " + why, nil
		}
		s.Queue = q
		for i, m := range inflight {
			fds, why := inFlight(m.fds) // closes m.fds
			if why != "" {
				for _, r := range inflight[i+1:] {
					closeAll(r.fds)
				}
				return what + " " + why, nil
			}
			s.Rights = append(s.Rights, image.InFlight{Msg: m.msg, FDs: fds})
		}
	}
	tree.Sockets = append(tree.Sockets, s)
	fd.Kind, fd.Socket = image.FDUnix, ino
	return "", nil
}

// rights are the descriptors (copies in this process) that came with
// message msg of a peeked queue.
type rights struct {
	msg int
	fds []int
}

func closeAll(fds []int) {
	for i, f := range fds {
		if f >= 0 {
			unix.Close(f)
			fds[i] = -1
		}
	}
}

// peekQueue reads what is queued in a socket without consuming it: MSG_PEEK
// with SO_PEEK_OFF moving through the queue, put back afterwards. Datagrams
// and records come back one per element, with the descriptors in flight
// (SCM_RIGHTS) of each (the caller closes them). On a stream socket a
// descriptor in flight is refused (it belongs to a byte position).
func peekQueue(fd, typ int) (out [][]byte, fl []rights, why string, err error) {
	// Every descriptor received, kept apart from fl: an error return sets
	// fl to nil before this runs.
	var got []rights
	defer func() {
		if why != "" || err != nil {
			for _, r := range got {
				closeAll(r.fds)
			}
			fl = nil
		}
	}()
	old, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_PEEK_OFF)
	if err != nil {
		return nil, nil, "", err
	}
	if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_PEEK_OFF, 0); err != nil {
		return nil, nil, "", err
	}
	defer unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_PEEK_OFF, old) //nolint:errcheck
	var (
		stream []byte
		cur    []byte
		want   = -1
	)
	buf := make([]byte, 256<<10)
	oob := make([]byte, 4096)
	flags := unix.MSG_PEEK | unix.MSG_DONTWAIT | unix.MSG_CMSG_CLOEXEC
	if typ != unix.SOCK_STREAM {
		flags |= unix.MSG_TRUNC
	}
	for i := 0; ; i++ {
		if i > 1<<20 {
			return nil, nil, "", errors.New("queue does not end")
		}
		n, oobn, _, _, err := unix.Recvmsg(fd, buf, oob, flags)
		if err == unix.EAGAIN {
			break
		}
		if err != nil {
			return nil, nil, "", err
		}
		if oobn > 0 {
			msgs, err := unix.ParseSocketControlMessage(oob[:oobn])
			if err != nil {
				return nil, nil, "", err
			}
			for _, m := range msgs {
				fds, err := unix.ParseUnixRights(&m)
				if err != nil {
					continue
				}
				if typ == unix.SOCK_STREAM {
					// Name what is in flight (the peek gave us copies).
					var names []string
					for _, f := range fds {
						l, _ := os.Readlink(fmt.Sprintf("/proc/self/fd/%d", f))
						names = append(names, l)
					}
					closeAll(fds)
					return nil, nil, fmt.Sprintf("with file descriptors in flight on a stream (SCM_RIGHTS: %s)", strings.Join(names, ", ")), nil
				}
				if want < 0 { // the first piece of a message carries them
					got = append(got, rights{msg: len(out), fds: fds})
				} else {
					closeAll(fds)
				}
			}
		}
		if n == 0 && want < 0 {
			// The peer shut down: end of the data. (An empty datagram
			// reads the same; it is not saved.)
			break
		}
		if typ == unix.SOCK_STREAM {
			stream = append(stream, buf[:n]...)
			continue
		}
		if want < 0 {
			want = n
		}
		cur = append(cur, buf[:min(n, len(buf))]...)
		if len(cur) >= want {
			out = append(out, cur)
			cur, want = nil, -1
		}
	}
	if len(stream) > 0 {
		out = [][]byte{stream}
	}
	return out, got, "", nil
}

// socketFamily names the address family of fd num of pid.
func socketFamily(pid, num int) string {
	f, err := targetFD(pid, num)
	if err != nil {
		return "unknown family"
	}
	defer f.Close()
	d, err := unix.GetsockoptInt(int(f.Fd()), unix.SOL_SOCKET, unix.SO_DOMAIN)
	if err != nil {
		return "unknown family"
	}
	if n, ok := map[int]string{unix.AF_INET: "AF_INET", unix.AF_INET6: "AF_INET6", unix.AF_NETLINK: "AF_NETLINK",
		unix.AF_PACKET: "AF_PACKET", unix.AF_UNIX: "AF_UNIX in another network namespace", unix.AF_VSOCK: "AF_VSOCK"}[d]; ok {
		return n
	}
	return fmt.Sprintf("address family %d", d)
}

// socketOwner names a process outside the tree that holds socket ino, for
// refusal messages.
func socketOwner(ino uint64) string {
	want := fmt.Sprintf("socket:[%d]", ino)
	procs, _ := os.ReadDir("/proc")
	for _, p := range procs {
		pid, err := strconv.Atoi(p.Name())
		if err != nil {
			continue
		}
		fds, _ := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
		for _, f := range fds {
			if l, _ := os.Readlink(fmt.Sprintf("/proc/%d/fd/%s", pid, f.Name())); l == want {
				comm, _ := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid))
				return fmt.Sprintf("held by process %d (%s) fd %s", pid, strings.TrimSpace(string(comm)), f.Name())
			}
		}
	}
	return "held by no process we can see"
}

// pendingListener names the listening socket that holds the connection of
// client socket ino in its accept queue, for refusal messages.
func pendingListener(ino uint64) string {
	all, _ := UnixSockets(0)
	for _, d := range all {
		for _, p := range d.Pending {
			if p != ino {
				continue
			}
			l := fmt.Sprintf("the listener socket:[%d]", d.Ino)
			if d.Name != "" {
				l += " bound to " + d.Name
			}
			return l + " (" + socketOwner(d.Ino) + ")"
		}
	}
	return "a listener"
}

// linkSockets checks that every connected unix socket's peer is in the
// tree. A socket on fd 0-2 whose peer is outside becomes an outside fd
// (the stdio policy); elsewhere it is refused, naming the peer.
func linkSockets(tree *image.Tree) error {
	if len(tree.Sockets) == 0 {
		return nil
	}
	inTree := map[uint64]bool{}
	for _, s := range tree.Sockets {
		inTree[s.ID] = true
	}
	outside := map[uint64]bool{}
	for _, p := range tree.Processes {
		for _, fd := range p.FDs {
			if fd.Kind != image.FDUnix {
				continue
			}
			s := tree.Socket(fd.Socket)
			if s.Peer == 0 || inTree[s.Peer] {
				continue
			}
			if fd.Num <= 2 {
				outside[s.ID] = true
				continue
			}
			peer := fmt.Sprintf("socket:[%d]", s.Peer)
			if ds, err := UnixSockets(s.Peer); err == nil && ds[0].Name != "" {
				if d := ds[0]; s.Type == unix.SOCK_DGRAM && len(s.Queue) == 0 && (d.Abstract || strings.HasPrefix(d.Name, "/")) {
					// Connectionless: connecting to the name again at
					// restore is all the connection was (syslog's /dev/log).
					s.Peer, s.PeerName, s.PeerAbstract = 0, d.Name, d.Abstract
					continue
				}
				peer += " bound to " + ds[0].Name
			}
			return fmt.Errorf("process %d (%s): fd %d is a unix socket socket:[%d] connected to %s outside the tree (%s): %w",
				p.PID, p.Comm, fd.Num, s.ID, peer, socketOwner(s.Peer), ErrUnsupported)
		}
	}
	if len(outside) == 0 {
		return nil
	}
	for _, p := range tree.Processes {
		for _, fd := range p.FDs {
			if fd.Kind == image.FDUnix && outside[fd.Socket] {
				if fd.Num > 2 {
					return fmt.Errorf("process %d (%s): fd %d is a unix socket socket:[%d] connected outside the tree: %w",
						p.PID, p.Comm, fd.Num, fd.Socket, ErrUnsupported)
				}
				fd.Kind, fd.Socket = image.FDOutside, 0
			}
		}
	}
	kept := tree.Sockets[:0]
	for _, s := range tree.Sockets {
		if !outside[s.ID] {
			kept = append(kept, s)
		}
	}
	tree.Sockets = kept
	return nil
}
