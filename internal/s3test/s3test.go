// Package s3test starts a real S3-compatible server (versitygw, installed by
// .ci/run with `go install github.com/versity/versitygw/cmd/versitygw`) on
// loopback for tests. Tests skip when it is missing, unless
// CKPT_REQUIRE_S3=1 (CI) makes that a failure.
package s3test

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

// Server is a running test server.
type Server struct {
	Endpoint  string // 127.0.0.1:PORT
	AccessKey string
	SecretKey string
}

// Location returns an s3: repository location for bucket/prefix.
func (s *Server) Location(bucketAndPrefix string) string {
	return "s3:http://" + s.Endpoint + "/" + bucketAndPrefix
}

// Env sets the credentials in the environment for the test's duration.
func (s *Server) Env(t testing.TB) {
	t.Setenv("AWS_ACCESS_KEY_ID", s.AccessKey)
	t.Setenv("AWS_SECRET_ACCESS_KEY", s.SecretKey)
}

func binary() string {
	if p, err := exec.LookPath("versitygw"); err == nil {
		return p
	}
	if home, err := os.UserHomeDir(); err == nil {
		p := filepath.Join(home, "go", "bin", "versitygw")
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	return ""
}

// Start runs versitygw with a fresh data directory; it stops with the test.
func Start(t testing.TB) *Server {
	t.Helper()
	bin := binary()
	if bin == "" {
		if os.Getenv("CKPT_REQUIRE_S3") == "1" {
			t.Fatal("versitygw not found and CKPT_REQUIRE_S3=1 (install: go install github.com/versity/versitygw/cmd/versitygw@v1.8.0)")
		}
		t.Skip("skipping: versitygw not installed (go install github.com/versity/versitygw/cmd/versitygw@v1.8.0)")
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	s := &Server{Endpoint: addr, AccessKey: "ckpttest", SecretKey: "ckpt-test-secret-key"}
	dir := t.TempDir()
	cmd := exec.Command(bin, "--access", s.AccessKey, "--secret", s.SecretKey, "--port", addr, "--quiet", "posix", dir)
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	// Ready when it accepts connections.
	deadline := time.Now().Add(20 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", addr, 100*time.Millisecond)
		if err == nil {
			c.Close()
			return s
		}
		if time.Now().After(deadline) {
			t.Fatalf("versitygw did not start on %s: %v", addr, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// String describes the server.
func (s *Server) String() string { return fmt.Sprintf("versitygw at %s", s.Endpoint) }
