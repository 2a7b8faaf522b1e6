package migrate

import (
	"bytes"
	"context"
	"errors"
	"os"
	"strings"
	"testing"

	"github.com/ckpt/ckpt/internal/image"
	"github.com/ckpt/ckpt/internal/restore"
)

// validStream builds a small complete stream: one pre-copy round of two
// pages, a frozen pass that rewrites one and reuses the other, a tree.
func validStream(t *testing.T) []byte {
	var buf bytes.Buffer
	w := NewWriter(&buf)
	w.JSON(FrameHello, Hello{Version: 1, Root: 4242})
	page := bytes.Repeat([]byte{1}, 2*4096)
	w.WritePages(4242, 0x10000, page)
	w.JSON(FrameRound, RoundInfo{Round: 1, Copied: 8192})
	w.Frame(FrameFrozen)
	w.WritePages(4242, 0x10000, bytes.Repeat([]byte{2}, 4096))
	w.ReusePages(4242, 0x11000, 4096)
	tree := &image.Tree{Version: image.FormatVersion, Root: 4242, Processes: []*image.Process{{PID: 4242, PPID: 1, PGID: 4242, SID: 4242,
		Threads:  []*image.Thread{{TID: 4242}},
		Mappings: []*image.Mapping{{Start: 0x10000, End: 0x12000, Prot: image.ProtRead | image.ProtWrite, Kind: image.KindAnon, Saved: 8192}}}}}
	b, err := image.Encode(tree)
	if err != nil {
		t.Fatal(err)
	}
	w.Frame(FrameTree, b)
	if err := w.End(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func TestReceiveValidStream(t *testing.T) {
	st := &ReceiveStats{}
	tree, stage, err := receive(context.Background(), bytes.NewReader(validStream(t)), st, nil)
	if err != nil {
		t.Fatal(err)
	}
	rs, _ := stage.Ranges(tree.Root)
	if len(rs) != 1 || rs[0] != (image.Range{Addr: 0x10000, Len: 8192}) {
		t.Fatalf("ranges %v", rs)
	}
	b := make([]byte, 8192)
	if err := stage.ReadPages(4242, 0x10000, b); err != nil {
		t.Fatal(err)
	}
	if b[0] != 2 || b[4095] != 2 || b[4096] != 1 || b[8191] != 1 {
		t.Fatalf("staged image: first page %d, second %d; want the frozen copy (2) and the pre-copy (1)", b[0], b[4096])
	}
	var segs int
	stage.PageSegments(4242, 0x10000, 8192, func(addr uint64, b []byte) error { segs++; return nil })
	if segs == 0 {
		t.Fatal("no segments")
	}
	if st.Rounds != 1 || st.Hello.Root != 4242 {
		t.Errorf("stats %+v", st)
	}
}

// TestReceiveRefusesBadStreams: every damaged, cut or aborted stream is
// refused with a message that says what and where.
func TestReceiveRefusesBadStreams(t *testing.T) {
	good := validStream(t)
	flip := func(at int) []byte {
		b := append([]byte(nil), good...)
		b[at] ^= 0x40
		return b
	}
	aborted := func() []byte {
		var buf bytes.Buffer
		w := NewWriter(&buf)
		w.JSON(FrameHello, Hello{Version: 1, Root: 1})
		w.WritePages(1, 0, make([]byte, 4096))
		w.Abort(errors.New("process 1 exited during the pre-copy"))
		return buf.Bytes()
	}
	for _, tc := range []struct {
		name   string
		stream []byte
		want   string
	}{
		{"empty", nil, "ended early"},
		{"not a stream", []byte("hello world, this is text"), "not a ckpt migration stream"},
		{"cut in the pre-copy", good[:len(Magic)+200], "in pre-copy round 1"},
		{"cut in the frozen pass", good[:len(good)-300], "ended early"},
		{"no end frame", good[:len(good)-40], "ended early"},
		{"damaged page", flip(len(Magic) + 100), "checksum"},
		{"damaged length", flip(len(Magic) + 60), "frame 1"},
		{"aborted by the source", aborted(), "the source gave up in pre-copy round 1: process 1 exited"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := receive(context.Background(), bytes.NewReader(tc.stream), &ReceiveStats{}, nil)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v; want one containing %q", err, tc.want)
			}
			t.Log(err)
		})
	}
}

// TestReuseOfUnsentPageFailsTheRead: a frozen pass that declares a page
// unchanged that never came is accepted by the framing, but the restore's
// read of it fails (so nothing is restored from a stream that lies).
func TestReuseOfUnsentPageFailsTheRead(t *testing.T) {
	var buf bytes.Buffer
	w := NewWriter(&buf)
	w.JSON(FrameHello, Hello{Version: 1, Root: 7})
	w.WritePages(7, 0x10000, make([]byte, 4096))
	w.Frame(FrameFrozen)
	w.ReusePages(7, 0x10000, 2*4096) // the second page was never sent
	tree := &image.Tree{Version: image.FormatVersion, Root: 7, Processes: []*image.Process{{PID: 7, PPID: 1, PGID: 7, SID: 7,
		Threads:  []*image.Thread{{TID: 7}},
		Mappings: []*image.Mapping{{Start: 0x10000, End: 0x12000, Prot: image.ProtRead, Kind: image.KindAnon, Saved: 8192}}}}}
	b, _ := image.Encode(tree)
	w.Frame(FrameTree, b)
	w.End()
	_, stage, err := receive(context.Background(), &buf, &ReceiveStats{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	err = stage.ReadPages(7, 0x10000, make([]byte, 8192))
	if err == nil || !strings.Contains(err.Error(), "page 0x11000 not in the migration stream") {
		t.Fatalf("reading the unsent page: %v", err)
	}
	err = stage.PageSegments(7, 0x10000, 8192, func(uint64, []byte) error { return nil })
	if err == nil {
		t.Fatal("PageSegments over the unsent page succeeded")
	}
}

// TestCheckHello: a hello whose vdso is not this kernel's, or that names a
// PID a live process holds here, is refused before any page is sent.
func TestCheckHello(t *testing.T) {
	self := vdsoHash(os.Getpid())
	if self == "" {
		t.Skip("no vdso to compare")
	}
	if err := checkHello(Hello{Version: 1, Vdso: self}); err != nil {
		t.Fatalf("this kernel's own vdso refused: %v", err)
	}
	err := checkHello(Hello{Version: 1, Kernel: "5.10.0-other", Vdso: strings.Repeat("0", 64)})
	if !errors.Is(err, restore.ErrMismatch) || !strings.Contains(err.Error(), "another kernel build") || !strings.Contains(err.Error(), "5.10.0-other") {
		t.Fatalf("another vdso: %v", err)
	}
	err = checkHello(Hello{Version: 1, PIDs: []int{os.Getpid()}})
	if !errors.Is(err, restore.ErrPIDInUse) {
		t.Fatalf("a PID in use here: %v", err)
	}
}
