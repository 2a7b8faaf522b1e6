package dump

import (
	"encoding/binary"
	"errors"
	"fmt"
	"strings"

	"golang.org/x/sys/unix"
)

// UnixDiag is what NETLINK_SOCK_DIAG reports about one AF_UNIX socket.
type UnixDiag struct {
	Ino      uint64
	Type     int
	State    int // TCP_ESTABLISHED (1), TCP_CLOSE (7), TCP_LISTEN (10)
	Name     string
	Abstract bool
	Peer     uint64   // 0: none, or the peer is gone
	Pending  []uint64 // listening: connections not yet accepted
	RQueue   uint32   // listening: pending connections; others: bytes queued
	WQueue   uint32   // listening: backlog
	Shutdown int
	VFSIno   uint64 // inode and device of the bound socket file
	VFSDev   uint64
}

const (
	sockDiagByFamily = 20
	udiagShowName    = 1
	udiagShowVFS     = 2
	udiagShowPeer    = 4
	udiagShowIcons   = 8
	udiagShowRqlen   = 16
	unixDiagName     = 0
	unixDiagVFS      = 1
	unixDiagPeer     = 2
	unixDiagIcons    = 3
	unixDiagRqlen    = 4
	unixDiagShutdown = 6
	tcpListen        = 10
	tcpEstablished   = 1
)

// errNoSocket is returned by unixDiagOne for an inode that is not an
// AF_UNIX socket of this network namespace.
var errNoSocket = errors.New("not an AF_UNIX socket of this network namespace")

// UnixSockets lists the AF_UNIX sockets of this network namespace (ino 0),
// or the one with inode ino.
func UnixSockets(ino uint64) ([]*UnixDiag, error) {
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, unix.NETLINK_SOCK_DIAG)
	if err != nil {
		return nil, fmt.Errorf("sock_diag: %w", err)
	}
	defer unix.Close(fd)
	flags := uint16(unix.NLM_F_REQUEST)
	if ino == 0 {
		flags |= unix.NLM_F_DUMP
	}
	// nlmsghdr + unix_diag_req
	req := make([]byte, 16+24)
	binary.LittleEndian.PutUint32(req[0:], uint32(len(req)))
	binary.LittleEndian.PutUint16(req[4:], sockDiagByFamily)
	binary.LittleEndian.PutUint16(req[6:], flags)
	binary.LittleEndian.PutUint32(req[8:], 1)
	r := req[16:]
	r[0] = unix.AF_UNIX
	binary.LittleEndian.PutUint32(r[4:], ^uint32(0)) // all states
	binary.LittleEndian.PutUint32(r[8:], uint32(ino))
	binary.LittleEndian.PutUint32(r[12:], udiagShowName|udiagShowVFS|udiagShowPeer|udiagShowIcons|udiagShowRqlen)
	binary.LittleEndian.PutUint32(r[16:], ^uint32(0)) // no cookie
	binary.LittleEndian.PutUint32(r[20:], ^uint32(0))
	if err := unix.Sendto(fd, req, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return nil, fmt.Errorf("sock_diag: %w", err)
	}
	var out []*UnixDiag
	buf := make([]byte, 1<<16)
	for {
		n, _, err := unix.Recvfrom(fd, buf, 0)
		if err != nil {
			return nil, fmt.Errorf("sock_diag: %w", err)
		}
		b := buf[:n]
		for len(b) >= 16 {
			l := int(binary.LittleEndian.Uint32(b))
			typ := binary.LittleEndian.Uint16(b[4:])
			if l < 16 || l > len(b) {
				return nil, errors.New("sock_diag: truncated message")
			}
			msg := b[16:l]
			b = b[(l+3)&^3:]
			switch typ {
			case unix.NLMSG_DONE:
				return out, nil
			case unix.NLMSG_ERROR:
				e := int32(binary.LittleEndian.Uint32(msg))
				if e == 0 {
					continue
				}
				if unix.Errno(-e) == unix.ENOENT {
					return nil, errNoSocket
				}
				return nil, fmt.Errorf("sock_diag: %w", unix.Errno(-e))
			case sockDiagByFamily:
				d, err := parseUnixDiag(msg)
				if err != nil {
					return nil, err
				}
				out = append(out, d)
				if ino != 0 {
					return out, nil
				}
			}
		}
	}
}

func parseUnixDiag(m []byte) (*UnixDiag, error) {
	if len(m) < 16 {
		return nil, errors.New("sock_diag: short unix_diag_msg")
	}
	d := &UnixDiag{Type: int(m[1]), State: int(m[2]), Ino: uint64(binary.LittleEndian.Uint32(m[4:]))}
	a := m[16:]
	for len(a) >= 4 {
		l := int(binary.LittleEndian.Uint16(a))
		typ := binary.LittleEndian.Uint16(a[2:])
		if l < 4 || l > len(a) {
			return nil, errors.New("sock_diag: bad attribute")
		}
		v := a[4:l]
		a = a[min((l+3)&^3, len(a)):]
		switch typ {
		case unixDiagName:
			if len(v) > 0 && v[0] == 0 {
				d.Abstract, d.Name = true, string(v[1:])
			} else {
				d.Name = strings.TrimRight(string(v), "\x00")
			}
		case unixDiagVFS:
			if len(v) >= 8 {
				d.VFSIno = uint64(binary.LittleEndian.Uint32(v))
				d.VFSDev = uint64(binary.LittleEndian.Uint32(v[4:]))
			}
		case unixDiagPeer:
			if len(v) >= 4 {
				d.Peer = uint64(binary.LittleEndian.Uint32(v))
			}
		case unixDiagIcons:
			for i := 0; i+4 <= len(v); i += 4 {
				d.Pending = append(d.Pending, uint64(binary.LittleEndian.Uint32(v[i:])))
			}
		case unixDiagRqlen:
			if len(v) >= 8 {
				d.RQueue = binary.LittleEndian.Uint32(v)
				d.WQueue = binary.LittleEndian.Uint32(v[4:])
			}
		case unixDiagShutdown:
			if len(v) >= 1 {
				d.Shutdown = int(v[0])
			}
		}
	}
	return d, nil
}

// UnixPathInUse reports whether a live AF_UNIX socket of this network
// namespace is bound to the socket file with this device and inode.
func UnixPathInUse(dev, ino uint64) (bool, error) {
	all, err := UnixSockets(0)
	if err != nil {
		return false, err
	}
	for _, d := range all {
		// unix_diag reports the kernel's internal dev_t (major<<20|minor).
		if d.VFSIno == ino && d.VFSDev != 0 && unix.Mkdev(uint32(d.VFSDev>>20), uint32(d.VFSDev&0xfffff)) == dev {
			return true, nil
		}
	}
	return false, nil
}
