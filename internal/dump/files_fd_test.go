package dump

import (
	"testing"

	"github.com/ckpt/ckpt/internal/image"
)

func TestParseLocks(t *testing.T) {
	ls, why, err := parseLocks("1: POSIX  ADVISORY  WRITE 1234 00:1f:5 10 19\n2: FLOCK  ADVISORY  READ 1234 00:1f:5 0 EOF\n3: OFDLCK ADVISORY  WRITE -1 00:1f:5 0 EOF")
	if err != nil || why != "" || len(ls) != 3 {
		t.Fatalf("got %v %q %v", ls, why, err)
	}
	want := []image.Lock{{Kind: image.LockPOSIX, Write: true, Start: 10, End: 19}, {Kind: image.LockFlock, End: -1}, {Kind: image.LockOFD, Write: true, End: -1}}
	for i := range want {
		if ls[i] != want[i] {
			t.Errorf("lock %d: got %+v, want %+v", i, ls[i], want[i])
		}
	}
	if _, why, _ := parseLocks("1: LEASE  ACTIVE    READ 1234 00:1f:5 0 EOF"); why == "" {
		t.Error("a lease is not refused")
	}
	if _, _, err := parseLocks("1: POSIX"); err == nil {
		t.Error("a short lock line is accepted")
	}
}

func TestParseTimerfd(t *testing.T) {
	tf, err := parseTimerfd(map[string]string{"clockid": "1", "ticks": "3", "settime flags": "00",
		"it_value": "(2, 500)", "it_interval": "(1, 0)"})
	if err != nil {
		t.Fatal(err)
	}
	if tf.Clock != 1 || tf.Ticks != 3 || tf.ValueNs != 2e9+500 || tf.IntervalNs != 1e9 || tf.DeadlineNs != 0 {
		t.Errorf("got %+v", tf)
	}
	abs, err := parseTimerfd(map[string]string{"clockid": "0", "ticks": "0", "settime flags": "01",
		"it_value": "(10, 0)", "it_interval": "(0, 0)"})
	if err != nil || abs.DeadlineNs <= 10e9 {
		t.Errorf("absolute timer: %+v %v", abs, err)
	}
}

func TestFields(t *testing.T) {
	kv := fields("5 events:       19 data: 5  pos:0 ino:1a sdev:d")
	if kv["events"] != "19" || kv["data"] != "5" || kv["ino"] != "1a" || kv["sdev"] != "d" {
		t.Errorf("got %v", kv)
	}
}
