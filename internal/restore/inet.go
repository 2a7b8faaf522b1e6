package restore

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"os"

	"github.com/ckpt/ckpt/internal/image"
	"golang.org/x/sys/unix"
)

const (
	tcpRecvQueue = 1
	tcpSendQueue = 2
)

func inetAddr(s string) (unix.Sockaddr, error) {
	ap, err := netip.ParseAddrPort(s)
	if err != nil {
		return nil, err
	}
	if ap.Addr().Is4() {
		return &unix.SockaddrInet4{Port: int(ap.Port()), Addr: ap.Addr().As4()}, nil
	}
	return &unix.SockaddrInet6{Port: int(ap.Port()), Addr: ap.Addr().As16()}, nil
}

// openInet creates every TCP and UDP socket of the tree in the restorer:
// listeners bound and listening; established TCP connections rebuilt in
// repair mode (sequence numbers, options, queues, window) and taken out of
// repair only once every connection exists, so a peer inside the tree is
// there for the window probe; UDP sockets bound, their queues refilled
// from their senders' addresses where possible, then connected.
func (r *restorer) openInet() error {
	r.inet = map[uint64]*os.File{}
	t := r.tree
	create := func(s *image.InetSocket) (int, error) {
		fd, err := unix.Socket(s.Family, s.Type|unix.SOCK_CLOEXEC, s.Protocol)
		if err != nil {
			return -1, fmt.Errorf("socket: %w", err)
		}
		r.inet[s.ID] = os.NewFile(uintptr(fd), fmt.Sprintf("socket:[%d]", s.ID))
		r.extra = append(r.extra, r.inet[s.ID])
		bools := []struct {
			on         bool
			level, opt int
		}{{s.ReuseAddr, unix.SOL_SOCKET, unix.SO_REUSEADDR}, {s.ReusePort, unix.SOL_SOCKET, unix.SO_REUSEPORT},
			{s.KeepAlive, unix.SOL_SOCKET, unix.SO_KEEPALIVE}}
		if s.Family == unix.AF_INET6 {
			bools = append(bools, struct {
				on         bool
				level, opt int
			}{s.V6Only, unix.IPPROTO_IPV6, unix.IPV6_V6ONLY})
		}
		if s.Type == unix.SOCK_STREAM {
			bools = append(bools, struct {
				on         bool
				level, opt int
			}{s.NoDelay, unix.IPPROTO_TCP, unix.TCP_NODELAY})
		}
		for _, b := range bools {
			v := 0
			if b.on {
				v = 1
			}
			if err := unix.SetsockoptInt(fd, b.level, b.opt, v); err != nil {
				return -1, fmt.Errorf("setsockopt(%d, %d): %w", b.level, b.opt, err)
			}
		}
		return fd, nil
	}
	bind := func(fd int, s *image.InetSocket) error {
		if s.Local == "" {
			return nil
		}
		sa, err := inetAddr(s.Local)
		if err != nil {
			return err
		}
		if err := unix.Bind(fd, sa); err != nil {
			return fmt.Errorf("binding %s: %w", s.Local, err)
		}
		return nil
	}
	fail := func(s *image.InetSocket, err error) error {
		return fmt.Errorf("inet socket:[%d] %s %s -> %s: %w", s.ID, s.State, s.Local, s.Remote, err)
	}
	// Listeners first, then connections and the rest.
	for _, s := range t.Inet {
		if s.State != image.InetListen {
			continue
		}
		fd, err := create(s)
		if err == nil {
			err = bind(fd, s)
		}
		if err == nil {
			err = unix.Listen(fd, max(s.Backlog, 1))
		}
		if err != nil {
			return fail(s, err)
		}
	}
	var repaired []*image.InetSocket
	for _, s := range t.Inet {
		if s.State == image.InetListen || s.Type != unix.SOCK_STREAM {
			continue
		}
		fd, err := create(s)
		if err != nil {
			return fail(s, err)
		}
		if s.TCP == nil {
			if err := bind(fd, s); err != nil {
				return fail(s, err)
			}
			continue
		}
		if err := repairRestore(fd, s, bind); err != nil {
			return fail(s, err)
		}
		repaired = append(repaired, s)
	}
	if err := r.openUDP(create, bind); err != nil {
		return err
	}
	// Every connection exists: leave repair mode (a window probe tells the
	// peer we are back), then send what had never been transmitted.
	for _, s := range repaired {
		fd := int(r.inet[s.ID].Fd())
		if err := unix.SetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_REPAIR, unix.TCP_REPAIR_OFF); err != nil {
			return fail(s, fmt.Errorf("leaving repair mode: %w", err))
		}
		if u := s.TCP.Unsent; u > 0 {
			if err := sendAll(fd, s.TCP.SendQueue[len(s.TCP.SendQueue)-u:]); err != nil {
				return fail(s, fmt.Errorf("sending %d unsent bytes: %w", u, err))
			}
		}
	}
	for _, s := range t.Inet {
		fd := int(r.inet[s.ID].Fd())
		if s.SndBuf > 0 {
			_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_SNDBUFFORCE, s.SndBuf/2)
		}
		if s.RcvBuf > 0 {
			_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, s.RcvBuf/2)
		}
	}
	return nil
}

// repairRestore rebuilds an established TCP connection on fd in repair
// mode: sequence numbers, addresses (connect sends nothing in repair mode),
// negotiated options, timestamp clock, receive queue, the transmitted part
// of the send queue, and the window. The socket stays in repair mode.
func repairRestore(fd int, s *image.InetSocket, bind func(int, *image.InetSocket) error) error {
	t := s.TCP
	set := func(opt, v int, what string) error {
		if err := unix.SetsockoptInt(fd, unix.IPPROTO_TCP, opt, v); err != nil {
			return fmt.Errorf("%s: %w", what, err)
		}
		return nil
	}
	if err := set(unix.TCP_REPAIR, unix.TCP_REPAIR_ON, "TCP_REPAIR"); err != nil {
		return err
	}
	for _, q := range []struct {
		queue int
		seq   uint32
	}{{tcpSendQueue, t.SndSeq}, {tcpRecvQueue, t.RcvSeq}} {
		if err := set(unix.TCP_REPAIR_QUEUE, q.queue, "TCP_REPAIR_QUEUE"); err != nil {
			return err
		}
		if err := set(unix.TCP_QUEUE_SEQ, int(int32(q.seq)), "TCP_QUEUE_SEQ"); err != nil {
			return err
		}
	}
	if err := bind(fd, s); err != nil {
		return err
	}
	ra, err := inetAddr(s.Remote)
	if err != nil {
		return err
	}
	if err := unix.Connect(fd, ra); err != nil {
		return fmt.Errorf("connecting (repair) to %s: %w", s.Remote, err)
	}
	opts := []unix.TCPRepairOpt{{Code: unix.TCPOPT_MAXSEG, Val: uint32(t.MSS)}}
	if t.Wscale {
		opts = append(opts, unix.TCPRepairOpt{Code: unix.TCPOPT_WINDOW, Val: uint32(t.SndWscale) | uint32(t.RcvWscale)<<16})
	}
	if t.SACK {
		opts = append(opts, unix.TCPRepairOpt{Code: unix.TCPOPT_SACK_PERMITTED})
	}
	if t.Timestamp {
		opts = append(opts, unix.TCPRepairOpt{Code: unix.TCPOPT_TIMESTAMP})
	}
	if err := unix.SetsockoptTCPRepairOpt(fd, unix.IPPROTO_TCP, unix.TCP_REPAIR_OPTIONS, opts); err != nil {
		return fmt.Errorf("TCP_REPAIR_OPTIONS: %w", err)
	}
	if t.Timestamp {
		if err := set(unix.TCP_TIMESTAMP, int(int32(t.TSVal)), "TCP_TIMESTAMP"); err != nil {
			return err
		}
	}
	// Room for the refill: the saved buffer sizes are set at the end.
	need := 2*(len(t.RecvQueue)+len(t.SendQueue)) + 256<<10
	_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, need)
	_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_SNDBUFFORCE, need)
	if len(t.RecvQueue) > 0 {
		if err := set(unix.TCP_REPAIR_QUEUE, tcpRecvQueue, "TCP_REPAIR_QUEUE"); err != nil {
			return err
		}
		if err := sendAll(fd, t.RecvQueue); err != nil {
			return fmt.Errorf("refilling %d received bytes: %w", len(t.RecvQueue), err)
		}
	}
	if sent := len(t.SendQueue) - t.Unsent; sent > 0 {
		if err := set(unix.TCP_REPAIR_QUEUE, tcpSendQueue, "TCP_REPAIR_QUEUE"); err != nil {
			return err
		}
		if err := sendAll(fd, t.SendQueue[:sent]); err != nil {
			return fmt.Errorf("refilling %d sent, unacknowledged bytes: %w", sent, err)
		}
	}
	if w := t.Window; w != nil {
		b := make([]byte, 0, 20)
		for _, v := range []uint32{w.SndWl1, w.SndWnd, w.MaxWindow, w.RcvWnd, w.RcvWup} {
			b = binary.LittleEndian.AppendUint32(b, v)
		}
		if err := unix.SetsockoptString(fd, unix.IPPROTO_TCP, unix.TCP_REPAIR_WINDOW, string(b)); err != nil {
			return fmt.Errorf("TCP_REPAIR_WINDOW: %w", err)
		}
	}
	return nil
}

// sendAll writes b (a repair-mode queue accepts it in pieces).
func sendAll(fd int, b []byte) error {
	for len(b) > 0 {
		n, err := unix.SendmsgN(fd, b, nil, nil, unix.MSG_DONTWAIT|unix.MSG_NOSIGNAL)
		if err != nil {
			return err
		}
		if n == 0 {
			return errors.New("no progress")
		}
		b = b[n:]
	}
	return nil
}

// openUDP creates the UDP sockets: bound, refilled, connected. A queued
// datagram is sent from its sender's address: a socket of the tree bound
// there (before it is connected), or a temporary socket bound to it;
// failing both, from an unbound socket with a warning.
func (r *restorer) openUDP(create func(*image.InetSocket) (int, error), bind func(int, *image.InetSocket) error) error {
	var udp []*image.InetSocket
	byLocal := map[string]int{}
	for _, s := range r.tree.Inet {
		if s.Type != unix.SOCK_DGRAM {
			continue
		}
		fd, err := create(s)
		if err == nil {
			err = bind(fd, s)
		}
		if err != nil {
			return fmt.Errorf("udp socket:[%d] %s: %w", s.ID, s.Local, err)
		}
		udp = append(udp, s)
		if s.Local != "" {
			byLocal[s.Local] = fd
		}
	}
	for _, s := range udp {
		if len(s.Queue) == 0 {
			continue
		}
		to, err := inetAddr(s.Local)
		if err != nil {
			return fmt.Errorf("udp socket:[%d] has queued datagrams and no address: %w", s.ID, err)
		}
		_ = unix.SetsockoptInt(int(r.inet[s.ID].Fd()), unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, 4<<20)
		for _, d := range s.Queue {
			from, tmp := -1, false
			if fd, ok := byLocal[d.From]; ok {
				from = fd
			} else if fd, ok := byLocal[wildcard(d.From)]; ok {
				from = fd // bound to the wildcard address (autobind)
			} else if sa, err := inetAddr(d.From); err == nil {
				if fd, err := unix.Socket(s.Family, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0); err == nil {
					_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_REUSEADDR, 1)
					if unix.Bind(fd, sa) == nil {
						from, tmp = fd, true
					} else {
						unix.Close(fd)
					}
				}
			}
			if from < 0 {
				fd, err := unix.Socket(s.Family, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
				if err != nil {
					return err
				}
				from, tmp = fd, true
				r.warn("udp socket:[%d]: a datagram queued from %s is refilled from another address", s.ID, d.From)
			}
			_, err := unix.SendmsgN(from, d.Data, nil, to, unix.MSG_DONTWAIT)
			if tmp {
				unix.Close(from)
			}
			if err != nil {
				return fmt.Errorf("udp socket:[%d]: refilling a %d-byte datagram: %w", s.ID, len(d.Data), err)
			}
		}
	}
	for _, s := range udp {
		if s.Remote == "" {
			continue
		}
		sa, err := inetAddr(s.Remote)
		if err != nil {
			return err
		}
		if err := unix.Connect(int(r.inet[s.ID].Fd()), sa); err != nil {
			return fmt.Errorf("udp socket:[%d]: connecting to %s: %w", s.ID, s.Remote, err)
		}
	}
	return nil
}

// wildcard turns "127.0.0.1:53" into "0.0.0.0:53" ("[::]:53" for IPv6).
func wildcard(a string) string {
	ap, err := netip.ParseAddrPort(a)
	if err != nil {
		return ""
	}
	if ap.Addr().Is4() {
		return netip.AddrPortFrom(netip.IPv4Unspecified(), ap.Port()).String()
	}
	return netip.AddrPortFrom(netip.IPv6Unspecified(), ap.Port()).String()
}
