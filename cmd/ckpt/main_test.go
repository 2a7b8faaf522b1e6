package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// ckptBin is the ckpt binary built once for the tests, so they run the
// command exactly as users do.
var ckptBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "ckpt-test-bin-")
	if err != nil {
		panic(err)
	}
	ckptBin = filepath.Join(dir, "ckpt")
	cmd := exec.Command("go", "build", "-o", ckptBin, ".")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		os.Stderr.Write(out)
		panic(err)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

type result struct {
	stdout, stderr string
	code           int
}

// runCkpt runs the binary with the repository dir.
func runCkpt(t *testing.T, repoDir string, args ...string) result {
	t.Helper()
	cmd := exec.Command(ckptBin, append([]string{"--repo", repoDir}, args...)...)
	cmd.Env = append(os.Environ(), "CKPT_REPO=", "CKPT_KEY_FILE=")
	return runResult(t, cmd)
}

// runResult runs cmd and returns its output and exit status; a command
// that could not run fails the test.
func runResult(t *testing.T, cmd *exec.Cmd) result {
	t.Helper()
	var so, se bytes.Buffer
	cmd.Stdout, cmd.Stderr = &so, &se
	err := cmd.Run()
	code := 0
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return result{so.String(), se.String(), code}
}

func wantCode(t *testing.T, r result, code int, what string) {
	t.Helper()
	if r.code != code {
		t.Fatalf("%s: exit %d, want %d\nstdout: %s\nstderr: %s", what, r.code, code, r.stdout, r.stderr)
	}
}

func TestExitStatusesAndErrors(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "repo")
	wantCode(t, runCkpt(t, dir, "ls"), exitNotFound, "ls without a repository")
	wantCode(t, runCkpt(t, dir, "init"), exitOK, "init")
	wantCode(t, runCkpt(t, dir, "init"), exitFailed, "init twice")
	wantCode(t, runCkpt(t, dir, "nonsense"), exitUsage, "unknown command")
	wantCode(t, runCkpt(t, dir, "ls", "--bogus"), exitUsage, "unknown flag")
	wantCode(t, runCkpt(t, dir, "inspect"), exitUsage, "missing argument")
	r := runCkpt(t, dir, "inspect", "nosuchname")
	wantCode(t, r, exitNotFound, "inspect of a missing checkpoint")
	if !strings.Contains(r.stderr, "nosuchname") || r.stdout != "" {
		t.Fatalf("message should name the reference and stdout stay empty: %+v", r)
	}
	r = runCkpt(t, dir, "ls", "--json")
	wantCode(t, r, exitOK, "ls --json")
	var list []map[string]any
	if err := json.Unmarshal([]byte(r.stdout), &list); err != nil || len(list) != 0 {
		t.Fatalf("ls --json of an empty repository: %q %v", r.stdout, err)
	}
	wantCode(t, runCkpt(t, dir, "dump", "notapid"), exitUsage, "dump of a non-number")
	wantCode(t, runCkpt(t, dir, "dump", "999999999"), exitNotFound, "dump of a missing PID")
}

func TestEncryptedRepositoryCLI(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "repo")
	key := filepath.Join(t.TempDir(), "key")
	os.WriteFile(key, []byte("0123456789abcdef0123456789abcdef\n"), 0o600)
	wantCode(t, runCkpt(t, dir, "init", "--key-file", key), exitOK, "init with a key")
	r := runCkpt(t, dir, "ls")
	wantCode(t, r, exitFailed, "ls without the key")
	if !strings.Contains(r.stderr, "key") {
		t.Fatalf("no mention of the key: %s", r.stderr)
	}
	other := filepath.Join(t.TempDir(), "other")
	os.WriteFile(other, []byte("another key, long enough"), 0o600)
	r = runCkpt(t, dir, "ls", "--key-file", other)
	wantCode(t, r, exitFailed, "ls with the wrong key")
	if !strings.Contains(r.stderr, "wrong key") {
		t.Fatalf("wrong key not named: %s", r.stderr)
	}
	wantCode(t, runCkpt(t, dir, "ls", "--key-file", key), exitOK, "ls with the key")
}
