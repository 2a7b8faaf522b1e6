package image

import (
	"errors"
	"strings"
	"testing"
)

func sample() *Tree {
	return &Tree{
		Version: FormatVersion, Root: 10, CPU: CPU{XFeatures: 7, XStateSize: 4},
		Processes: []*Process{
			{PID: 10, PPID: 1, PGID: 10, SID: 10, Comm: "a",
				Threads:    []*Thread{{TID: 10, XSave: make([]byte, 4)}, {TID: 11, XSave: make([]byte, 4)}},
				Mappings:   []*Mapping{{Start: 0x1000, End: 0x3000, Prot: ProtRead | ProtWrite, Kind: KindAnon, Saved: 0x1000}, {Start: 0x3000, End: 0x4000, Kind: KindFile, Path: "/x", File: &FileID{Ino: 1}}},
				FDs:        []*FD{{Num: 0, Kind: FDOutside, Path: "/dev/pts/0"}, {Num: 3, Kind: FDPipe, Pipe: 5, Desc: 1}},
				SigActions: []SigAction{{Sig: 10, Handler: 0x1234}},
			},
			{PID: 12, PPID: 10, PGID: 10, SID: 10, Comm: "b", Threads: []*Thread{{TID: 12, XSave: make([]byte, 4)}},
				FDs: []*FD{{Num: 4, Kind: FDPipe, Pipe: 5, Desc: 1}}},
			{PID: 13, PPID: 12, Zombie: true},
		},
		Pipes: []*Pipe{{ID: 5, Size: 65536, Data: []byte("hi")}},
	}
}

func TestRoundTrip(t *testing.T) {
	b, err := Encode(sample())
	if err != nil {
		t.Fatal(err)
	}
	tr, err := Decode(b)
	if err != nil {
		t.Fatal(err)
	}
	if tr.Process(12) == nil || string(tr.Pipe(5).Data) != "hi" || tr.Processes[0].Mappings[1].File.Ino != 1 {
		t.Errorf("round trip lost data: %s", b)
	}
	if _, err := Decode([]byte(`{"version": 99}`)); err == nil || !strings.Contains(err.Error(), "version 99") {
		t.Errorf("version check: %v", err)
	}
}

func TestValidate(t *testing.T) {
	for _, tc := range []struct {
		name string
		mut  func(*Tree)
		want string
	}{
		{"ok", func(*Tree) {}, ""},
		{"no processes", func(t *Tree) { t.Processes = nil }, "no processes"},
		{"dup pid", func(t *Tree) { t.Processes[1].PID = 10 }, "PID 10 appears twice"},
		{"orphan", func(t *Tree) { t.Processes[1].PPID = 99 }, "parent 99"},
		{"root", func(t *Tree) { t.Root = 12 }, "root is 12"},
		{"leader", func(t *Tree) { t.Processes[0].Threads[0].TID = 11 }, "first thread must have TID 10"},
		{"dup tid", func(t *Tree) {
			t.Processes[1].Threads = append(t.Processes[1].Threads, &Thread{TID: 11, XSave: make([]byte, 4)})
		}, "TID 11 in processes"},
		{"xsave", func(t *Tree) { t.Processes[0].Threads[1].XSave = nil }, "XSAVE area is 0 bytes"},
		{"unaligned", func(t *Tree) { t.Processes[0].Mappings[0].End = 0x2001 }, "not a page-aligned"},
		{"overlap", func(t *Tree) { t.Processes[0].Mappings[1].Start = 0x2000 }, "overlaps"},
		{"kind", func(t *Tree) { t.Processes[0].Mappings[0].Kind = "socket" }, "unknown kind"},
		{"file identity", func(t *Tree) { t.Processes[0].Mappings[1].File = nil }, "without path or identity"},
		{"saved", func(t *Tree) { t.Processes[0].Mappings[0].Saved = 1 << 20 }, "more than its size"},
		{"dup fd", func(t *Tree) { t.Processes[0].FDs[1].Num = 0 }, "fd 0 appears twice"},
		{"pipe", func(t *Tree) { t.Pipes = nil }, "pipe 5 is not in the image"},
		{"desc", func(t *Tree) { t.Processes[1].FDs[0].Pipe = 6; t.Pipes = append(t.Pipes, &Pipe{ID: 6}) }, "shares description"},
		{"sigkill", func(t *Tree) { t.Processes[0].SigActions[0].Sig = 9 }, "signal 9"},
		{"zombie", func(t *Tree) { t.Processes[2].FDs = []*FD{{Num: 1, Kind: FDOutside}} }, "zombie 13"},
		{"container ok", func(t *Tree) { inContainer(t) }, ""},
		{"container root", func(t *Tree) { inContainer(t); t.Processes[0].PPID = 5 }, "want PID 1 of its namespace"},
		{"container clock", func(t *Tree) { inContainer(t); t.Container.Monotonic = -1 }, "negative clock"},
		{"container ifname", func(t *Tree) { inContainer(t); t.Container.Net[1].Name = "lo" }, "duplicate interface name"},
		{"container peer", func(t *Tree) { inContainer(t); t.Container.Net[1].Peer = "" }, "bad host end name"},
		{"container addr", func(t *Tree) { inContainer(t); t.Container.Net[1].PeerAddrs = []string{"10.0.0.1"} }, `address "10.0.0.1"`},
	} {
		tr := sample()
		tc.mut(tr)
		err := tr.Validate()
		if tc.want == "" {
			if err != nil {
				t.Errorf("%s: %v", tc.name, err)
			}
			continue
		}
		if err == nil || !strings.Contains(err.Error(), tc.want) || !errors.Is(err, ErrInvalid) {
			t.Errorf("%s: got %v, want %q", tc.name, err, tc.want)
		}
	}
}

// inContainer renumbers sample() as a container's tree (root PID 1).
func inContainer(t *Tree) {
	t.Root = 1
	t.Processes[0].PID, t.Processes[0].PPID = 1, 0
	t.Processes[0].Threads[0].TID = 1
	t.Processes[1].PPID = 1
	t.Container = &Container{Name: "box", Hostname: "box1", Monotonic: 5e9, Boottime: 6e9, Net: []NetIf{
		{Name: "lo", Up: true},
		{Name: "eth0", Up: true, Addrs: []string{"10.0.0.2/24"}, Veth: true, Peer: "ckpt-12345678", PeerAddrs: []string{"10.0.0.1/24"}},
	}}
}

func TestContainerText(t *testing.T) {
	tr := sample()
	inContainer(tr)
	var b strings.Builder
	if err := WriteText(&b, tr); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"container box: hostname box1", "monotonic clock 5.000s", "interface eth0 up 10.0.0.2/24 (veth; host end ckpt-12345678 10.0.0.1/24)"} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("text lacks %q:\n%s", want, b.String())
		}
	}
}

func TestText(t *testing.T) {
	var b strings.Builder
	if err := WriteText(&b, sample()); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"process 10 (a)", "threads: 2", "8 KiB", "SIGUSR1", "zombie", "pipe:[5] capacity 65536, 2 bytes queued", "/dev/pts/0"} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("text lacks %q:\n%s", want, b.String())
		}
	}
}
