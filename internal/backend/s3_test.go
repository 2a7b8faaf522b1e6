package backend

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"testing"
	"time"

	"github.com/ckpt/ckpt/internal/s3test"
	"github.com/minio/minio-go/v7"
)

func openTestS3(t *testing.T, loc string) *S3 {
	t.Helper()
	cfg, err := ParseS3(loc)
	if err != nil {
		t.Fatal(err)
	}
	be, err := OpenS3(context.Background(), cfg, true)
	if err != nil {
		t.Fatal(err)
	}
	return be
}

func TestS3(t *testing.T) {
	srv := s3test.Start(t)
	srv.Env(t)
	testBackend(t, openTestS3(t, srv.Location("ckpt/repo1")))
}

func TestS3MissingBucket(t *testing.T) {
	srv := s3test.Start(t)
	srv.Env(t)
	cfg, _ := ParseS3(srv.Location("nobucket"))
	if _, err := OpenS3(context.Background(), cfg, false); !errors.Is(err, ErrNotExist) {
		t.Fatalf("missing bucket: %v", err)
	}
}

// TestS3LockLeases: another holder's live lease blocks an exclusive lock;
// the lease of a holder that died (expired, never removed) does not.
func TestS3LockLeases(t *testing.T) {
	srv := s3test.Start(t)
	srv.Env(t)
	be := openTestS3(t, srv.Location("ckpt/locks"))
	ctx := context.Background()
	plant := func(name string, expires time.Time) {
		b, _ := json.Marshal(lockRecord{Exclusive: false, Host: "elsewhere", PID: 1, Expires: expires})
		if _, err := be.c.PutObject(ctx, be.bucket, be.prefix+"locks/repo/"+name, bytes.NewReader(b), int64(len(b)), minio.PutObjectOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	plant("live", time.Now().Add(time.Hour))
	short, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
	defer cancel()
	if _, err := be.Lock(short, "repo", true); !errors.Is(err, ErrLocked) {
		t.Fatalf("exclusive lock beside a live shared lease: %v", err)
	}
	u, err := be.Lock(ctx, "repo", false)
	if err != nil {
		t.Fatalf("shared lock beside a shared lease: %v", err)
	}
	u.Unlock()
	be.c.RemoveObject(ctx, be.bucket, be.prefix+"locks/repo/live", minio.RemoveObjectOptions{})
	plant("dead", time.Now().Add(-time.Minute))
	x, err := be.Lock(ctx, "repo", true)
	if err != nil {
		t.Fatalf("an expired lease must not block: %v", err)
	}
	x.Unlock()
}

func TestParseS3(t *testing.T) {
	for _, tc := range []struct {
		in, bucket, prefix string
		ok                 bool
	}{
		{"s3:http://127.0.0.1:7070/b/p/q", "b", "p/q", true},
		{"s3:https://s3.example/b", "b", "", true},
		{"s3:ftp://x/b", "", "", false},
		{"s3:http://host", "", "", false},
		{"/local/dir", "", "", false},
	} {
		c, err := ParseS3(tc.in)
		if (err == nil) != tc.ok || c.Bucket != tc.bucket || c.Prefix != tc.prefix {
			t.Errorf("%s: %+v %v", tc.in, c, err)
		}
	}
}

// TestS3ManifestCreateOnly: a manifest is written with If-None-Match, so a
// second writer can never replace a committed manifest.
func TestS3ManifestCreateOnly(t *testing.T) {
	srv := s3test.Start(t)
	srv.Env(t)
	be := openTestS3(t, srv.Location("ckpt/cond"))
	ctx := context.Background()
	h := Handle{Kind: Manifest, Name: "m1"}
	if err := be.Save(ctx, h, []byte("first")); err != nil {
		t.Fatal(err)
	}
	if err := be.Save(ctx, h, []byte("second")); err != nil {
		t.Fatalf("a repeated manifest write must be a no-op, got %v", err)
	}
	if got, err := be.Load(ctx, h); err != nil || string(got) != "first" {
		t.Fatalf("the committed manifest was replaced: %q %v", got, err)
	}
	// Level records are replaced in place.
	l := Handle{Kind: Level, Name: "m1.partner"}
	be.Save(ctx, l, []byte("a"))
	be.Save(ctx, l, []byte("b"))
	if got, _ := be.Load(ctx, l); string(got) != "b" {
		t.Fatalf("level record not replaced: %q", got)
	}
}
