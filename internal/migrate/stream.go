// Package migrate moves a running process tree to another place over a
// byte stream: pre-copy rounds of memory while the tree runs, then the
// pages written since and the process image while it is frozen. The
// receiver stages the pages as they arrive and restores the tree once the
// stream is complete; the sender kills its tree only when the receiver
// says the restore finished, and resumes it on any failure. The stream
// format is specified in docs/MIGRATE.md and below.
//
//	stream = magic frame*                     magic: "CKPTMIG1"
//	frame  = type:u8 len:u32be payload[len] crc:u32be
//
// crc is CRC-32C (Castagnoli) of type, len and payload. Frame types:
//
//	'h' hello    JSON Hello
//	'p' pages    pid:u32be addr:u64be data (whole pages; at most 1 MiB)
//	'm' maps     JSON Maps: the private anonymous mappings of a process
//	             (sent before each pre-copy round, so the receiver can
//	             build them as the pages arrive)
//	'r' round    JSON RoundInfo: a pre-copy round ended
//	'f' frozen   (empty) the tree is frozen: what follows is final
//	'u' reuse    pid:u32be addr:u64be len:u64be — pages staged before 'f'
//	             that the image keeps unchanged (only after 'f')
//	't' tree     image.Encode of the tree (only after 'f')
//	'e' end      JSON End: totals the receiver checks
//	'x' abort    JSON {"error"}: the sender gave up; nothing is restored
//
// A stream that ends without 'e' (or with a bad checksum, or 'x') is
// refused as a whole: the receiver restores nothing.
package migrate

import (
	"bufio"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
)

// Magic starts every stream (format version 1).
const Magic = "CKPTMIG1"

// Frame types.
const (
	FrameHello  = 'h'
	FramePages  = 'p'
	FrameRound  = 'r'
	FrameMaps   = 'm'
	FrameFrozen = 'f'
	FrameReuse  = 'u'
	FrameTree   = 't'
	FrameEnd    = 'e'
	FrameAbort  = 'x'
)

// MaxPayload bounds a frame's payload: 1 MiB of pages and their header
// (and the tree, which may be larger: see maxTree).
const MaxPayload = 1<<20 + 12

// maxTree bounds the encoded tree (JSON of every process, thread and fd).
const maxTree = 64 << 20

// ErrStream is wrapped by every error about the stream's contents
// (checksum, order, truncation), as opposed to I/O errors.
var ErrStream = errors.New("bad migration stream")

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// Hello opens a stream.
type Hello struct {
	Version int    `json:"version"`
	Root    int    `json:"root"`   // PID of the tree's root at the source
	Kernel  string `json:"kernel"` // uname release of the source
	Host    string `json:"host"`   // source host name (for messages)
	// PIDs lists the tree's PIDs and TIDs when the stream starts, and Vdso
	// the SHA-256 of the root's vdso: the receiver refuses at once what
	// the restore would refuse after the whole transfer.
	PIDs []int  `json:"pids,omitempty"`
	Vdso string `json:"vdso,omitempty"`
}

// RoundInfo ends a pre-copy round.
type RoundInfo struct {
	Round  int    `json:"round"`
	Dirty  uint64 `json:"dirty"`  // bytes the trackers reported written
	Copied uint64 `json:"copied"` // bytes sent in this round
}

// Maps lists the private anonymous mappings of process PID as [start, end)
// pairs, sorted.
type Maps struct {
	PID    int         `json:"pid"`
	Ranges [][2]uint64 `json:"ranges"`
}

// End closes a stream: the receiver checks it saw exactly this.
type End struct {
	Frames    int    `json:"frames"`     // frames before this one (hello included)
	PageBytes uint64 `json:"page_bytes"` // bytes of page data in 'p' frames
}

// Writer writes a stream. It is safe for use by one goroutine at a time
// (the dumper's calls are serialised by the caller).
type Writer struct {
	w      *bufio.Writer
	frames int
	pages  uint64
	err    error
	hdr    [5]byte
}

// NewWriter starts a stream on w with the magic.
func NewWriter(w io.Writer) *Writer {
	sw := &Writer{w: bufio.NewWriterSize(w, 1<<20)}
	_, sw.err = sw.w.WriteString(Magic)
	return sw
}

// Frame writes one frame whose payload is the concatenation of parts.
func (sw *Writer) Frame(typ byte, parts ...[]byte) error {
	if sw.err != nil {
		return sw.err
	}
	n := 0
	for _, p := range parts {
		n += len(p)
	}
	sw.hdr[0] = typ
	binary.BigEndian.PutUint32(sw.hdr[1:], uint32(n))
	crc := crc32.Update(0, castagnoli, sw.hdr[:])
	if _, err := sw.w.Write(sw.hdr[:]); err != nil {
		sw.err = err
		return err
	}
	for _, p := range parts {
		crc = crc32.Update(crc, castagnoli, p)
		if _, err := sw.w.Write(p); err != nil {
			sw.err = err
			return err
		}
	}
	var c [4]byte
	binary.BigEndian.PutUint32(c[:], crc)
	if _, err := sw.w.Write(c[:]); err != nil {
		sw.err = err
		return err
	}
	sw.frames++
	return nil
}

// JSON writes a frame whose payload is v encoded as JSON.
func (sw *Writer) JSON(typ byte, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return sw.Frame(typ, b)
}

// WritePages writes pid's pages at addr as 'p' frames of at most 1 MiB.
func (sw *Writer) WritePages(pid int, addr uint64, b []byte) error {
	var h [12]byte
	for len(b) > 0 {
		n := min(len(b), 1<<20)
		binary.BigEndian.PutUint32(h[:4], uint32(pid))
		binary.BigEndian.PutUint64(h[4:], addr)
		if err := sw.Frame(FramePages, h[:], b[:n]); err != nil {
			return err
		}
		sw.pages += uint64(n)
		addr += uint64(n)
		b = b[n:]
	}
	return nil
}

// ReusePages writes a 'u' frame.
func (sw *Writer) ReusePages(pid int, addr, n uint64) error {
	var h [20]byte
	binary.BigEndian.PutUint32(h[:4], uint32(pid))
	binary.BigEndian.PutUint64(h[4:], addr)
	binary.BigEndian.PutUint64(h[12:], n)
	return sw.Frame(FrameReuse, h[:])
}

// End writes the 'e' frame and flushes.
func (sw *Writer) End() error {
	if err := sw.JSON(FrameEnd, End{Frames: sw.frames, PageBytes: sw.pages}); err != nil {
		return err
	}
	return sw.Flush()
}

// Abort writes an 'x' frame saying why and flushes; errors are ignored
// (the stream may be what failed).
func (sw *Writer) Abort(why error) {
	if sw.err != nil {
		return
	}
	_ = sw.JSON(FrameAbort, map[string]string{"error": why.Error()})
	_ = sw.Flush()
}

// Flush sends what is buffered.
func (sw *Writer) Flush() error {
	if sw.err != nil {
		return sw.err
	}
	sw.err = sw.w.Flush()
	return sw.err
}

// PageBytes is the page data written so far.
func (sw *Writer) PageBytes() uint64 { return sw.pages }

// Reader reads a stream frame by frame.
type Reader struct {
	r      *bufio.Reader
	frames int    // frames read
	off    int64  // bytes read
	buf    []byte // payload buffer, reused
}

// NewReader checks the magic.
func NewReader(r io.Reader) (*Reader, error) {
	sr := &Reader{r: bufio.NewReaderSize(r, 1<<20)}
	var m [len(Magic)]byte
	if _, err := io.ReadFull(sr.r, m[:]); err != nil {
		return nil, fmt.Errorf("reading the stream's magic: %w", truncated(err))
	}
	if string(m[:]) != Magic {
		return nil, fmt.Errorf("%w: starts with %q, not %q (not a ckpt migration stream, or another version)", ErrStream, m[:], Magic)
	}
	sr.off = int64(len(Magic))
	return sr, nil
}

func truncated(err error) error {
	if err == io.EOF || err == io.ErrUnexpectedEOF {
		return fmt.Errorf("%w: the stream ended early (the sender stopped or the connection was cut)", ErrStream)
	}
	return err
}

// Next reads the next frame. The payload is valid until the next call.
func (sr *Reader) Next() (typ byte, payload []byte, err error) {
	var hdr [5]byte
	at := sr.off
	if _, err := io.ReadFull(sr.r, hdr[:]); err != nil {
		return 0, nil, fmt.Errorf("frame %d at byte %d: %w", sr.frames, at, truncated(err))
	}
	n := binary.BigEndian.Uint32(hdr[1:])
	limit := uint32(MaxPayload)
	if hdr[0] == FrameTree {
		limit = maxTree
	}
	if n > limit {
		return 0, nil, fmt.Errorf("%w: frame %d at byte %d: type %q with %d bytes (at most %d)", ErrStream, sr.frames, at, hdr[0], n, limit)
	}
	if cap(sr.buf) < int(n)+4 {
		sr.buf = make([]byte, int(n)+4)
	}
	b := sr.buf[:n+4]
	if _, err := io.ReadFull(sr.r, b); err != nil {
		return 0, nil, fmt.Errorf("frame %d at byte %d: %w", sr.frames, at, truncated(err))
	}
	crc := crc32.Update(crc32.Update(0, castagnoli, hdr[:]), castagnoli, b[:n])
	if got := binary.BigEndian.Uint32(b[n:]); got != crc {
		return 0, nil, fmt.Errorf("%w: frame %d at byte %d (type %q, %d bytes): checksum %08x, computed %08x", ErrStream, sr.frames, at, hdr[0], n, got, crc)
	}
	sr.frames++
	sr.off += int64(n) + 9
	return hdr[0], b[:n], nil
}

// Frames is the number of frames read so far.
func (sr *Reader) Frames() int { return sr.frames }

// pageFrame decodes a 'p' payload.
func pageFrame(p []byte) (pid int, addr uint64, data []byte, err error) {
	if len(p) < 12 || (len(p)-12)%4096 != 0 {
		return 0, 0, nil, fmt.Errorf("%w: pages frame of %d bytes (want 12 + whole pages)", ErrStream, len(p))
	}
	addr = binary.BigEndian.Uint64(p[4:12])
	if addr%4096 != 0 {
		return 0, 0, nil, fmt.Errorf("%w: pages frame at unaligned address %#x", ErrStream, addr)
	}
	return int(binary.BigEndian.Uint32(p[:4])), addr, p[12:], nil
}

// reuseFrame decodes a 'u' payload.
func reuseFrame(p []byte) (pid int, addr, n uint64, err error) {
	if len(p) != 20 {
		return 0, 0, 0, fmt.Errorf("%w: reuse frame of %d bytes (want 20)", ErrStream, len(p))
	}
	addr, n = binary.BigEndian.Uint64(p[4:12]), binary.BigEndian.Uint64(p[12:])
	if addr%4096 != 0 || n%4096 != 0 {
		return 0, 0, 0, fmt.Errorf("%w: reuse frame %#x+%d not page-aligned", ErrStream, addr, n)
	}
	return int(binary.BigEndian.Uint32(p[:4])), addr, n, nil
}
