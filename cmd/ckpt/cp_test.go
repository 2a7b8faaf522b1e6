package main

import (
	"context"
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ckpt/ckpt/internal/repo"
	"github.com/ckpt/ckpt/internal/s3test"
)

// TestCopyToS3: ckpt cp sends a checkpoint to a real S3 server; it verifies
// there under the same ID, and a second cp sends nothing.
func TestCopyToS3(t *testing.T) {
	srv := s3test.Start(t)
	srv.Env(t)
	dir := filepath.Join(t.TempDir(), "repo")
	ctx := context.Background()
	r, err := repo.InitDir(ctx, dir, repo.InitOptions{})
	if err != nil {
		t.Fatal(err)
	}
	w, _ := r.NewWriter(ctx, repo.WriterOptions{Name: "job", Kind: repo.KindLibrary})
	ow, _ := w.Create("grid", "bytes", nil)
	data := make([]byte, 3<<20)
	for i := range data {
		data[i] = byte(i * 31 % 253)
	}
	ow.Write(data)
	m, err := w.Commit(ctx)
	if err != nil {
		t.Fatal(err)
	}
	s3 := srv.Location("ckpt/cli")
	res := runCkpt(t, dir, "cp", "job", "--to", s3)
	wantCode(t, res, exitOK, "cp to s3")
	if strings.TrimSpace(res.stdout) != m.ID() {
		t.Fatalf("cp printed %q, want %s", res.stdout, m.ID())
	}
	wantCode(t, runCkpt(t, s3, "verify", "job"), exitOK, "verify on s3")
	res = runCkpt(t, s3, "ls", "--json")
	var list []map[string]any
	if err := json.Unmarshal([]byte(res.stdout), &list); err != nil || len(list) != 1 || list[0]["id"] != m.ID() {
		t.Fatalf("ls on s3: %v %s", err, res.stdout)
	}
	res = runCkpt(t, dir, "cp", "job", "--to", s3)
	if !strings.Contains(res.stderr, "already") {
		t.Fatalf("second cp: %s", res.stderr)
	}
}
