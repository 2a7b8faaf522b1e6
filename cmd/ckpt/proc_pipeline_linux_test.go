package main

import (
	"os/exec"
	"testing"
)

func TestShellPipeline(t *testing.T) {
	requireRoot(t)
	want, got := dumpKillRestore(t, "pipeline", func(out string) *exec.Cmd {
		return exec.Command("/bin/sh", "-c", `i=0; while [ $i -lt 300 ]; do echo $i; i=$((i+1)); sleep 0.005; done | { s=0; while read i; do s=$((s+i)); echo "$i $s"; done; } > "$1"`, "sh", out)
	}, func(out string) bool { return fileSize(out) > 300 })
	if string(got) != string(want) {
		t.Fatalf("pipeline output differs:\n%s\nwant:\n%s", got, want)
	}
}
