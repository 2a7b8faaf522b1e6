package container

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestCgroup2RootFromMountinfo(t *testing.T) {
	dir := t.TempDir()
	v1 := `25 30 0:22 / /sys/fs/cgroup rw - tmpfs tmpfs rw,mode=755
26 25 0:23 / /sys/fs/cgroup/freezer rw,relatime - cgroup cgroup rw,freezer
`
	p := filepath.Join(dir, "v1")
	os.WriteFile(p, []byte(v1), 0o600)
	_, err := cgroup2Root(p)
	if !errors.Is(err, ErrNoCgroup2) || !strings.Contains(err.Error(), "cgroup v2") {
		t.Fatalf("cgroup v1 only: %v, want ErrNoCgroup2", err)
	}
	hybrid := v1 + `27 25 0:24 / /sys/fs/cgroup/uni\040fied rw,relatime shared:9 - cgroup2 cgroup2 rw
`
	os.WriteFile(p, []byte(hybrid), 0o600)
	got, err := cgroup2Root(p)
	if err != nil || got != "/sys/fs/cgroup/uni fied" {
		t.Fatalf("hybrid: %q, %v", got, err)
	}
}

func requireRootCgroup2(t *testing.T) string {
	t.Helper()
	if os.Geteuid() != 0 {
		if os.Getenv("CKPT_REQUIRE_ROOT") == "1" {
			t.Fatal("needs root (cgroups) and CKPT_REQUIRE_ROOT=1 is set")
		}
		t.Skip("skipping: needs root to create cgroups")
	}
	root, err := Cgroup2Root()
	if err != nil {
		if os.Getenv("CKPT_REQUIRE_ROOT") == "1" {
			t.Fatal(err)
		}
		t.Skip(err)
	}
	return root
}

// A directory that is not a freezable cgroup v2 group gives an error that
// says so, not a hang or a silent success.
func TestFreezeRefused(t *testing.T) {
	root := requireRootCgroup2(t)
	for _, dir := range []string{root, t.TempDir()} {
		err := (&Cgroup{Dir: dir}).Freeze(time.Second)
		if err == nil || !strings.Contains(err.Error(), "cannot be frozen") || !strings.Contains(err.Error(), dir) {
			t.Fatalf("freezing %s: %v", dir, err)
		}
	}
}

// Freeze stops a running program (its counter file stops growing) and Thaw
// lets it go on.
func TestFreezeThaw(t *testing.T) {
	requireRootCgroup2(t)
	cg, err := CgroupFor("test-freeze-" + strings.ReplaceAll(t.Name(), "/", "-"))
	if err != nil {
		t.Fatal(err)
	}
	if err := cg.Create(time.Second); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(t.TempDir(), "count")
	cmd := exec.Command("/bin/sh", "-c", `i=0; while :; do i=$((i+1)); echo $i > `+out+`.tmp; mv `+out+`.tmp `+out+`; done`)
	// Born in the group: no child forked before a move could run on
	// outside it.
	fd, err := cg.Open()
	if err != nil {
		t.Fatal(err)
	}
	defer fd.Close()
	cmd.SysProcAttr = &syscall.SysProcAttr{UseCgroupFD: true, CgroupFD: int(fd.Fd())}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		cg.Kill()
		cmd.Wait()
		cg.Create(5 * time.Second) // waits until the group is empty
		if err := cg.Remove(); err != nil {
			t.Error(err)
		}
	}()
	read := func() string { b, _ := os.ReadFile(out); return string(b) }
	deadline := time.Now().Add(10 * time.Second)
	for read() == "" && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	if err := cg.Freeze(10 * time.Second); err != nil {
		t.Fatal(err)
	}
	a := read()
	time.Sleep(200 * time.Millisecond) // a running loop would count thousands meanwhile
	if b := read(); a != b {
		t.Fatalf("the frozen program went on counting: %q then %q", a, b)
	}
	if err := cg.Thaw(); err != nil {
		t.Fatal(err)
	}
	for read() == a {
		if time.Now().After(deadline) {
			t.Fatal("the thawed program does not run")
		}
		time.Sleep(time.Millisecond)
	}
	pids, err := cg.Procs()
	if err != nil || len(pids) == 0 {
		t.Fatalf("cgroup.procs: %v %v", pids, err)
	}
}
