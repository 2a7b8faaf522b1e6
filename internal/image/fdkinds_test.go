package image

import (
	"bytes"
	"strings"
	"testing"
)

func sampleKinds() *Tree {
	t := sample()
	p := t.Processes[0]
	p.FDs = append(p.FDs,
		&FD{Num: 5, Kind: FDEventfd, Eventfd: &Eventfd{Count: 3, Semaphore: true}},
		&FD{Num: 6, Kind: FDTimerfd, Timerfd: &Timerfd{Clock: 1, ValueNs: 5e9, IntervalNs: 1e9, Ticks: 2}},
		&FD{Num: 7, Kind: FDSignalfd, Signalfd: &Signalfd{Mask: 1 << 9}},
		&FD{Num: 8, Kind: FDEpoll, Epoll: []EpollTarget{{FD: 5, Events: 1 | 1<<31, Data: 42}}},
		&FD{Num: 9, Kind: FDInotify, Inotify: []InotifyWatch{{WD: 2, Mask: 0x100, Path: "/tmp"}}},
		&FD{Num: 10, Kind: FDUnix, Path: "socket:[70]", Socket: 70, Locks: []Lock{{Kind: LockFlock, Write: true, End: -1}}},
		&FD{Num: 11, Kind: FDUnix, Path: "socket:[71]", Socket: 71},
	)
	t.Sockets = []*UnixSocket{
		{ID: 70, Type: 1, Name: "/run/x.sock", Peer: 71, Connected: true, Queue: [][]byte{[]byte("hi")}},
		{ID: 71, Type: 1, Peer: 70, Connected: true},
	}
	return t
}

func TestKindsRoundTrip(t *testing.T) {
	b, err := Encode(sampleKinds())
	if err != nil {
		t.Fatal(err)
	}
	tr, err := Decode(b)
	if err != nil {
		t.Fatal(err)
	}
	p := tr.Processes[0]
	if tr.Socket(70) == nil || string(tr.Socket(70).Queue[0]) != "hi" || p.FDs[2].Eventfd.Count != 3 ||
		p.FDs[5].Epoll[0].Data != 42 || p.FDs[6].Inotify[0].WD != 2 || p.FDs[7].Locks[0].Kind != LockFlock {
		t.Errorf("round trip lost data: %s", b)
	}
	// An image written before these kinds existed still reads.
	old, err := Encode(sample())
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(old, []byte("sockets")) || bytes.Contains(old, []byte("eventfd")) {
		t.Errorf("empty new fields are encoded: %s", old)
	}
	var w strings.Builder
	if err := WriteText(&w, tr); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"count 3 semaphore", "[fd 5 events", "[wd 2 /tmp", "socket:[70] stream /run/x.sock peer socket:[71], 2 bytes in 1 messages", "[flock write lock 0-EOF]"} {
		if !strings.Contains(w.String(), want) {
			t.Errorf("inspect text lacks %q:\n%s", want, w.String())
		}
	}
}

func TestKindsValidate(t *testing.T) {
	for _, tc := range []struct {
		name string
		mut  func(*Tree)
		want string
	}{
		{"ok", func(*Tree) {}, ""},
		{"eventfd state", func(t *Tree) { t.Processes[0].FDs[2].Eventfd = nil }, "eventfd without its state"},
		{"timerfd state", func(t *Tree) { t.Processes[0].FDs[3].Timerfd = nil }, "timerfd without its state"},
		{"signalfd state", func(t *Tree) { t.Processes[0].FDs[4].Signalfd = nil }, "signalfd without its state"},
		{"epoll target", func(t *Tree) { t.Processes[0].FDs[5].Epoll[0].FD = 99 }, "epoll target fd 99 is not open"},
		{"socket missing", func(t *Tree) { t.Processes[0].FDs[7].Socket = 99 }, "socket 99 is not in the image"},
		{"peer missing", func(t *Tree) { t.Sockets[1].Peer = 98 }, "peer 98 is not in the image"},
		{"dup socket", func(t *Tree) { t.Sockets[1].ID = 70 }, "duplicate socket"},
		{"lock kind", func(t *Tree) { t.Processes[0].FDs[7].Locks[0].Kind = "lease" }, "unknown lock kind"},
	} {
		tr := sampleKinds()
		tc.mut(tr)
		err := tr.Validate()
		if tc.want == "" && err != nil || tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)) {
			t.Errorf("%s: got %v, want %q", tc.name, err, tc.want)
		}
	}
}
