package dump

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"os"

	"github.com/ckpt/ckpt/internal/image"
	"golang.org/x/sys/unix"
)

// TCP states (include/net/tcp_states.h).
var tcpStates = map[int]string{1: "ESTABLISHED", 2: "SYN_SENT", 3: "SYN_RECV", 4: "FIN_WAIT1", 5: "FIN_WAIT2",
	6: "TIME_WAIT", 7: "CLOSE", 8: "CLOSE_WAIT", 9: "LAST_ACK", 10: "LISTEN", 11: "CLOSING"}

const (
	tcpRecvQueue  = 1
	tcpSendQueue  = 2
	tcpiOptTS     = 1
	tcpiOptSACK   = 2
	tcpiOptWscale = 4
)

// AddrString renders an inet socket address as a netip.AddrPort string
// ("" for nil or an unspecified address with port 0).
func AddrString(sa unix.Sockaddr) string {
	switch a := sa.(type) {
	case *unix.SockaddrInet4:
		ap := netip.AddrPortFrom(netip.AddrFrom4(a.Addr), uint16(a.Port))
		if a.Port == 0 && ap.Addr().IsUnspecified() {
			return ""
		}
		return ap.String()
	case *unix.SockaddrInet6:
		ap := netip.AddrPortFrom(netip.AddrFrom16(a.Addr), uint16(a.Port))
		if a.Port == 0 && ap.Addr().IsUnspecified() {
			return ""
		}
		return ap.String()
	}
	return ""
}

// dumpInet records a TCP or UDP socket. An established TCP connection is
// put in repair mode (TCP_REPAIR) before its state is read: from then on
// it sends nothing, and closing it sends neither FIN nor RST, so the peer
// keeps the connection. The repair-mode descriptor is kept in h until the
// tree is resumed (repair off) or killed (closed in repair: silent).
// It returns a refusal or an error.
func (h *Handle) dumpInet(f *os.File, ino uint64, family int, fd *image.FD, tree *image.Tree) (string, error) {
	sfd := int(f.Fd())
	typ, err := unix.GetsockoptInt(sfd, unix.SOL_SOCKET, unix.SO_TYPE)
	if err != nil {
		return "", err
	}
	proto, err := unix.GetsockoptInt(sfd, unix.SOL_SOCKET, unix.SO_PROTOCOL)
	if err != nil {
		return "", err
	}
	fam := map[int]string{unix.AF_INET: "AF_INET", unix.AF_INET6: "AF_INET6"}[family]
	what := fmt.Sprintf("an %s socket socket:[%d]", fam, ino)
	// Multipath TCP listeners (Go's net.Listen makes them by default since
	// Go 1.24) are recreated as such; their connections are refused below
	// unless the kernel fell back to plain TCP for them.
	mptcp := typ == unix.SOCK_STREAM && proto == unix.IPPROTO_MPTCP
	if !(typ == unix.SOCK_STREAM && proto == unix.IPPROTO_TCP) && !(typ == unix.SOCK_DGRAM && proto == unix.IPPROTO_UDP) && !mptcp {
		return fmt.Sprintf("%s of type %d protocol %d (only TCP and UDP)", what, typ, proto), nil
	}
	s := &image.InetSocket{ID: ino, Family: family, Type: typ, Protocol: proto, State: image.InetClosed}
	if sa, err := unix.Getsockname(sfd); err == nil {
		s.Local = AddrString(sa)
	}
	if sa, err := unix.Getpeername(sfd); err == nil {
		s.Remote = AddrString(sa)
	}
	geti := func(level, opt int) int {
		v, _ := unix.GetsockoptInt(sfd, level, opt)
		return v
	}
	s.ReuseAddr = geti(unix.SOL_SOCKET, unix.SO_REUSEADDR) != 0
	s.ReusePort = geti(unix.SOL_SOCKET, unix.SO_REUSEPORT) != 0
	s.KeepAlive = geti(unix.SOL_SOCKET, unix.SO_KEEPALIVE) != 0
	s.SndBuf = geti(unix.SOL_SOCKET, unix.SO_SNDBUF)
	s.RcvBuf = geti(unix.SOL_SOCKET, unix.SO_RCVBUF)
	if family == unix.AF_INET6 {
		s.V6Only = geti(unix.IPPROTO_IPV6, unix.IPV6_V6ONLY) != 0
	}
	if typ == unix.SOCK_DGRAM {
		if s.Remote != "" {
			s.State = image.InetEstablished
		}
		q, err := peekDatagrams(sfd)
		if err != nil {
			return "", fmt.Errorf("reading the queue of socket:[%d]: %w", ino, err)
		}
		s.Queue = q
		tree.Inet = append(tree.Inet, s)
		fd.Kind, fd.Inet = image.FDInet, ino
		return "", nil
	}
	s.NoDelay = geti(unix.IPPROTO_TCP, unix.TCP_NODELAY) != 0
	info := make([]byte, 256)
	if _, err := getsockoptBytes(sfd, unix.IPPROTO_TCP, unix.TCP_INFO, info); err != nil {
		return "", fmt.Errorf("TCP_INFO: %w", err)
	}
	state := int(info[0])
	if mptcp && state != 10 {
		return fmt.Sprintf("a Multipath TCP socket socket:[%d] %s -> %s in state %s (only MPTCP listeners)", ino, s.Local, s.Remote, tcpStates[state]), nil
	}
	switch state {
	case 10: // LISTEN
		if pending := binary.LittleEndian.Uint32(info[24:]); pending > 0 {
			return fmt.Sprintf("a listening TCP socket on %s with %d connections not yet accepted", s.Local, pending), nil
		}
		s.State, s.Backlog = image.InetListen, int(binary.LittleEndian.Uint32(info[28:]))
	case 7: // CLOSE: never connected (maybe bound)
	case 1: // ESTABLISHED
		s.State = image.InetEstablished
		t, err := h.repairDump(f, info)
		if err != nil {
			return "", fmt.Errorf("socket:[%d] %s -> %s: %w", ino, s.Local, s.Remote, err)
		}
		s.TCP = t
	default:
		return fmt.Sprintf("a TCP socket socket:[%d] %s -> %s in state %s (only LISTEN, ESTABLISHED and unconnected sockets)",
			ino, s.Local, s.Remote, tcpStates[state]), nil
	}
	tree.Inet = append(tree.Inet, s)
	fd.Kind, fd.Inet = image.FDInet, ino
	return "", nil
}

// repairDump puts an established connection in repair mode and reads its
// sequence numbers, queues, window and negotiated options.
func (h *Handle) repairDump(f *os.File, info []byte) (*image.TCPState, error) {
	sfd := int(f.Fd())
	if err := unix.SetsockoptInt(sfd, unix.IPPROTO_TCP, unix.TCP_REPAIR, unix.TCP_REPAIR_ON); err != nil {
		return nil, fmt.Errorf("TCP_REPAIR: %w", err)
	}
	// Keep a descriptor: repair mode is left on resume, or the socket is
	// closed silently after a kill.
	dup, err := unix.FcntlInt(f.Fd(), unix.F_DUPFD_CLOEXEC, 0)
	if err != nil {
		_ = unix.SetsockoptInt(sfd, unix.IPPROTO_TCP, unix.TCP_REPAIR, unix.TCP_REPAIR_OFF_NO_WP)
		return nil, err
	}
	h.repair = append(h.repair, os.NewFile(uintptr(dup), "tcp repair"))
	t := &image.TCPState{}
	opts := info[5]
	t.Timestamp = opts&tcpiOptTS != 0
	t.SACK = opts&tcpiOptSACK != 0
	t.Wscale = opts&tcpiOptWscale != 0
	t.SndWscale, t.RcvWscale = int(info[6]&0xf), int(info[6]>>4)
	outq, err := unix.IoctlGetInt(sfd, unix.SIOCOUTQ)
	if err != nil {
		return nil, fmt.Errorf("SIOCOUTQ: %w", err)
	}
	unsent, err := unix.IoctlGetInt(sfd, unix.SIOCOUTQNSD)
	if err != nil {
		return nil, fmt.Errorf("SIOCOUTQNSD: %w", err)
	}
	inq, err := unix.IoctlGetInt(sfd, unix.SIOCINQ)
	if err != nil {
		return nil, fmt.Errorf("SIOCINQ: %w", err)
	}
	queue := func(q, n int) (uint32, []byte, error) {
		if err := unix.SetsockoptInt(sfd, unix.IPPROTO_TCP, unix.TCP_REPAIR_QUEUE, q); err != nil {
			return 0, nil, fmt.Errorf("TCP_REPAIR_QUEUE: %w", err)
		}
		seq, err := unix.GetsockoptInt(sfd, unix.IPPROTO_TCP, unix.TCP_QUEUE_SEQ)
		if err != nil {
			return 0, nil, fmt.Errorf("TCP_QUEUE_SEQ: %w", err)
		}
		if n == 0 {
			return uint32(seq), nil, nil
		}
		buf := make([]byte, n)
		got, _, err := unix.Recvfrom(sfd, buf, unix.MSG_PEEK|unix.MSG_DONTWAIT)
		if err != nil {
			return 0, nil, fmt.Errorf("peeking %d queued bytes: %w", n, err)
		}
		if got != n {
			return 0, nil, fmt.Errorf("peeked %d of %d queued bytes", got, n)
		}
		return uint32(seq), buf, nil
	}
	rcvNxt, rq, err := queue(tcpRecvQueue, inq)
	if err != nil {
		return nil, err
	}
	writeSeq, sq, err := queue(tcpSendQueue, outq)
	if err != nil {
		return nil, err
	}
	_ = unix.SetsockoptInt(sfd, unix.IPPROTO_TCP, unix.TCP_REPAIR_QUEUE, 0)
	t.RcvSeq, t.RecvQueue = rcvNxt-uint32(inq), rq
	t.SndSeq, t.SendQueue, t.Unsent = writeSeq-uint32(outq), sq, unsent
	if t.MSS, err = unix.GetsockoptInt(sfd, unix.IPPROTO_TCP, unix.TCP_MAXSEG); err != nil {
		return nil, fmt.Errorf("TCP_MAXSEG: %w", err)
	}
	if t.Timestamp {
		ts, err := unix.GetsockoptInt(sfd, unix.IPPROTO_TCP, unix.TCP_TIMESTAMP)
		if err != nil {
			return nil, fmt.Errorf("TCP_TIMESTAMP: %w", err)
		}
		t.TSVal = uint32(ts)
	}
	w := make([]byte, 20)
	if n, err := getsockoptBytes(sfd, unix.IPPROTO_TCP, unix.TCP_REPAIR_WINDOW, w); err != nil || n != 20 {
		return nil, fmt.Errorf("TCP_REPAIR_WINDOW: %d bytes, %v", n, err)
	}
	le := binary.LittleEndian
	t.Window = &image.TCPWindow{SndWl1: le.Uint32(w), SndWnd: le.Uint32(w[4:]), MaxWindow: le.Uint32(w[8:]),
		RcvWnd: le.Uint32(w[12:]), RcvWup: le.Uint32(w[16:])}
	return t, nil
}

// releaseRepair takes the dumped connections out of repair mode (resume:
// without a window probe) or just drops our descriptors (kill: the sockets
// close in repair mode, silently).
func (h *Handle) releaseRepair(resume bool) error {
	var errs []error
	for _, f := range h.repair {
		if resume {
			if err := unix.SetsockoptInt(int(f.Fd()), unix.IPPROTO_TCP, unix.TCP_REPAIR, unix.TCP_REPAIR_OFF_NO_WP); err != nil {
				errs = append(errs, fmt.Errorf("leaving TCP repair mode: %w", err))
			}
		}
		f.Close()
	}
	h.repair = nil
	return errors.Join(errs...)
}

// peekDatagrams reads the datagrams queued on a UDP socket without
// consuming them (MSG_PEEK with SO_PEEK_OFF), with their senders.
func peekDatagrams(fd int) ([]image.Datagram, error) {
	q, err := unix.IoctlGetInt(fd, unix.SIOCINQ) // size of the first datagram
	if err != nil || q == 0 {
		// Nothing queued (an empty first datagram reads as 0 too; it is
		// not saved).
		return nil, nil
	}
	old, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_PEEK_OFF)
	if err != nil {
		return nil, err
	}
	if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_PEEK_OFF, 0); err != nil {
		return nil, err
	}
	defer unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_PEEK_OFF, old) //nolint:errcheck
	var out []image.Datagram
	buf := make([]byte, 1<<16)
	for i := 0; ; i++ {
		if i > 1<<20 {
			return nil, errors.New("queue does not end")
		}
		n, _, _, from, err := unix.Recvmsg(fd, buf, nil, unix.MSG_PEEK|unix.MSG_DONTWAIT)
		if err == unix.EAGAIN {
			break
		}
		if err != nil {
			return nil, err
		}
		if n == 0 {
			break
		}
		out = append(out, image.Datagram{From: AddrString(from), Data: append([]byte(nil), buf[:n]...)})
	}
	return out, nil
}
