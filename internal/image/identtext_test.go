package image

import (
	"strings"
	"testing"
)

func TestIdentityText(t *testing.T) {
	tr := &Tree{Version: FormatVersion, Root: 10,
		Processes: []*Process{{PID: 10, Comm: "x", SID: 10, PGID: 10,
			Threads: []*Thread{{TID: 10, Sched: &Sched{Policy: 3, Nice: 7, Affinity: []uint64{2}},
				Security: &Security{CapEff: 0x420, CapPrm: 0x421, CapAmb: 0x400, NoNewPrivs: true, SeccompMode: 2,
					Seccomp: []SeccompFilter{{Prog: make([]byte, 8)}}}}},
			Timers: []PosixTimer{{ID: 4, Clock: 1, Notify: SigevSignal | SigevThreadID, TID: 11, Signo: 36, ValueNs: 1.5e9}},
			CTTY:   &ControllingTTY{Path: "/dev/pts/3", Foreground: 12}}},
		Sem: []*SemSet{{ID: 2, Key: 0x4b, Mode: 0o640, Values: []uint16{4, 0}}},
		Msg: []*MsgQueue{{ID: 3, Messages: []Message{{Type: 1, Data: []byte("abc")}}}},
	}
	var b strings.Builder
	if err := WriteText(&b, tr); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"sched batch nice 7 cpus 2", "caps eff 0x420 prm 0x421 amb 0x400 no_new_privs seccomp 1 filters",
		"id 4 clock 1 signal SIGRTMIN+4 to thread 11", "left 1.500s", "controlling terminal /dev/pts/3 (foreground group 12)",
		"semaphore set 2 key 0x4b mode 0640", "values [4 0]", "message queue 3", "1 messages (3 bytes)"} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("inspect text lacks %q:\n%s", want, b.String())
		}
	}
}
