package container

import (
	"encoding/binary"
	"fmt"
	"net/netip"

	"golang.org/x/sys/unix"
)

// Just enough rtnetlink to create a veth pair whose peer lands in another
// network namespace, give interfaces addresses and delete a link: the
// calls act in the network namespace of the calling thread.

const vethInfoPeer = 1 // VETH_INFO_PEER

type nlmsg struct{ b []byte }

func newNlmsg(typ, flags uint16) *nlmsg {
	m := &nlmsg{b: make([]byte, unix.SizeofNlMsghdr)}
	binary.NativeEndian.PutUint16(m.b[4:], typ)
	binary.NativeEndian.PutUint16(m.b[6:], flags|unix.NLM_F_REQUEST|unix.NLM_F_ACK)
	binary.NativeEndian.PutUint32(m.b[8:], 1) // sequence
	return m
}

func (m *nlmsg) align() {
	for len(m.b)%4 != 0 {
		m.b = append(m.b, 0)
	}
}

// ifinfomsg: family, pad, type, index, flags, change.
func (m *nlmsg) ifinfo(index int32) {
	var h [unix.SizeofIfInfomsg]byte
	binary.NativeEndian.PutUint32(h[4:], uint32(index))
	m.b = append(m.b, h[:]...)
}

func (m *nlmsg) attr(typ uint16, data []byte) {
	m.align()
	var h [4]byte
	binary.NativeEndian.PutUint16(h[0:], uint16(4+len(data)))
	binary.NativeEndian.PutUint16(h[2:], typ)
	m.b = append(append(m.b, h[:]...), data...)
}

// nest starts a nested attribute; the returned func closes it.
func (m *nlmsg) nest(typ uint16) func() {
	m.align()
	start := len(m.b)
	m.b = append(m.b, 0, 0, 0, 0)
	binary.NativeEndian.PutUint16(m.b[start+2:], typ|unix.NLA_F_NESTED)
	return func() {
		binary.NativeEndian.PutUint16(m.b[start:], uint16(len(m.b)-start))
	}
}

func cstr(s string) []byte { return append([]byte(s), 0) }

func u32(v uint32) []byte {
	var b [4]byte
	binary.NativeEndian.PutUint32(b[:], v)
	return b[:]
}

// do sends m on a new rtnetlink socket and waits for the kernel's ack.
func (m *nlmsg) do(what string) error {
	m.align()
	binary.NativeEndian.PutUint32(m.b[0:], uint32(len(m.b)))
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.NETLINK_ROUTE)
	if err != nil {
		return fmt.Errorf("%s: netlink socket: %w", what, err)
	}
	defer unix.Close(fd)
	if err := unix.Sendto(fd, m.b, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	buf := make([]byte, 8192)
	for {
		n, _, err := unix.Recvfrom(fd, buf, 0)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return fmt.Errorf("%s: %w", what, err)
		}
		for b := buf[:n]; len(b) >= unix.SizeofNlMsghdr; {
			l := int(binary.NativeEndian.Uint32(b[0:]))
			typ := binary.NativeEndian.Uint16(b[4:])
			if l < unix.SizeofNlMsghdr || l > len(b) {
				return fmt.Errorf("%s: malformed netlink reply", what)
			}
			if typ == unix.NLMSG_ERROR && l >= unix.SizeofNlMsghdr+4 {
				if e := int32(binary.NativeEndian.Uint32(b[unix.SizeofNlMsghdr:])); e != 0 {
					return fmt.Errorf("%s: %w", what, unix.Errno(-e))
				}
				return nil
			}
			b = b[min((l+3)&^3, len(b)):]
		}
	}
}

// createVeth creates the pair host <-> peer with the peer in the network
// namespace of file descriptor nsFD.
func createVeth(host, peer string, nsFD int) error {
	m := newNlmsg(unix.RTM_NEWLINK, unix.NLM_F_CREATE|unix.NLM_F_EXCL)
	m.ifinfo(0)
	m.attr(unix.IFLA_IFNAME, cstr(host))
	endInfo := m.nest(unix.IFLA_LINKINFO)
	m.attr(unix.IFLA_INFO_KIND, cstr("veth"))
	endData := m.nest(unix.IFLA_INFO_DATA)
	endPeer := m.nest(vethInfoPeer)
	m.ifinfo(0)
	m.attr(unix.IFLA_IFNAME, cstr(peer))
	m.attr(unix.IFLA_NET_NS_FD, u32(uint32(nsFD)))
	m.align()
	endPeer()
	endData()
	endInfo()
	return m.do(fmt.Sprintf("creating veth pair %s/%s", host, peer))
}

// deleteLink removes an interface of the calling thread's namespace.
func deleteLink(name string) error {
	m := newNlmsg(unix.RTM_DELLINK, 0)
	m.ifinfo(0)
	m.attr(unix.IFLA_IFNAME, cstr(name))
	return m.do("deleting interface " + name)
}

// addAddr gives interface index the address prefix (e.g. 10.200.0.2/24).
func addAddr(index int, prefix netip.Prefix) error {
	m := newNlmsg(unix.RTM_NEWADDR, unix.NLM_F_CREATE|unix.NLM_F_EXCL)
	fam := byte(unix.AF_INET)
	if prefix.Addr().Is6() {
		fam = unix.AF_INET6
	}
	// ifaddrmsg: family, prefixlen, flags, scope, index.
	var h [unix.SizeofIfAddrmsg]byte
	h[0], h[1] = fam, byte(prefix.Bits())
	binary.NativeEndian.PutUint32(h[4:], uint32(index))
	m.b = append(m.b, h[:]...)
	a := prefix.Addr().AsSlice()
	m.attr(unix.IFA_LOCAL, a)
	m.attr(unix.IFA_ADDRESS, a)
	return m.do(fmt.Sprintf("adding address %s", prefix))
}
