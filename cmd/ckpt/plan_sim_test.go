package main

import (
	"encoding/json"
	"encoding/xml"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestPlanExample plans the shipped example pipeline: the plan beats
// checkpointing after every stage and never, and skips the boundary after
// k-mer counting, where 400 GiB are live.
func TestPlanExample(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "repo")
	r := runCkpt(t, dir, "plan", "--json", "../../examples/plan/pipeline.json")
	wantCode(t, r, 0, "plan --json")
	var out planJSON
	if err := json.Unmarshal([]byte(r.stdout), &out); err != nil {
		t.Fatalf("plan --json: %v: %s", err, r.stdout)
	}
	if len(out.Stages) != 8 || out.Expected <= out.FailureFree || out.Expected > out.Every || out.Expected > out.Never {
		t.Fatalf("plan: %+v", out)
	}
	if out.Expected >= out.Every {
		t.Fatalf("the example should show a plan better than every stage: %v vs %v", out.Expected, out.Every)
	}
	for _, s := range out.CheckpointAfter {
		if s == "kmer-count" {
			t.Fatalf("checkpointing 400 GiB after kmer-count chosen: %v", out.CheckpointAfter)
		}
	}
	r = runCkpt(t, dir, "plan", "../../examples/plan/dag.json")
	wantCode(t, r, 0, "plan of the DAG")
	if !strings.Contains(r.stdout, "expected completion time") || !strings.Contains(r.stdout, "never checkpoint") {
		t.Fatalf("plan output: %s", r.stdout)
	}
	bad := filepath.Join(t.TempDir(), "bad.json")
	os.WriteFile(bad, []byte(`{"mtbf": "1h", "stages": [{"name": "a", "duration": "1m"}]}`), 0o600)
	r = runCkpt(t, dir, "plan", bad)
	wantCode(t, r, exitFailed, "plan without bandwidth")
	if !strings.Contains(r.stderr, "bandwidth") || r.stdout != "" {
		t.Fatalf("plan error: %+v", r)
	}
	wantCode(t, runCkpt(t, dir, "plan"), exitUsage, "plan without a file")
}

func TestSimCommand(t *testing.T) {
	dir := t.TempDir()
	svg := filepath.Join(dir, "w.svg")
	r := runCkpt(t, filepath.Join(dir, "repo"), "sim", "--work", "24h", "--cost", "1m", "--mtbf", "2h",
		"--runs", "200", "--points", "9", "--svg", svg, "--json")
	wantCode(t, r, 0, "sim --json")
	var out simJSON
	if err := json.Unmarshal([]byte(r.stdout), &out); err != nil {
		t.Fatalf("sim --json: %v: %s", err, r.stdout)
	}
	// Young √(2·60·7200) = √864000 = 929.5 s.
	if len(out.Curves) != 2 || out.Young < 929 || out.Young > 930 || out.Daly >= out.Young {
		t.Fatalf("sim: %d curves, young %v daly %v", len(out.Curves), out.Young, out.Daly)
	}
	for _, c := range out.Curves {
		marks := 0
		for _, p := range c.Points {
			if p.Mark != "" {
				marks++
			}
			if p.Runs != 200 || p.MeanWaste <= 0 || p.MeanWaste >= 1 {
				t.Fatalf("%s: point %+v", c.Dist, p)
			}
		}
		if len(c.Points) != 11 || marks != 2 {
			t.Fatalf("%s: %d points, %d marked; want 9 + Young + Daly", c.Dist, len(c.Points), marks)
		}
	}
	b, err := os.ReadFile(svg)
	if err != nil || xml.Unmarshal(b, new(struct{})) != nil || !strings.Contains(string(b), "Young") {
		t.Fatalf("SVG: %v %d bytes", err, len(b))
	}
	wantCode(t, runCkpt(t, dir, "sim", "--dist", "gamma"), exitUsage, "sim with an unknown law")
	wantCode(t, runCkpt(t, dir, "sim", "--mtbf", "0s"), exitUsage, "sim with no MTBF")
}
