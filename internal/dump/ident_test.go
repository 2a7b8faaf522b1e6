package dump

import (
	"testing"

	"github.com/ckpt/ckpt/internal/image"
)

func TestParseTimers(t *testing.T) {
	in := "ID: 4\nsignal: 36/0000000000000058\nnotify: signal/tid.812\nClockID: 1\n" +
		"ID: 3\nsignal: 0/0000000000000000\nnotify: none/pid.811\nClockID: 0\n"
	got, err := parseTimers([]byte(in))
	if err != nil {
		t.Fatal(err)
	}
	want := []image.PosixTimer{
		{ID: 4, Clock: 1, Notify: image.SigevThreadID, TID: 812, Signo: 36, Value: 0x58},
		{ID: 3, Clock: 0, Notify: image.SigevNone, Signo: 0},
	}
	if len(got) != len(want) || got[0] != want[0] || got[1] != want[1] {
		t.Errorf("got %+v, want %+v", got, want)
	}
	for _, bad := range []string{"signal: 3/0\n", "ID: x\n", "ID: 1\nnotify: bogus/pid.1\n", "ID: 1\nsignal: 3/zz\n"} {
		if _, err := parseTimers([]byte(bad)); err == nil {
			t.Errorf("parseTimers(%q) gave no error", bad)
		}
	}
}
