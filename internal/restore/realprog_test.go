package restore_test

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/ckpt/ckpt/internal/dump"
	"github.com/ckpt/ckpt/internal/image"
	"github.com/ckpt/ckpt/internal/proctest"
	"github.com/ckpt/ckpt/internal/restore"
)

// goTool finds the go command that runs these tests.
func goTool(t *testing.T) string {
	t.Helper()
	if p, err := exec.LookPath("go"); err == nil {
		return p
	}
	p := "/usr/local/go/bin/go"
	if _, err := os.Stat(p); err != nil {
		t.Fatalf("no go command to build testdata/goprog: %v", err)
	}
	return p
}

// TestGoProgram dumps a Go program of our own (testdata/goprog, built here
// with go build, static) in the middle of its work: goroutines hashing,
// a ticker, a pending hour-long timer, and a TCP client and server in the
// same process exchanging 3000 round trips over one loopback connection.
// Restored with the same PID, it finishes with the same connection (same
// local address, one accept), the hashes equal a fresh computation, the
// ticker still ticks and the timer is still pending.
func TestGoProgram(t *testing.T) {
	proctest.RequireRoot(t)
	bin := filepath.Join(t.TempDir(), "goprog")
	src, err := filepath.Abs("../../testdata/goprog/main.go")
	if err != nil {
		t.Fatal(err)
	}
	build := exec.Command(goTool(t), "build", "-o", bin, src)
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build testdata/goprog: %v\n%s", err, out)
	}
	rs, ready := cycle(t, bin)
	p := rs.tree.Processes[0]
	if len(p.Threads) < 3 {
		t.Errorf("image has %d threads, want the Go runtime's several", len(p.Threads))
	}
	conns := 0
	for _, s := range rs.tree.Inet {
		if s.State == image.InetEstablished {
			conns++
		}
	}
	if conns != 2 {
		t.Errorf("image has %d established TCP sockets, want both ends of the connection", conns)
	}
	rs.expectPass(t, ready)
}

// requireTool skips without path, or fails when CKPT_REQUIRE_ROOT=1 (CI
// installs it: .ci/run).
func requireTool(t *testing.T, path string) {
	t.Helper()
	if _, err := os.Stat(path); err != nil {
		if os.Getenv("CKPT_REQUIRE_ROOT") == "1" {
			t.Fatalf("%s is missing (.ci/run installs it)", path)
		}
		t.Skipf("%s is not installed", path)
	}
}

const sqliteFirst = `create table t(i integer primary key, v text);
begin immediate;
with recursive c(x) as (select 1 union all select x+1 from c where x<1000) insert into t select x, printf('%d-%d', x, x*x) from c;
`

const sqliteSecond = `with recursive c(x) as (select 1001 union all select x+1 from c where x<2000) insert into t select x, printf('%d-%d', x, x*x) from c;
commit;
select count(*), sum(i), max(length(v)), sum(length(v)) from t;
`

// TestSQLite dumps the sqlite3 shell in the middle of a write transaction
// (BEGIN IMMEDIATE: a RESERVED lock, a POSIX record lock on the database,
// 1000 rows not yet committed, a rollback journal open), kills it and
// restores it with a new stdin and stdout. While restored, another
// sqlite3 cannot start a write transaction (the lock is back); then the
// restored shell inserts 1000 more rows, commits and gives the same
// answer as an uninterrupted run, and the database holds all 2000 rows.
func TestSQLite(t *testing.T) {
	proctest.RequireRoot(t)
	const sqlite = "/usr/bin/sqlite3"
	requireTool(t, sqlite)
	dir := t.TempDir()
	want, err := exec.Command(sqlite, filepath.Join(dir, "ref.db"), sqliteFirst+sqliteSecond).CombinedOutput()
	if err != nil {
		t.Fatalf("uninterrupted run: %v: %s", err, want)
	}
	db := filepath.Join(dir, "t.db")
	inR, inW, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	outR, outW, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(sqlite, db)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = inR, outW, outW
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	inR.Close()
	outW.Close()
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	lines := proctest.NewLines(outR)
	if _, err := inW.WriteString(sqliteFirst + ".print READY\n"); err != nil {
		t.Fatal(err)
	}
	lines.Expect(t, "READY")
	pid := cmd.Process.Pid
	pages := proctest.NewPages()
	tree, err := dump.Dump(context.Background(), pid, dump.Options{}, pages)
	if err != nil {
		t.Fatal(err)
	}
	locked := false
	for _, fd := range tree.Processes[0].FDs {
		locked = locked || len(fd.Locks) > 0 && fd.Path == db
	}
	if !locked {
		t.Errorf("no lock saved on %s", db)
	}
	b, err := image.Encode(tree)
	if err != nil {
		t.Fatal(err)
	}
	if err := dump.Kill(tree); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Wait()
	inW.Close()
	proctest.WaitGone(t, pid)
	tree2, err := image.Decode(b)
	if err != nil {
		t.Fatal(err)
	}
	in2R, in2W, _ := os.Pipe()
	out2R, out2W, _ := os.Pipe()
	res, err := restore.Restore(context.Background(), tree2, pages, restore.Options{Stdin: in2R, Stdout: out2W, Stderr: out2W})
	in2R.Close()
	out2W.Close()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = syscall.Kill(pid, syscall.SIGKILL); _, _ = res.Wait() })
	if res.Root != pid {
		t.Errorf("restored PID %d, want %d", res.Root, pid)
	}
	other, err := exec.Command(sqlite, db, "begin immediate;").CombinedOutput()
	if err == nil || !strings.Contains(string(other), "locked") {
		t.Errorf("another sqlite3 started a write transaction while the restored one holds it: %v %s", err, other)
	}
	lines2 := proctest.NewLines(out2R)
	if _, err := in2W.WriteString(sqliteSecond + ".print DONE\n"); err != nil {
		t.Fatal(err)
	}
	in2W.Close()
	lines2.Expect(t, "DONE")
	got := strings.Join(lines2.All()[:len(lines2.All())-1], "\n")
	if got != strings.TrimSpace(string(want)) {
		t.Errorf("restored sqlite3 answered %q, an uninterrupted run %q", got, want)
	}
	ws, err := res.Wait()
	if err != nil || !ws.Exited() || ws.ExitStatus() != 0 {
		t.Errorf("restored sqlite3 ended with %v, %v", ws, err)
	}
	count, err := exec.Command(sqlite, db, "select count(*) from t;").CombinedOutput()
	if err != nil || strings.TrimSpace(string(count)) != "2000" {
		t.Errorf("database holds %q rows (%v), want 2000", count, err)
	}
}
