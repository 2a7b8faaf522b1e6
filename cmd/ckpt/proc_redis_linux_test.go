package main

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// redisConn is a minimal RESP client on one TCP connection.
type redisConn struct {
	t *testing.T
	c net.Conn
	r *bufio.Reader
}

// do sends a command and returns the reply: a status, an integer, a bulk
// string ("(nil)" for none), or an array joined with newlines.
func (rc *redisConn) do(args ...string) string {
	rc.t.Helper()
	var b strings.Builder
	fmt.Fprintf(&b, "*%d\r\n", len(args))
	for _, a := range args {
		fmt.Fprintf(&b, "$%d\r\n%s\r\n", len(a), a)
	}
	_ = rc.c.SetDeadline(time.Now().Add(20 * time.Second))
	if _, err := rc.c.Write([]byte(b.String())); err != nil {
		rc.t.Fatalf("redis %v: %v", args, err)
	}
	s, err := rc.reply()
	if err != nil {
		rc.t.Fatalf("redis %v: %v", args, err)
	}
	return s
}

func (rc *redisConn) reply() (string, error) {
	line, err := rc.r.ReadString('\n')
	if err != nil {
		return "", err
	}
	line = strings.TrimSuffix(line, "\r\n")
	if line == "" {
		return "", fmt.Errorf("empty reply")
	}
	switch line[0] {
	case '+', ':':
		return line[1:], nil
	case '-':
		return "", fmt.Errorf("error reply %q", line)
	case '$':
		n, _ := strconv.Atoi(line[1:])
		if n < 0 {
			return "(nil)", nil
		}
		buf := make([]byte, n+2)
		if _, err := io.ReadFull(rc.r, buf); err != nil {
			return "", err
		}
		return string(buf[:n]), nil
	case '*':
		n, _ := strconv.Atoi(line[1:])
		var out []string
		for i := 0; i < n; i++ {
			s, err := rc.reply()
			if err != nil {
				return "", err
			}
			out = append(out, s)
		}
		return strings.Join(out, "\n"), nil
	}
	return "", fmt.Errorf("unknown reply %q", line)
}

func infoField(info, key string) string {
	for _, l := range strings.Split(info, "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(l), key+":"); ok {
			return v
		}
	}
	return ""
}

// redisWork is the test's workload, in two halves: the dump falls between
// them. It returns the expected value of every key it touches.
func redisWork(rc *redisConn, half int, want map[string]string) {
	lo, hi := 0, 500
	if half == 1 {
		lo, hi = 500, 1000
	}
	for i := lo; i < hi; i++ {
		k, v := fmt.Sprintf("key:%04d", i), strings.Repeat(strconv.Itoa(i%10), 1+i%97)
		rc.do("SET", k, v)
		want[k] = v
		rc.do("INCRBY", "counter", strconv.Itoa(i))
		rc.do("RPUSH", "list", strconv.Itoa(i))
		if i%3 == 0 {
			rc.do("DEL", fmt.Sprintf("key:%04d", i/2))
			delete(want, fmt.Sprintf("key:%04d", i/2))
		}
	}
	sum := 0
	for i := 0; i < hi; i++ {
		sum += i
	}
	want["counter"] = strconv.Itoa(sum)
}

// TestRedis dumps redis-server holding keys with a client connected, kills
// it, restores it: the client goes on on the same socket (no reconnect:
// the server sees the same client id and no new connection), the state
// equals the workload's, and the PID is the same.
func TestRedis(t *testing.T) {
	requireRoot(t)
	requireTool(t, "/usr/bin/redis-server")
	dir := t.TempDir()
	repoDir := filepath.Join(dir, "repo")
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	logf, err := os.Create(filepath.Join(dir, "redis.log"))
	if err != nil {
		t.Fatal(err)
	}
	defer logf.Close()
	cmd := exec.Command("/usr/bin/redis-server", "--port", strconv.Itoa(port), "--bind", "127.0.0.1",
		"--save", "", "--appendonly", "no", "--daemonize", "no", "--dir", dir, "--protected-mode", "no", "--logfile", "")
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	pid := cmd.Process.Pid
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	t.Cleanup(func() { _ = syscall.Kill(pid, syscall.SIGKILL) })
	var c net.Conn
	waitFor(t, "redis-server to listen", func() bool {
		c, err = net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", port))
		return err == nil
	})
	defer c.Close()
	rc := &redisConn{t: t, c: c, r: bufio.NewReader(c)}
	want := map[string]string{}
	redisWork(rc, 0, want)
	id := rc.do("CLIENT", "ID")
	info := rc.do("INFO")
	runID, conns := infoField(info, "run_id"), infoField(info, "total_connections_received")

	r := runCkpt(t, repoDir, "dump", "--name", "redis", strconv.Itoa(pid))
	if r.code != 0 {
		t.Fatalf("dump: exit %d: %s", r.code, r.stderr)
	}
	ckptID := strings.TrimSpace(r.stdout)
	<-exited
	r = runCkpt(t, repoDir, "restore", "--detach", ckptID[:12])
	if r.code != 0 {
		t.Fatalf("restore: exit %d: %s", r.code, r.stderr)
	}
	if got := strings.TrimSpace(r.stdout); got != strconv.Itoa(pid) {
		t.Fatalf("restored root PID %s, want %d", got, pid)
	}
	if r.stderr != "" {
		t.Logf("restore: %s", r.stderr)
	}
	// The same connection goes on.
	redisWork(rc, 1, want)
	if got := rc.do("CLIENT", "ID"); got != id {
		t.Errorf("client id %s after restore, was %s (the connection was replaced)", got, id)
	}
	info = rc.do("INFO")
	if got := infoField(info, "process_id"); got != strconv.Itoa(pid) {
		t.Errorf("redis process_id %s, want %d", got, pid)
	}
	if got := infoField(info, "run_id"); got != runID {
		t.Errorf("run_id %s after restore, was %s (redis started again)", got, runID)
	}
	if got := infoField(info, "total_connections_received"); got != conns {
		t.Errorf("total_connections_received %s after restore, was %s (the client reconnected)", got, conns)
	}
	if got := rc.do("DBSIZE"); got != strconv.Itoa(len(want)+1) { // + list
		t.Errorf("DBSIZE %s, want %d", got, len(want)+1)
	}
	for k, v := range want {
		if got := rc.do("GET", k); got != v {
			t.Fatalf("GET %s = %q, want %q", k, got, v)
		}
	}
	if got := rc.do("LLEN", "list"); got != "1000" {
		t.Errorf("LLEN list = %s, want 1000", got)
	}
	if got := rc.do("LINDEX", "list", "777"); got != "777" {
		t.Errorf("LINDEX list 777 = %s", got)
	}
	// A new client is accepted by the restored listener.
	c2, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", port))
	if err != nil {
		t.Fatalf("new connection to the restored redis: %v", err)
	}
	defer c2.Close()
	rc2 := &redisConn{t: t, c: c2, r: bufio.NewReader(c2)}
	if got := rc2.do("GET", "key:0999"); got != want["key:0999"] {
		t.Errorf("second client GET = %q", got)
	}
	_ = syscall.Kill(pid, syscall.SIGKILL)
}
