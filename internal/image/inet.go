package image

import (
	"fmt"
	"net/netip"
)

// FDInet is an AF_INET or AF_INET6 socket (TCP or UDP) in Tree.Inet.
const FDInet = "inet"

// InetSocket is a TCP or UDP socket of the tree, identified by its inode.
type InetSocket struct {
	ID       uint64 `json:"id"`     // inode
	Family   int    `json:"family"` // AF_INET, AF_INET6
	Type     int    `json:"type"`   // SOCK_STREAM, SOCK_DGRAM
	Protocol int    `json:"protocol"`
	State    string `json:"state"` // InetListen, InetEstablished, InetClosed (bound or not)
	// Local and Remote are netip.AddrPort strings ("127.0.0.1:80",
	// "[::1]:80"); empty when unbound / not connected.
	Local   string `json:"local,omitempty"`
	Remote  string `json:"remote,omitempty"`
	Backlog int    `json:"backlog,omitempty"`

	ReuseAddr bool `json:"reuseaddr,omitempty"`
	ReusePort bool `json:"reuseport,omitempty"`
	KeepAlive bool `json:"keepalive,omitempty"`
	NoDelay   bool `json:"nodelay,omitempty"`
	V6Only    bool `json:"v6only,omitempty"`
	SndBuf    int  `json:"sndbuf,omitempty"` // as getsockopt reports it
	RcvBuf    int  `json:"rcvbuf,omitempty"`

	TCP   *TCPState  `json:"tcp,omitempty"`   // an established connection
	Queue []Datagram `json:"queue,omitempty"` // UDP: datagrams waiting to be read
}

// Inet socket states.
const (
	InetListen      = "listen"
	InetEstablished = "established"
	InetClosed      = "closed" // neither listening nor connected (maybe bound); UDP always
)

// TCPState is what TCP_REPAIR needs to rebuild an established connection.
type TCPState struct {
	SndSeq    uint32 `json:"snd_seq"` // sequence number of the first byte of SendQueue
	RcvSeq    uint32 `json:"rcv_seq"` // sequence number of the first byte of RecvQueue
	SendQueue []byte `json:"send_queue,omitempty"`
	Unsent    int    `json:"unsent,omitempty"` // bytes at the end of SendQueue never transmitted
	RecvQueue []byte `json:"recv_queue,omitempty"`
	MSS       int    `json:"mss"`
	SACK      bool   `json:"sack,omitempty"`
	Wscale    bool   `json:"wscale,omitempty"`
	SndWscale int    `json:"snd_wscale,omitempty"`
	RcvWscale int    `json:"rcv_wscale,omitempty"`
	Timestamp bool   `json:"timestamp,omitempty"`
	TSVal     uint32 `json:"tsval,omitempty"` // TCP_TIMESTAMP at dump
	// Window is struct tcp_repair_window.
	Window *TCPWindow `json:"window,omitempty"`
}

// TCPWindow is struct tcp_repair_window.
type TCPWindow struct {
	SndWl1    uint32 `json:"snd_wl1"`
	SndWnd    uint32 `json:"snd_wnd"`
	MaxWindow uint32 `json:"max_window"`
	RcvWnd    uint32 `json:"rcv_wnd"`
	RcvWup    uint32 `json:"rcv_wup"`
}

// Datagram is a queued UDP datagram and its sender.
type Datagram struct {
	From string `json:"from,omitempty"`
	Data []byte `json:"data"`
}

// InetSock returns the inet socket with id, or nil.
func (t *Tree) InetSock(id uint64) *InetSocket {
	for _, s := range t.Inet {
		if s.ID == id {
			return s
		}
	}
	return nil
}

func (s *InetSocket) validate() error {
	for _, a := range []string{s.Local, s.Remote} {
		if a == "" {
			continue
		}
		if _, err := netip.ParseAddrPort(a); err != nil {
			return invalid("inet socket %d: address %q: %v", s.ID, a, err)
		}
	}
	for _, d := range s.Queue {
		if d.From != "" {
			if _, err := netip.ParseAddrPort(d.From); err != nil {
				return invalid("inet socket %d: datagram sender %q: %v", s.ID, d.From, err)
			}
		}
	}
	switch s.State {
	case InetListen:
		if s.Local == "" {
			return invalid("inet socket %d: listening without an address", s.ID)
		}
	case InetEstablished:
		if s.Type == 1 && (s.TCP == nil || s.Local == "" || s.Remote == "") {
			return invalid("inet socket %d: established TCP connection without its state or addresses", s.ID)
		}
		if s.TCP != nil && (s.TCP.Unsent < 0 || s.TCP.Unsent > len(s.TCP.SendQueue)) {
			return invalid("inet socket %d: %d unsent bytes of a %d-byte send queue", s.ID, s.TCP.Unsent, len(s.TCP.SendQueue))
		}
	case InetClosed:
	default:
		return invalid("inet socket %d: unknown state %q", s.ID, s.State)
	}
	return nil
}

func inetStr(s *InetSocket) string {
	proto := map[int]string{1: "tcp", 2: "udp"}[s.Type]
	if proto == "" {
		proto = fmt.Sprintf("type %d", s.Type)
	}
	if s.Family == 10 {
		proto += "6"
	}
	out := fmt.Sprintf("socket:[%d] %s %s", s.ID, proto, s.State)
	if s.Local != "" {
		out += " " + s.Local
	}
	if s.Remote != "" {
		out += " -> " + s.Remote
	}
	if s.TCP != nil {
		out += fmt.Sprintf(", %d bytes to send (%d unsent), %d to read", len(s.TCP.SendQueue), s.TCP.Unsent, len(s.TCP.RecvQueue))
	}
	if len(s.Queue) > 0 {
		out += fmt.Sprintf(", %d datagrams queued", len(s.Queue))
	}
	return out
}
