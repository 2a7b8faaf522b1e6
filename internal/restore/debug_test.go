package restore_test

import (
	"os"
	"testing"

	"github.com/ckpt/ckpt/internal/proctest"
)

func TestDebugStatic(t *testing.T) {
	if os.Getenv("CKPT_DEBUG") == "" {
		t.Skip()
	}
	bin := proctest.Build(t, os.Getenv("CKPT_DEBUG"), os.Getenv("CKPT_STATIC") != "")
	rs, _ := cycle(t, bin, t.TempDir())
	pid := rs.res.Root
	for _, f := range []string{"stat", "maps", "status", "wchan", "syscall"} {
		b, _ := os.ReadFile("/proc/" + itoa(pid) + "/" + f)
		t.Logf("%s:\n%s", f, b)
	}
}

func itoa(i int) string {
	return string([]byte(func() string {
		s := ""
		for ; i > 0; i /= 10 {
			s = string(rune('0'+i%10)) + s
		}
		return s
	}()))
}
