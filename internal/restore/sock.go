package restore

import (
	"errors"
	"fmt"
	"os"

	"github.com/ckpt/ckpt/internal/dump"
	"github.com/ckpt/ckpt/internal/image"
	"golang.org/x/sys/unix"
)

func sockaddr(s *image.UnixSocket) *unix.SockaddrUnix {
	if s.Abstract {
		return &unix.SockaddrUnix{Name: "@" + s.Name}
	}
	return &unix.SockaddrUnix{Name: s.Name}
}

func newSocket(typ int) (int, error) {
	fd, err := unix.Socket(unix.AF_UNIX, typ|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return -1, fmt.Errorf("socket: %w", err)
	}
	return fd, nil
}

// freeName makes a filesystem socket name bindable again: the file left by
// the dumped socket is removed, unless a live socket is bound to it.
func freeName(s *image.UnixSocket) error {
	if s.Abstract || s.Name == "" {
		return nil
	}
	var st unix.Stat_t
	if err := unix.Lstat(s.Name, &st); err != nil {
		return nil
	}
	if st.Mode&unix.S_IFMT != unix.S_IFSOCK {
		return fmt.Errorf("%s exists and is not a socket", s.Name)
	}
	live, err := dump.UnixPathInUse(st.Dev, st.Ino)
	if err != nil {
		return err
	}
	if live {
		return fmt.Errorf("%s is bound by a live socket: %w", s.Name, ErrMismatch)
	}
	return os.Remove(s.Name)
}

func bindName(fd int, s *image.UnixSocket) error {
	if s.Name == "" {
		return nil
	}
	if err := freeName(s); err != nil {
		return err
	}
	if err := unix.Bind(fd, sockaddr(s)); err != nil {
		return fmt.Errorf("binding %s: %w", s.Name, err)
	}
	return nil
}

// openSockets creates, in the restorer, every unix socket of the tree:
// listeners re-bound to their names, connected pairs (through a listener
// when one end has a name, so getsockname/getpeername match, otherwise
// with socketpair), datagram sockets connected to a named one, then the
// queued data written back from the peer's end.
func (r *restorer) openSockets() error {
	r.sockets = map[uint64]int{}
	var temps []int // restorer-only ends and listeners, closed at the end
	defer func() {
		for _, fd := range temps {
			unix.Close(fd)
		}
	}()
	sender := map[uint64]int{} // socket -> an fd whose writes land in its queue
	keep := func(s *image.UnixSocket, fd int) {
		r.sockets[s.ID] = fd
		r.extra = append(r.extra, os.NewFile(uintptr(fd), fmt.Sprintf("socket:[%d]", s.ID)))
	}
	t := r.tree
	listener := func(s *image.UnixSocket) (int, bool) {
		for _, l := range t.Sockets {
			if l.Listening && l.Name == s.Name && l.Abstract == s.Abstract {
				if fd, ok := r.sockets[l.ID]; ok {
					return fd, true
				}
			}
		}
		return -1, false
	}
	for _, s := range t.Sockets {
		if !s.Listening {
			continue
		}
		fd, err := newSocket(s.Type)
		if err != nil {
			return err
		}
		keep(s, fd)
		if err := bindName(fd, s); err != nil {
			return fmt.Errorf("listening socket:[%d]: %w", s.ID, err)
		}
		if err := unix.Listen(fd, max(s.Backlog, 1)); err != nil {
			return fmt.Errorf("listening socket:[%d] on %s: %w", s.ID, s.Name, err)
		}
	}
	// Mutual pairs.
	for _, s := range t.Sockets {
		if _, done := r.sockets[s.ID]; done || s.Peer == 0 {
			continue
		}
		q := t.Socket(s.Peer)
		if q.Peer != s.ID {
			continue
		}
		if err := r.pair(s, q, listener, &temps); err != nil {
			return fmt.Errorf("socket:[%d] and socket:[%d]: %w", s.ID, q.ID, err)
		}
		sender[s.ID], sender[q.ID] = r.sockets[q.ID], r.sockets[s.ID]
	}
	// Unpaired: datagram sockets connected one way, closed peers, loose sockets.
	for _, s := range t.Sockets {
		if _, done := r.sockets[s.ID]; done || s.Peer != 0 {
			continue
		}
		if s.Connected {
			// Its peer closed: a pair whose other end the restorer
			// closes after the refill gives the same end of file.
			sv, err := unix.Socketpair(unix.AF_UNIX, s.Type|unix.SOCK_CLOEXEC, 0)
			if err != nil {
				return fmt.Errorf("socket:[%d]: socketpair: %w", s.ID, err)
			}
			keep(s, sv[0])
			temps = append(temps, sv[1])
			sender[s.ID] = sv[1]
			continue
		}
		fd, err := newSocket(s.Type)
		if err != nil {
			return err
		}
		keep(s, fd)
		if err := bindName(fd, s); err != nil {
			return fmt.Errorf("socket:[%d]: %w", s.ID, err)
		}
		if s.PeerName != "" {
			peer := &image.UnixSocket{Name: s.PeerName, Abstract: s.PeerAbstract}
			if err := unix.Connect(fd, sockaddr(peer)); err != nil {
				// As if the peer had gone after the dump: sends fail
				// and the program reconnects or reports it.
				r.warn("datagram socket:[%d] was connected to %s outside the tree, which cannot be reached now (%v): left unconnected", s.ID, s.PeerName, err)
			}
		}
	}
	for _, s := range t.Sockets {
		if _, done := r.sockets[s.ID]; done {
			continue
		}
		q := t.Socket(s.Peer)
		if q.Name == "" {
			return fmt.Errorf("socket:[%d] is connected to the unnamed socket:[%d] that is connected elsewhere", s.ID, q.ID)
		}
		fd, err := newSocket(s.Type)
		if err != nil {
			return err
		}
		keep(s, fd)
		if err := bindName(fd, s); err != nil {
			return fmt.Errorf("socket:[%d]: %w", s.ID, err)
		}
		if err := unix.Connect(fd, sockaddr(q)); err != nil {
			return fmt.Errorf("socket:[%d]: connecting to %s: %w", s.ID, q.Name, err)
		}
	}
	// Queued data, written from the other end (or, for a named datagram
	// socket, from a fresh unnamed one: the senders' addresses are lost).
	for _, s := range t.Sockets {
		if len(s.Queue) == 0 {
			continue
		}
		from, ok := sender[s.ID]
		var to unix.Sockaddr
		if !ok {
			if s.Type != unix.SOCK_DGRAM || s.Name == "" {
				return fmt.Errorf("socket:[%d] has queued data and no way to refill it", s.ID)
			}
			fd, err := newSocket(s.Type)
			if err != nil {
				return err
			}
			temps = append(temps, fd)
			from, to = fd, sockaddr(s)
		}
		total := 0
		for _, m := range s.Queue {
			total += len(m) + 1024
		}
		cur, _ := unix.GetsockoptInt(from, unix.SOL_SOCKET, unix.SO_SNDBUF)
		if err := unix.SetsockoptInt(from, unix.SOL_SOCKET, unix.SO_SNDBUFFORCE, max(cur, 2*total+(64<<10))); err != nil {
			return fmt.Errorf("socket:[%d]: raising the send buffer for the refill: %w", s.ID, err)
		}
		for i, m := range s.Queue {
			oob, sent, err := r.inFlight(s, i)
			if err != nil {
				return fmt.Errorf("socket:[%d]: descriptors in flight with message %d: %w", s.ID, i+1, err)
			}
			_, err = unix.SendmsgN(from, m, oob, to, unix.MSG_DONTWAIT|unix.MSG_NOSIGNAL)
			sent()
			if err != nil {
				return fmt.Errorf("socket:[%d]: refilling %d queued bytes: %w", s.ID, len(m), err)
			}
		}
		_ = unix.SetsockoptInt(from, unix.SOL_SOCKET, unix.SO_SNDBUFFORCE, cur/2)
	}
	for _, s := range t.Sockets {
		fd := r.sockets[s.ID]
		if s.SndBuf > 0 {
			_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_SNDBUFFORCE, s.SndBuf/2)
		}
		if s.RcvBuf > 0 {
			_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, s.RcvBuf/2)
		}
		// A socket whose peer closed gets its shutdown when the
		// restorer's end of its pair closes.
		if how := map[int]int{1: unix.SHUT_RD, 2: unix.SHUT_WR, 3: unix.SHUT_RDWR}[s.Shutdown]; s.Shutdown != 0 && (s.Peer != 0 || !s.Connected) {
			if err := unix.Shutdown(fd, how); err != nil && !errors.Is(err, unix.ENOTCONN) {
				return fmt.Errorf("socket:[%d]: shutdown: %w", s.ID, err)
			}
		}
	}
	return nil
}

// pair creates two connected sockets. With a name on either end (an
// accepted connection carries its listener's name) and a connection-
// oriented type, the pair is made by connect and accept on a listener with
// that name: the image's own listener, or a temporary one.
func (r *restorer) pair(s, q *image.UnixSocket, listener func(*image.UnixSocket) (int, bool), temps *[]int) error {
	keep := func(s *image.UnixSocket, fd int) {
		r.sockets[s.ID] = fd
		r.extra = append(r.extra, os.NewFile(uintptr(fd), fmt.Sprintf("socket:[%d]", s.ID)))
	}
	if s.Name == "" && q.Name == "" {
		sv, err := unix.Socketpair(unix.AF_UNIX, s.Type|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			return fmt.Errorf("socketpair: %w", err)
		}
		keep(s, sv[0])
		keep(q, sv[1])
		return nil
	}
	if s.Type == unix.SOCK_DGRAM {
		for _, x := range []*image.UnixSocket{s, q} {
			fd, err := newSocket(x.Type)
			if err != nil {
				return err
			}
			keep(x, fd)
			if err := bindName(fd, x); err != nil {
				return err
			}
		}
		for _, x := range [][2]*image.UnixSocket{{s, q}, {q, s}} {
			if x[1].Name == "" {
				return fmt.Errorf("datagram socket:[%d] is connected to an unnamed socket", x[0].ID)
			}
			if err := unix.Connect(r.sockets[x[0].ID], sockaddr(x[1])); err != nil {
				return fmt.Errorf("connecting to %s: %w", x[1].Name, err)
			}
		}
		return nil
	}
	// The accepted end has the listener's name; the client may have its own.
	server, client := s, q
	if _, ok := listener(q); ok || s.Name == "" {
		server, client = q, s
	}
	l, ok := listener(server)
	if !ok {
		fd, err := newSocket(server.Type)
		if err != nil {
			return err
		}
		*temps = append(*temps, fd)
		if err := bindName(fd, server); err != nil {
			return err
		}
		if err := unix.Listen(fd, 1); err != nil {
			return err
		}
		l = fd
	}
	c, err := newSocket(client.Type)
	if err != nil {
		return err
	}
	keep(client, c)
	if client.Name != "" {
		if err := bindName(c, client); err != nil {
			return err
		}
	}
	if err := unix.Connect(c, sockaddr(server)); err != nil {
		return fmt.Errorf("connecting to %s: %w", server.Name, err)
	}
	a, _, err := unix.Accept4(l, unix.SOCK_CLOEXEC)
	if err != nil {
		return fmt.Errorf("accepting on %s: %w", server.Name, err)
	}
	keep(server, a)
	return nil
}

// socketFile returns the restorer's *os.File for socket fd (kept in extra)
// with the saved status flags.
func (r *restorer) socketFile(fd, flags int) (*os.File, error) {
	for _, f := range r.extra {
		if int(f.Fd()) == fd {
			return f, setFL(f, flags)
		}
	}
	return nil, fmt.Errorf("socket fd %d not found", fd)
}
