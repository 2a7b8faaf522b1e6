package group

import (
	"bufio"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
)

// Control messages between the coordinator and a rank: JSON, one per line,
// over one TCP connection per rank (docs/GROUP.md).
const (
	MsgHello    = "hello"    // rank: Group, Rank, Size, Addr (where peers reach it), Node
	MsgWelcome  = "welcome"  // coordinator: Round, Checkpoint, Channels: the recovery line for this rank (Round 0: none)
	MsgPeers    = "peers"    // coordinator: Peers, every rank's address, once all registered
	MsgPrepare  = "prepare"  // coordinator: take a local checkpoint for Round
	MsgPrepared = "prepared" // rank: Round, Checkpoint, Channels (recorded incoming messages, by sender)
	MsgFailed   = "failed"   // rank: Round, Error
	MsgCommit   = "commit"   // coordinator: Round is committed, Checkpoint: the group manifest
	MsgAbort    = "abort"    // coordinator: Round is aborted
	MsgRequest  = "request"  // rank: please start a round
	MsgDone     = "done"     // rank: finished; waits for exit
	MsgExit     = "exit"     // coordinator: every rank is done (Error: a rank went away, the group is lost)
)

// Wire is a control message.
type Wire struct {
	Type       string           `json:"type"`
	Group      string           `json:"group,omitempty"`
	Rank       int              `json:"rank"`
	Size       int              `json:"size,omitempty"`
	Addr       string           `json:"addr,omitempty"`
	Node       string           `json:"node,omitempty"`
	Round      uint64           `json:"round,omitempty"`
	Checkpoint string           `json:"checkpoint,omitempty"`
	Channels   map[int][][]byte `json:"channels,omitempty"`
	Peers      []string         `json:"peers,omitempty"`
	Error      string           `json:"error,omitempty"`
}

// Conn is a control connection.
type Conn struct {
	c   net.Conn
	dec *json.Decoder
	mu  sync.Mutex
	enc *json.Encoder
}

// NewConn wraps a TCP connection.
func NewConn(c net.Conn) *Conn {
	return &Conn{c: c, dec: json.NewDecoder(bufio.NewReader(c)), enc: json.NewEncoder(c)}
}

// Send writes one message.
func (c *Conn) Send(w Wire) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.enc.Encode(w)
}

// Recv reads one message.
func (c *Conn) Recv() (Wire, error) {
	var w Wire
	err := c.dec.Decode(&w)
	return w, err
}

// Close closes the connection.
func (c *Conn) Close() error { return c.c.Close() }

// Peer link frames: a byte of kind, the snapshot (u64), the length (u32)
// and the data, little-endian. Each ordered pair of ranks has its own TCP
// connection, dialled by the sender: a FIFO channel.
const (
	FrameHello  = 1 // data: the sender's rank (u32), then its listening address
	FrameData   = 2 // an application message (logged ranks: Snap is its SSN)
	FrameMarker = 3 // a Chandy-Lamport marker of snapshot Snap
	FrameCtl    = 4 // logged ranks: a message-logging control message (JSON)
)

// Frame is one unit on a peer link.
type Frame struct {
	Kind byte
	Snap uint64
	Data []byte
}

// MaxMessage bounds an application message.
const MaxMessage = 64 << 20

// WriteFrame writes f to w.
func WriteFrame(w io.Writer, f Frame) error {
	var h [13]byte
	h[0] = f.Kind
	binary.LittleEndian.PutUint64(h[1:], f.Snap)
	binary.LittleEndian.PutUint32(h[9:], uint32(len(f.Data)))
	if len(f.Data) < 4096 {
		_, err := w.Write(append(h[:], f.Data...))
		return err
	}
	if _, err := w.Write(h[:]); err != nil {
		return err
	}
	_, err := w.Write(f.Data)
	return err
}

// ReadFrame reads one frame from r.
func ReadFrame(r io.Reader) (Frame, error) {
	var h [13]byte
	if _, err := io.ReadFull(r, h[:]); err != nil {
		return Frame{}, err
	}
	f := Frame{Kind: h[0], Snap: binary.LittleEndian.Uint64(h[1:])}
	n := binary.LittleEndian.Uint32(h[9:])
	if n > MaxMessage {
		return Frame{}, fmt.Errorf("peer frame of %d bytes exceeds %d", n, MaxMessage)
	}
	f.Data = make([]byte, n)
	if _, err := io.ReadFull(r, f.Data); err != nil {
		return Frame{}, err
	}
	return f, nil
}

// EncodeMessages packs recorded messages into a channel object: each a
// little-endian u32 length and the bytes.
func EncodeMessages(ms [][]byte) []byte {
	var b []byte
	for _, m := range ms {
		b = binary.LittleEndian.AppendUint32(b, uint32(len(m)))
		b = append(b, m...)
	}
	return b
}

// DecodeMessages unpacks a channel object.
func DecodeMessages(b []byte) ([][]byte, error) {
	var out [][]byte
	for len(b) > 0 {
		if len(b) < 4 {
			return nil, errors.New("channel object: truncated length")
		}
		n := binary.LittleEndian.Uint32(b)
		b = b[4:]
		if uint64(n) > uint64(len(b)) {
			return nil, errors.New("channel object: truncated message")
		}
		out = append(out, b[:n:n])
		b = b[n:]
	}
	return out, nil
}

// ChannelObject names the object holding the messages recorded on the
// channel from one rank to another.
func ChannelObject(from, to int) string { return fmt.Sprintf("channel/%d-%d", from, to) }

// Hello is the first frame on a peer link: the dialling rank and where it
// listens.
func Hello(rank int, addr string) Frame {
	return Frame{Kind: FrameHello, Data: append(binary.LittleEndian.AppendUint32(nil, uint32(rank)), addr...)}
}

// ParseHello reads a Hello frame.
func ParseHello(f Frame) (rank int, addr string, err error) {
	if f.Kind != FrameHello || len(f.Data) < 4 {
		return 0, "", errors.New("peer link: bad hello")
	}
	return int(binary.LittleEndian.Uint32(f.Data)), string(f.Data[4:]), nil
}
