package records_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ckpt/ckpt"
	"github.com/ckpt/ckpt/records"
)

var ctx = context.Background()

const childEnv = "CKPT_RECORDS_CHILD"

func TestMain(m *testing.M) {
	if os.Getenv(childEnv) == "" {
		os.Exit(m.Run())
	}
	// Child: run the job over the files named in the environment.
	if err := run(os.Getenv("REC_REPO"), os.Getenv("REC_IN"), os.Getenv("REC_OUT"), 50); err != nil {
		fmt.Fprintln(os.Stderr, "child:", err)
		os.Exit(2)
	}
	os.Exit(0)
}

// run is the batch job under test: for each line it writes the record
// number, a running checksum over all records so far (protected state: a
// restart that lost or repeated a record, or restored state that does not
// match the output, changes every later line) and the line's hash.
func run(dir, in, out string, every int) error {
	job, err := ckpt.Open("lines", ckpt.WithDir(dir), ckpt.WithLogger(slog.New(slog.DiscardHandler)))
	if err != nil {
		return err
	}
	defer job.Close()
	var sum uint64
	if err := job.Protect("sum", &sum); err != nil {
		return err
	}
	s, err := records.Open(ctx, job, records.Config{Input: in, Output: out, Every: every})
	if err != nil {
		return err
	}
	n := s.Position().Records
	for s.Scan() {
		n++
		h := sha256.Sum256(s.Record())
		sum = sum*31 + uint64(h[0]) + uint64(len(s.Record()))
		fmt.Fprintf(s, "%d %016x %x\n", n, sum, h[:6])
	}
	if err := s.Err(); err != nil {
		return err
	}
	return s.Close()
}

func writeInput(t *testing.T, n int) string {
	t.Helper()
	var b strings.Builder
	r := rand.New(rand.NewPCG(uint64(n), 3))
	for i := range n {
		fmt.Fprintf(&b, "record %d %s\n", i, strings.Repeat("x", r.IntN(40)))
	}
	b.WriteString("last line without a newline")
	p := filepath.Join(t.TempDir(), "in.txt")
	if err := os.WriteFile(p, []byte(b.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// expected runs the job once, uninterrupted, in this process.
func expected(t *testing.T, in string, every int) []byte {
	t.Helper()
	d := t.TempDir()
	out := filepath.Join(d, "out.txt")
	if err := run(filepath.Join(d, "repo"), in, out, every); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestKilledJobOutputIsExactlyOnce(t *testing.T) {
	n := 20000
	if testing.Short() {
		n = 4000
	}
	in := writeInput(t, n)
	want := expected(t, in, 50)
	if lines := bytes.Count(want, []byte("\n")); lines != n+1 {
		t.Fatalf("uninterrupted run wrote %d lines, want %d", lines, n+1)
	}
	d := t.TempDir()
	repoDir, out := filepath.Join(d, "repo"), filepath.Join(d, "out.txt")
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 1))
	kills := 0
	for run := 0; ; run++ {
		if run > 2000 {
			t.Fatal("the job never finished")
		}
		cmd := exec.Command(os.Args[0], "-test.run=^$")
		cmd.Env = append(os.Environ(), childEnv+"=1", "REC_REPO="+repoDir, "REC_IN="+in, "REC_OUT="+out)
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		var err error
		select {
		case err = <-done:
		// The window grows with each run, so that a slow machine (or
		// -race) still lets a run get past its start and finish.
		case <-time.After(time.Duration(rng.Int64N(int64(40*time.Millisecond + time.Duration(run)*2*time.Millisecond)))):
			cmd.Process.Signal(syscall.SIGKILL)
			err = <-done
		}
		if err == nil {
			break
		}
		if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); !ok || !ws.Signaled() {
			t.Fatalf("run %d failed: %v\n%s", run, err, stderr.String())
		}
		kills++
	}
	got, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("after %d kills the output differs from an uninterrupted run's (%d vs %d bytes); first difference at line %d",
			kills, len(got), len(want), firstDiffLine(got, want))
	}
	if kills == 0 {
		t.Fatal("the job was never killed: the test proved nothing")
	}
	t.Logf("%d records, killed %d times, output identical", n, kills)
}

func firstDiffLine(a, b []byte) int {
	la, lb := bytes.Split(a, []byte("\n")), bytes.Split(b, []byte("\n"))
	for i := range min(len(la), len(lb)) {
		if !bytes.Equal(la[i], lb[i]) {
			return i + 1
		}
	}
	return min(len(la), len(lb)) + 1
}

// Closing in the middle commits what was completed; the record returned by
// the last Scan is processed again by the next run, and a finished stream
// stays finished.
func TestCloseEarlyAndResume(t *testing.T) {
	in := writeInput(t, 1000)
	want := expected(t, in, 1000000)
	d := t.TempDir()
	repoDir, out := filepath.Join(d, "repo"), filepath.Join(d, "out.txt")

	stop := func(after int, commit bool) records.Position {
		job, err := ckpt.Open("lines", ckpt.WithDir(repoDir), ckpt.WithLogger(slog.New(slog.DiscardHandler)))
		if err != nil {
			t.Fatal(err)
		}
		defer job.Close()
		var sum uint64
		job.Protect("sum", &sum)
		s, err := records.Open(ctx, job, records.Config{Input: in, Output: out, Every: 1000000})
		if err != nil {
			t.Fatal(err)
		}
		n := s.Position().Records
		for k := 0; s.Scan(); k++ {
			n++
			h := sha256.Sum256(s.Record())
			sum = sum*31 + uint64(h[0]) + uint64(len(s.Record()))
			fmt.Fprintf(s, "%d %016x %x\n", n, sum, h[:6])
			if k == after {
				if commit {
					if err := s.Checkpoint(); err != nil {
						t.Fatal(err)
					}
				}
				break // without Checkpoint, record n is not complete
			}
		}
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		return s.Committed()
	}
	p := stop(300, true)
	if p.Records != 301 || p.Done {
		t.Fatalf("after a checkpoint at the 301st record: %+v", p)
	}
	if b, _ := os.ReadFile(out); !bytes.Equal(b, want[:p.OutLength]) || int64(len(b)) != p.OutLength {
		t.Fatalf("output after Close is not the committed prefix (%d bytes, committed %d)", len(b), p.OutLength)
	}
	p = stop(250, false) // processes 251 records, commits none of them
	if p.Records != 301 {
		t.Fatalf("second run: %+v", p)
	}
	if b, _ := os.ReadFile(out); int64(len(b)) != p.OutLength {
		t.Fatalf("output after Close is %d bytes, committed %d", len(b), p.OutLength)
	}
	p = stop(1<<30, false)
	if !p.Done || p.Records != 1001 {
		t.Fatalf("third run: %+v", p)
	}
	p = stop(1<<30, false)
	if !p.Done || p.Records != 1001 {
		t.Fatalf("run after the end: %+v", p)
	}
	if b, _ := os.ReadFile(out); !bytes.Equal(b, want) {
		t.Fatal("output of the stopped and resumed runs differs from an uninterrupted run's")
	}
}

func TestOutputTamperingIsRefused(t *testing.T) {
	in := writeInput(t, 100)
	d := t.TempDir()
	repoDir, out := filepath.Join(d, "repo"), filepath.Join(d, "out.txt")
	job, _ := ckpt.Open("t", ckpt.WithDir(repoDir))
	s, err := records.Open(ctx, job, records.Config{Input: in, Output: out, Every: 10})
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 50 && s.Scan(); i++ {
		s.WriteString(s.Text() + "\n")
	}
	s.Close()
	job.Close()
	if err := os.Truncate(out, 10); err != nil {
		t.Fatal(err)
	}
	job, _ = ckpt.Open("t", ckpt.WithDir(repoDir))
	defer job.Close()
	if _, err := records.Open(ctx, job, records.Config{Input: in, Output: out}); err == nil || !strings.Contains(err.Error(), "changed or replaced") {
		t.Fatalf("resume over a shortened output: %v", err)
	}
}

// A custom split function and the time trigger.
func TestSplitAndInterval(t *testing.T) {
	d := t.TempDir()
	in := filepath.Join(d, "in")
	os.WriteFile(in, []byte("a,bb,ccc,dddd,eeeee"), 0o600)
	var commits int
	job, err := ckpt.Open("split", ckpt.WithDir(filepath.Join(d, "repo")), ckpt.WithAsync(false),
		ckpt.WithCommitHook(func(ckpt.CommitInfo) { commits++ }))
	if err != nil {
		t.Fatal(err)
	}
	defer job.Close()
	comma := func(data []byte, atEOF bool) (int, []byte, error) {
		if i := bytes.IndexByte(data, ','); i >= 0 {
			return i + 1, data[:i], nil
		}
		if atEOF && len(data) > 0 {
			return len(data), data, nil
		}
		return 0, nil, nil
	}
	s, err := records.Open(ctx, job, records.Config{Input: in, Output: filepath.Join(d, "out"), Split: comma, Every: 1 << 30, Interval: time.Nanosecond})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for s.Scan() {
		got = append(got, s.Text())
		s.WriteString(strconv.Itoa(len(s.Text())))
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if strings.Join(got, "|") != "a|bb|ccc|dddd|eeeee" {
		t.Fatalf("records %q", got)
	}
	// One checkpoint after each record but the last, plus the final one.
	if commits != 5 {
		t.Fatalf("%d commits, want 5", commits)
	}
	if p := s.Position(); p.InOffset != 19 || p.OutLength != 5 || !p.Done {
		t.Fatalf("final position %+v", p)
	}
	if b, _ := os.ReadFile(filepath.Join(d, "out")); string(b) != "12345" {
		t.Fatalf("output %q", b)
	}
}

func TestOpenErrors(t *testing.T) {
	job, _ := ckpt.Open("e", ckpt.WithDir(filepath.Join(t.TempDir(), "repo")))
	defer job.Close()
	if _, err := records.Open(ctx, job, records.Config{Input: "/nonexistent/in", Output: filepath.Join(t.TempDir(), "o")}); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("missing input: %v", err)
	}
	if _, err := records.Open(ctx, job, records.Config{}); err == nil {
		t.Fatal("empty config accepted")
	}
	_ = bufio.ScanLines
}
