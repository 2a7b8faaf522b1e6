package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// The domino trace of internal/group/recline/testdata/domino.txt.
const dominoTrace = `# p and q checkpoint on their own; q fails.
p ckpt
q ckpt
q send a p
p recv a
p ckpt
p send b q
q recv b
q ckpt
q send c p
p recv c
p ckpt
p send d q
q recv d
q fail
`

func TestRecoveryLineCommand(t *testing.T) {
	dir := t.TempDir()
	f := filepath.Join(dir, "run.trace")
	if err := os.WriteFile(f, []byte(dominoTrace), 0o644); err != nil {
		t.Fatal(err)
	}
	res := runCkpt(t, dir, "recovery-line", f)
	wantCode(t, res, 0, "recovery-line")
	for _, want := range []string{
		"recovery line: p@p1 q@q1",
		"orphan message a: p back from p2 to p1",
		"p (running): rolls back 6 events, past 2 checkpoints",
		"with message logging: q restarts from q2 and replays 1 logged messages [d]",
	} {
		if !strings.Contains(res.stdout, want) {
			t.Errorf("missing %q in\n%s", want, res.stdout)
		}
	}
	res = runCkpt(t, dir, "recovery-line", "--json", f)
	wantCode(t, res, 0, "recovery-line --json")
	var out recoveryJSON
	if err := json.Unmarshal([]byte(res.stdout), &out); err != nil {
		t.Fatal(err)
	}
	if len(out.Processes) != 2 || out.Processes[0].Line != "p1" || out.Processes[1].Line != "q1" || len(out.Rollbacks) != 3 {
		t.Errorf("json: %+v", out)
	}
	// With channel state recorded, the lost message d needs no rollback,
	// but the orphans still cascade.
	res = runCkpt(t, dir, "recovery-line", "--in-transit", f)
	wantCode(t, res, 0, "recovery-line --in-transit")
	if !strings.Contains(res.stdout, "recovery line: p@p1 q@q1") {
		t.Errorf("in transit:\n%s", res.stdout)
	}
	bad := filepath.Join(dir, "bad.trace")
	os.WriteFile(bad, []byte("p recv x\n"), 0o644)
	res = runCkpt(t, dir, "recovery-line", bad)
	wantCode(t, res, exitUsage, "a bad trace")
}
