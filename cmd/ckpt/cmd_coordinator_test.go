package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestCoordinatorCommand runs `ckpt coordinator` with two ranks of
// examples/tokens (real processes over loopback TCP) until they are done,
// then finds the global checkpoints with `ckpt ls`.
func TestCoordinatorCommand(t *testing.T) {
	dir := t.TempDir()
	tokens := filepath.Join(dir, "tokens")
	build := exec.Command("go", "build", "-o", tokens, "../../examples/tokens")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("building examples/tokens: %v\n%s", err, out)
	}
	repoDir := filepath.Join(dir, "repo")
	coord := exec.Command(ckptBin, "--repo", repoDir, "coordinator", "--group", "tok", "--ranks", "2", "--every", "10ms", "--exit-when-done")
	coord.Env = append(os.Environ(), "CKPT_REPO=", "CKPT_KEY_FILE=")
	var cerr bytes.Buffer
	coord.Stderr = &cerr
	out, err := coord.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := coord.Start(); err != nil {
		t.Fatal(err)
	}
	defer coord.Process.Kill()
	sc := bufio.NewScanner(out)
	if !sc.Scan() {
		t.Fatalf("coordinator printed nothing: %s", cerr.String())
	}
	addr, ok := strings.CutPrefix(sc.Text(), "listening ")
	if !ok {
		t.Fatalf("coordinator said %q", sc.Text())
	}
	var ranks []*exec.Cmd
	var outs []*bytes.Buffer
	for r := range 2 {
		c := exec.Command(tokens, "-coordinator", addr, "-group", "tok", "-rank", fmt.Sprint(r), "-size", "2",
			"-repo", repoDir, "-steps", "1500", "-pace", "200us")
		var b bytes.Buffer
		c.Stdout, c.Stderr = &b, &b
		if err := c.Start(); err != nil {
			t.Fatal(err)
		}
		ranks, outs = append(ranks, c), append(outs, &b)
	}
	for r, c := range ranks {
		if err := c.Wait(); err != nil {
			t.Fatalf("rank %d: %v\n%s", r, err, outs[r])
		}
	}
	if err := coord.Wait(); err != nil {
		t.Fatalf("coordinator: %v\n%s", err, cerr.String())
	}
	want, err := exec.Command(tokens, "-expect", "-size", "2", "-steps", "1500").Output()
	if err != nil {
		t.Fatal(err)
	}
	for r, b := range outs {
		line := strings.Split(strings.TrimSpace(string(want)), "\n")[r]
		if !strings.Contains(b.String(), line+" ") {
			t.Errorf("rank %d: want %q in\n%s", r, line, b)
		}
	}
	if !strings.Contains(cerr.String(), "global checkpoint committed") {
		t.Fatalf("no global checkpoint committed:\n%s", cerr.String())
	}
	res := runCkpt(t, repoDir, "ls", "--json", "tok")
	wantCode(t, res, 0, "ls")
	var ls any
	if err := json.Unmarshal([]byte(res.stdout), &ls); err != nil {
		t.Fatalf("ls --json: %v\n%s", err, res.stdout)
	}
	if !strings.Contains(res.stdout, `"group"`) {
		t.Errorf("ls shows no group checkpoint:\n%s", res.stdout)
	}
}

func TestCoordinatorUsage(t *testing.T) {
	res := runCkpt(t, t.TempDir(), "coordinator", "--ranks", "2")
	wantCode(t, res, exitUsage, "coordinator without --group")
}
