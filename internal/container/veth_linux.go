package container

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strings"

	"github.com/ckpt/ckpt/internal/image"
	"github.com/ckpt/ckpt/internal/nsenter"
	"golang.org/x/sys/unix"
)

// VethInside is the name of the container's end of its veth pair.
const VethInside = "eth0"

// ParseVeth reads the --veth value HOST_CIDR,CONTAINER_CIDR (e.g.
// 10.200.0.1/24,10.200.0.2/24) of container name into the interface the
// container gets: eth0 with the container's address, its peer on the host
// named ckpt-XXXXXXXX (from the name, as interface names have at most 15
// bytes) with the host's.
func ParseVeth(name, spec string) (*image.NetIf, error) {
	host, inside, ok := strings.Cut(spec, ",")
	if !ok {
		return nil, fmt.Errorf("--veth %q: want HOST_CIDR,CONTAINER_CIDR (e.g. 10.200.0.1/24,10.200.0.2/24)", spec)
	}
	hp, err := netip.ParsePrefix(strings.TrimSpace(host))
	if err != nil {
		return nil, fmt.Errorf("--veth %q: host address: %w", spec, err)
	}
	cp, err := netip.ParsePrefix(strings.TrimSpace(inside))
	if err != nil {
		return nil, fmt.Errorf("--veth %q: container address: %w", spec, err)
	}
	if hp.Addr() == cp.Addr() {
		return nil, fmt.Errorf("--veth %q: the host and the container need different addresses", spec)
	}
	sum := sha256.Sum256([]byte(name))
	return &image.NetIf{Name: VethInside, Up: true, Veth: true, Peer: "ckpt-" + hex.EncodeToString(sum[:4]),
		Addrs: []string{cp.String()}, PeerAddrs: []string{hp.String()}}, nil
}

// SetupVeth creates the veth pair v (an image.NetIf with Veth set) between
// the host and network namespace ns (e.g. /proc/PID/ns/net), gives both
// ends their addresses and brings them up. A host end of the same name left
// by an earlier incarnation of the container (its namespace not yet freed)
// is deleted first.
func SetupVeth(ns *os.File, v image.NetIf) error {
	if !v.Veth || v.Peer == "" {
		return fmt.Errorf("interface %s is not a veth with a host end", v.Name)
	}
	if _, err := net.InterfaceByName(v.Peer); err == nil {
		if err := deleteLink(v.Peer); err != nil && !errors.Is(err, unix.ENODEV) {
			return err
		}
	}
	if err := createVeth(v.Peer, v.Name, int(ns.Fd())); err != nil {
		return err
	}
	undo := func(err error) error {
		_ = deleteLink(v.Peer)
		return err
	}
	if err := addrsUp(v.Peer, v.PeerAddrs); err != nil {
		return undo(err)
	}
	if err := nsenter.Run(ns, unix.CLONE_NEWNET, func() error { return addrsUp(v.Name, v.Addrs) }); err != nil {
		return undo(err)
	}
	return nil
}

// addrsUp gives interface name (of the calling thread's namespace) addrs
// and brings it up.
func addrsUp(name string, addrs []string) error {
	i, err := net.InterfaceByName(name)
	if err != nil {
		return fmt.Errorf("interface %s: %w", name, err)
	}
	for _, a := range addrs {
		p, err := netip.ParsePrefix(a)
		if err != nil {
			return fmt.Errorf("interface %s: address %q: %w", name, a, err)
		}
		if err := addAddr(i.Index, p); err != nil && !errors.Is(err, unix.EEXIST) {
			return fmt.Errorf("interface %s: %w", name, err)
		}
	}
	return linkUp(name)
}

// ifAddrs lists the addresses of interface i worth restoring: IPv6
// link-local ones come back by themselves.
func ifAddrs(i *net.Interface) ([]string, error) {
	as, err := i.Addrs()
	if err != nil {
		return nil, fmt.Errorf("interface %s: %w", i.Name, err)
	}
	var out []string
	for _, a := range as {
		n, ok := a.(*net.IPNet)
		if !ok || n.IP.IsLinkLocalUnicast() {
			continue
		}
		ones, _ := n.Mask.Size()
		ip, _ := netip.AddrFromSlice(n.IP)
		out = append(out, netip.PrefixFrom(ip.Unmap(), ones).String())
	}
	return out, nil
}
