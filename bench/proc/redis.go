package main

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// redisState is what a restored redis-server must still hold: its key
// count, the digest of the whole keyspace and a few values.
type redisState struct{ dbsize, digest, first, last string }

// startRedis starts redis-server in a session of its own with stdio to a
// log file (as runCRIU starts memfill, so both tools see the same process:
// no terminal, no pipe to us), fills it with mib MiB of 1 KiB random values
// and returns it with its port and state.
func startRedis(bin, dir string, mib int) (*exec.Cmd, int, redisState) {
	port := freePort()
	logf := filepath.Join(dir, "redis-bench.log")
	f, err := os.Create(logf)
	check(err)
	defer f.Close()
	cmd := exec.Command(bin, "--port", strconv.Itoa(port), "--bind", "127.0.0.1",
		"--save", "", "--appendonly", "no", "--enable-debug-command", "yes",
		"--daemonize", "no", "--dir", dir)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	cmd.Stdout, cmd.Stdin, cmd.Stderr = f, nil, f
	check(cmd.Start())
	for i := 0; ; i++ {
		if out, _ := redisCLI(port, "PING"); out == "PONG" {
			break
		}
		if i == 500 {
			b, _ := os.ReadFile(logf)
			fail("redis-server did not answer PING: %s", b)
		}
		time.Sleep(10 * time.Millisecond)
	}
	populate(port, mib<<10)
	st := redisGet(port, mib<<10)
	quiesce(cmd.Process.Pid)
	return cmd, port, st
}

// quiesce waits until redis has closed the connections of the redis-cli
// runs above: under load the last one can still be in CLOSE_WAIT when the
// dump starts, and neither tool dumps a half-closed connection. Bound to
// 127.0.0.1 only, an idle redis-server holds one socket (the listener).
func quiesce(pid int) {
	for i := 0; ; i++ {
		ents, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
		check(err)
		n := 0
		for _, e := range ents {
			if l, _ := os.Readlink(fmt.Sprintf("/proc/%d/fd/%s", pid, e.Name())); strings.HasPrefix(l, "socket:") {
				n++
			}
		}
		if n == 1 {
			return
		}
		if i == 1000 {
			fail("redis-server %d still holds %d sockets after 10 s", pid, n)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// populate SETs key:0 … key:n-1 to 1 KiB of random bytes each through
// redis-cli --pipe. The values are random because DEBUG POPULATE's are
// alike ("value:N" and zeros): ckpt would store them deduplicated in a few
// MiB and CRIU whole, which measures the data, not the tools.
func populate(port, n int) {
	cmd := exec.Command("redis-cli", "-p", strconv.Itoa(port), "--pipe")
	in, err := cmd.StdinPipe()
	check(err)
	var out strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &out
	check(cmd.Start())
	w := bufio.NewWriterSize(in, 1<<20)
	rng := rand.New(rand.NewPCG(1, 2))
	val := make([]byte, 1024)
	for i := 0; i < n; i++ {
		for j := 0; j < len(val); j += 8 {
			binary.LittleEndian.PutUint64(val[j:], rng.Uint64())
		}
		key := "key:" + strconv.Itoa(i)
		fmt.Fprintf(w, "*3\r\n$3\r\nSET\r\n$%d\r\n%s\r\n$%d\r\n", len(key), key, len(val))
		w.Write(val)
		w.WriteString("\r\n")
	}
	check(w.Flush())
	in.Close()
	if err := cmd.Wait(); err != nil || !strings.Contains(out.String(), "errors: 0, replies: "+strconv.Itoa(n)) {
		fail("redis-cli --pipe: %v: %s", err, out.String())
	}
}

// redisGet reads the state of a redis holding keys key:0 … key:n-1.
func redisGet(port, n int) redisState {
	var s redisState
	var err error
	for _, q := range []struct {
		to   *string
		args []string
	}{
		{&s.dbsize, []string{"DBSIZE"}},
		{&s.digest, []string{"DEBUG", "DIGEST"}},
		{&s.first, []string{"GET", "key:0"}},
		{&s.last, []string{"GET", "key:" + strconv.Itoa(n-1)}},
	} {
		if *q.to, err = redisCLI(port, q.args...); err != nil {
			fail("redis-cli %v: %v", q.args, err)
		}
	}
	return s
}

func redisCLI(port int, args ...string) (string, error) {
	out, err := exec.Command("redis-cli", append([]string{"-p", strconv.Itoa(port)}, args...)...).Output()
	return strings.TrimSpace(string(out)), err
}

// redisCheck fails unless the restored redis on port holds what was dumped,
// then shuts it down and reaps it.
func redisCheck(port, pid int, want redisState, who string) {
	n, _ := strconv.Atoi(want.dbsize)
	got := redisGet(port, n)
	if got != want || n == 0 || got.last == "" {
		fail("%s: restored redis holds %+v, dumped one held %+v", who, got, want)
	}
	redisCLI(port, "SHUTDOWN", "NOSAVE")
	var ws unix.WaitStatus
	if _, err := unix.Wait4(pid, &ws, 0, nil); err != nil {
		waitGone(pid)
	}
}

// freePort is a TCP port free on 127.0.0.1 just now.
func freePort() int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	check(err)
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func rssMiB(pid int) int64 {
	b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	for _, l := range strings.Split(string(b), "\n") {
		if f := strings.Fields(l); len(f) >= 2 && f[0] == "VmRSS:" {
			kb, _ := strconv.ParseInt(f[1], 10, 64)
			return kb >> 10
		}
	}
	return 0
}

func runRedisCkpt(bin, redis, dir string, mib int) (time.Duration, time.Duration, int64, int64, int64) {
	repo := newRepo(bin, dir)
	defer os.RemoveAll(repo)
	defer os.Remove(filepath.Join(dir, "redis-bench.log"))
	cmd, port, want := startRedis(redis, dir, mib)
	fmt.Fprintf(os.Stderr, "redis %d: %s keys, RSS %d MiB\n", cmd.Process.Pid, want.dbsize, rssMiB(cmd.Process.Pid))
	td, rssD, _ := timed(bin, "--repo", repo, "dump", "--codec", ckptCodec, "--name", "redis", strconv.Itoa(cmd.Process.Pid))
	cmd.Wait()
	reapAll()
	size := duBytes(repo)
	tr, rssR, out := timed(bin, "--repo", repo, "restore", "--detach", "redis")
	redisCheck(port, restoredPID(out), want, "ckpt")
	return td, tr, size, rssD, rssR
}

func runRedisCRIU(criu, redis, dir string, mib int) (time.Duration, time.Duration, int64) {
	img := newImages(dir)
	defer os.RemoveAll(img)
	defer os.Remove(filepath.Join(dir, "redis-bench.log"))
	cmd, port, want := startRedis(redis, dir, mib)
	pid := cmd.Process.Pid
	td, _, _ := timed(criu, "dump", "-t", strconv.Itoa(pid), "-D", img, "-o", "dump.log")
	cmd.Wait()
	reapAll()
	size := duBytes(img)
	tr, _, _ := timed(criu, "restore", "-D", img, "-d", "-o", "restore.log")
	redisCheck(port, pid, want, "CRIU")
	return td, tr, size
}
