package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ckpt/ckpt/internal/backend"
	"github.com/ckpt/ckpt/internal/proctest"
)

// The migration tests run two network namespaces joined by a veth pair,
// each with its own agent. One machine has one PID space, so the
// destination agent runs in its own PID namespace as well (unshare --pid
// --fork --mount-proc): the migrated process gets its original PID there
// while the source, frozen until the destination confirms, still holds
// that PID here. Between machines no PID namespace is needed.

const (
	migIPA  = "10.77.0.1"
	migIPB  = "10.77.0.2"
	migTok  = "migration-test-token-0123456789"
	migPort = "7411"
)

type migEnv struct {
	t        *testing.T
	dir      string
	nsA, nsB string
	tokFile  string
	agentA   *exec.Cmd
	agentB   *exec.Cmd // unshare --kill-child: killing it kills the agent's PID namespace
	logB     *lockedBuffer
}

func requireMigrationTools(t *testing.T) {
	t.Helper()
	requireRoot(t)
	for _, tool := range []string{"ip", "nsenter", "unshare", "tc"} {
		if _, err := exec.LookPath(tool); err != nil {
			if os.Getenv("CKPT_REQUIRE_ROOT") == "1" {
				t.Fatalf("%s is missing (iproute2, util-linux)", tool)
			}
			t.Skipf("%s is not installed", tool)
		}
	}
}

func sh(t *testing.T, name string, args ...string) {
	t.Helper()
	if out, err := exec.Command(name, args...).CombinedOutput(); err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
}

// newMigEnv creates the namespaces, the veth pair and both agents; envB
// is added to agent b's environment.
func newMigEnv(t *testing.T, envB ...string) *migEnv {
	requireMigrationTools(t)
	e := &migEnv{t: t, dir: t.TempDir()}
	id := os.Getpid() % 100000
	e.nsA, e.nsB = fmt.Sprintf("ckmig%da", id), fmt.Sprintf("ckmig%db", id)
	sh(t, "ip", "netns", "add", e.nsA)
	t.Cleanup(func() { exec.Command("ip", "netns", "del", e.nsA).Run() })
	sh(t, "ip", "netns", "add", e.nsB)
	t.Cleanup(func() { exec.Command("ip", "netns", "del", e.nsB).Run() })
	sh(t, "ip", "link", "add", "vmig", "netns", e.nsA, "type", "veth", "peer", "name", "vmig", "netns", e.nsB)
	for _, ns := range []struct{ name, ip string }{{e.nsA, migIPA}, {e.nsB, migIPB}} {
		sh(t, "ip", "-n", ns.name, "addr", "add", ns.ip+"/24", "dev", "vmig")
		sh(t, "ip", "-n", ns.name, "link", "set", "vmig", "up")
		sh(t, "ip", "-n", ns.name, "link", "set", "lo", "up")
	}
	e.tokFile = filepath.Join(e.dir, "token")
	os.WriteFile(e.tokFile, []byte(migTok+"\n"), 0o600)
	e.agentA = e.startAgent(t, "a", migIPA, nil)
	e.logB = &lockedBuffer{}
	e.agentB = e.startAgent(t, "b", migIPB, e.logB, envB...)
	return e
}

// startAgent runs an agent in namespace a or b; b's in a PID namespace
// of its own.
func (e *migEnv) startAgent(t *testing.T, node, ip string, log *lockedBuffer, env ...string) *exec.Cmd {
	ns := e.nsA
	args := []string{"--net=/run/netns/" + ns}
	if node == "b" {
		ns = e.nsB
		args = []string{"--net=/run/netns/" + ns, "unshare", "--pid", "--kill-child", "--mount-proc"}
	}
	args = append(args, ckptBin, "agent", "--verbose", "--listen", ip+":"+migPort, "--data-dir", filepath.Join(e.dir, "agent-"+node),
		"--node", node, "--group", "mig="+e.tokFile)
	cmd := exec.Command("nsenter", args...)
	cmd.Env = append(os.Environ(), env...)
	pr, pw, _ := os.Pipe()
	cmd.Stdout, cmd.Stderr = pw, pw
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	pw.Close()
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	ready := make(chan bool, 1)
	go func() {
		s := bufio.NewScanner(pr)
		said := false
		for s.Scan() {
			if log != nil {
				log.Write([]byte(s.Text() + "\n"))
			}
			if !said && strings.Contains(s.Text(), "listening on") {
				said = true
				ready <- true
			}
		}
		if !said {
			ready <- false
		}
	}()
	select {
	case ok := <-ready:
		if !ok {
			t.Fatalf("agent %s did not start", node)
		}
	case <-time.After(30 * time.Second):
		t.Fatalf("agent %s did not start in 30 s", node)
	}
	return cmd
}

// inA runs a command in namespace A (network only: same mount and PID
// namespaces as the test, so ckpt can dump what runs there).
func (e *migEnv) inA(name string, args ...string) *exec.Cmd {
	return exec.Command("nsenter", append([]string{"--net=/run/netns/" + e.nsA, name}, args...)...)
}

func (e *migEnv) migrate(t *testing.T, pid int, to string, extra ...string) result {
	t.Helper()
	args := append([]string{"migrate", strconv.Itoa(pid), "--to", to, "--group", "mig", "--token-file", e.tokFile}, extra...)
	return runResult(t, e.inA(ckptBin, args...))
}

// agentBPID is the host PID of agent b (the child of unshare).
func (e *migEnv) agentBPID(t *testing.T) int {
	t.Helper()
	var pid int
	waitFor(t, "agent b's PID", func() bool {
		b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/children", e.agentB.Process.Pid, e.agentB.Process.Pid))
		f := strings.Fields(string(b))
		if len(f) == 0 {
			return false
		}
		pid, _ = strconv.Atoi(f[0])
		return pid > 0
	})
	// nsenter execs unshare; unshare forks the agent.
	b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid))
	if strings.TrimSpace(string(b)) != "ckpt" {
		t.Fatalf("child of unshare is %q, not ckpt", b)
	}
	return pid
}

// inPIDNS lists the host PIDs of processes in the PID namespace of host
// process ref other than ref itself, with their PIDs inside.
func inPIDNS(ref int) map[int]int {
	want, err := os.Readlink(fmt.Sprintf("/proc/%d/ns/pid", ref))
	if err != nil {
		return nil
	}
	out := map[int]int{}
	ents, _ := os.ReadDir("/proc")
	for _, en := range ents {
		pid, err := strconv.Atoi(en.Name())
		if err != nil || pid == ref {
			continue
		}
		if l, _ := os.Readlink(fmt.Sprintf("/proc/%d/ns/pid", pid)); l != want {
			continue
		}
		st, _ := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
		for _, line := range strings.Split(string(st), "\n") {
			if f := strings.Fields(line); len(f) >= 3 && f[0] == "NSpid:" {
				inner, _ := strconv.Atoi(f[len(f)-1])
				out[pid] = inner
			}
		}
	}
	return out
}

// beats parses a heartbeat output: the "HB SEQ VALUE" part of each beat,
// PIDs seen, timestamps, and whether it ended with PASS.
type beatLog struct {
	seqVal []string
	pids   map[string]bool
	times  []int64
	pass   bool
	fail   string
}

func readBeats(t *testing.T, path string) beatLog {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	l := beatLog{pids: map[string]bool{}}
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		switch {
		case len(f) == 5 && f[0] == "HB":
			l.seqVal = append(l.seqVal, f[1]+" "+f[2])
			l.pids[f[3]] = true
			ns, _ := strconv.ParseInt(f[4], 10, 64)
			l.times = append(l.times, ns)
		case len(f) >= 1 && f[0] == "PASS":
			l.pass = true
		case len(f) >= 1 && f[0] == "FAIL":
			l.fail = line
		}
	}
	return l
}

func (l beatLog) maxGap() time.Duration {
	var g int64
	for i := 1; i < len(l.times); i++ {
		g = max(g, l.times[i]-l.times[i-1])
	}
	return time.Duration(g)
}

// startBeats starts the heartbeat fixture in namespace A, output to a
// file, and waits for its first beats.
func (e *migEnv) startBeats(t *testing.T, name string, mib, permille, beats int) (*exec.Cmd, string) {
	t.Helper()
	bin := proctest.Build(t, "heartbeat", false)
	os.MkdirAll(filepath.Join(e.dir, "out"), 0o755)
	out := filepath.Join(e.dir, "out", name+".out")
	f, err := os.OpenFile(out, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	cmd := e.inA(bin, strconv.Itoa(mib), strconv.Itoa(permille), "12345", strconv.Itoa(beats))
	cmd.Stdout, cmd.Stderr = f, f
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	waitFor(t, name+" beating", func() bool { b, _ := os.ReadFile(out); return strings.Count(string(b), "\nHB ") >= 20 })
	return cmd, out
}

// TestMigrateBetweenNamespaces: a process in namespace A that writes 5 %
// of its 64 MiB a second is migrated with `ckpt migrate` to the agent in
// namespace B. The source is killed only after B restored it; there it
// runs with its original PID (inside B's PID namespace) in B's network
// namespace, and its output continues: the beats (sequence and generator
// state) equal those of an uninterrupted run of the same program, and its
// memory checks out (PASS).
func TestMigrateBetweenNamespaces(t *testing.T) {
	e := newMigEnv(t)
	// The reference run, uninterrupted, beside the migrated one.
	bin := proctest.Build(t, "heartbeat", false)
	refOut := filepath.Join(e.dir, "ref.out")
	rf, _ := os.Create(refOut)
	ref := exec.Command(bin, "64", "50", "12345", "400")
	ref.Stdout = rf
	if err := ref.Start(); err != nil {
		t.Fatal(err)
	}
	rf.Close()
	src, out := e.startBeats(t, "mig", 64, 50, 400)
	pid := src.Process.Pid
	agentB := e.agentBPID(t)

	res := e.migrate(t, pid, migIPB+":"+migPort, "--json")
	wantCode(t, res, 0, "migrate")
	var mj migrateJSON
	if err := json.Unmarshal([]byte(res.stdout), &mj); err != nil {
		t.Fatalf("migrate --json: %v\n%s", err, res.stdout)
	}
	t.Logf("migrated: %d rounds %+v, pre-copied %d KiB, final %d KiB, frozen %.1f ms, restore %.1f ms, total %.1f ms",
		len(mj.Rounds), mj.Rounds, mj.PreCopied>>10, mj.Final>>10, mj.FrozenMS, mj.RestoreMS, mj.TotalMS)
	if len(mj.Rounds) == 0 || mj.PreCopied < 64<<20 || mj.Node != "b" || !mj.Prestaged {
		t.Errorf("no pre-copy, memory not built during the transfer, or wrong node: %+v\nagent b: %s", mj, e.logB)
	}
	// The source is gone: killed by ckpt after the confirmation.
	err := src.Wait()
	if ws, ok := src.ProcessState.Sys().(syscall.WaitStatus); !ok || !ws.Signaled() || ws.Signal() != syscall.SIGKILL {
		t.Errorf("source ended with %v, want SIGKILL", err)
	}
	// On B: the same PID inside B's PID namespace, in B's network namespace.
	var host int
	for h, inner := range inPIDNS(agentB) {
		if inner == pid {
			host = h
		}
	}
	if host == 0 {
		t.Fatalf("no process with PID %d in B's PID namespace: %v\nagent b: %s", pid, inPIDNS(agentB), e.logB)
	}
	nsB, _ := os.Readlink(fmt.Sprintf("/proc/%d/ns/net", agentB))
	if l, _ := os.Readlink(fmt.Sprintf("/proc/%d/ns/net", host)); l != nsB {
		t.Errorf("migrated process is in network namespace %s, want B's %s", l, nsB)
	}
	waitFor(t, "the migrated process to finish", func() bool { return readBeats(t, out).pass || readBeats(t, out).fail != "" })
	ref.Wait()
	got, want := readBeats(t, out), readBeats(t, refOut)
	if got.fail != "" || !got.pass || !want.pass {
		t.Fatalf("migrated: %q pass %v; reference pass %v", got.fail, got.pass, want.pass)
	}
	if strings.Join(got.seqVal, "\n") != strings.Join(want.seqVal, "\n") {
		t.Fatalf("migrated output differs from the uninterrupted run: %d beats vs %d", len(got.seqVal), len(want.seqVal))
	}
	if len(got.pids) != 1 || !got.pids[strconv.Itoa(pid)] {
		t.Errorf("PIDs in the output: %v, want only %d", got.pids, pid)
	}
	t.Logf("%d beats equal the uninterrupted run; largest gap %v", len(got.seqVal), got.maxGap())
}

// TestMigrateFailuresLeaveSourceRunning: an unreachable destination, a
// wrong token, a destination whose restore fails (a file the process has
// open is missing there), and a destination killed mid-transfer: each
// migrate fails with a message saying what happened, the source keeps
// running (not stopped, still beating) and B holds no process.
func TestMigrateFailuresLeaveSourceRunning(t *testing.T) {
	e := newMigEnv(t)
	src, out := e.startBeats(t, "src", 64, 50, 0)
	pid := src.Process.Pid
	fdsAtStart := fdLinks(pid)
	stillRunning := func(what string) {
		t.Helper()
		if s := proctest.State(pid); s == 't' || s == 'T' || s == 0 || s == 'Z' {
			t.Fatalf("%s: source in state %q", what, s)
		}
		n := len(readBeats(t, out).seqVal)
		waitFor(t, what+": source beating again", func() bool { return len(readBeats(t, out).seqVal) >= n+5 })
		if fds := fdLinks(pid); fds != fdsAtStart {
			t.Errorf("%s: source's fds are %s, were %s (a userfaultfd left?)", what, fds, fdsAtStart)
		}
	}
	agentB := e.agentBPID(t)
	nothingOnB := func(what string) {
		t.Helper()
		if ps := inPIDNS(agentB); len(ps) != 0 {
			t.Errorf("%s: processes left in B's PID namespace: %v", what, ps)
		}
	}

	res := e.migrate(t, pid, migIPB+":7499")
	if res.code != 1 || !strings.Contains(res.stderr, "unreachable") || !strings.Contains(res.stderr, "runs on") {
		t.Fatalf("unreachable destination: exit %d, %s", res.code, res.stderr)
	}
	t.Log(strings.TrimSpace(res.stderr))
	stillRunning("unreachable")

	bad := filepath.Join(e.dir, "bad-token")
	os.WriteFile(bad, []byte("not-the-right-token-at-all\n"), 0o600)
	res = e.migrate(t, pid, migIPB+":"+migPort, "--token-file", bad)
	if res.code != 1 || !strings.Contains(res.stderr, "bad_token") {
		t.Fatalf("wrong token: exit %d, %s", res.code, res.stderr)
	}
	t.Log(strings.TrimSpace(res.stderr))
	stillRunning("wrong token")

	// The restore fails on B: B's mount namespace hides the directory of
	// the process's output file.
	sh(t, "nsenter", "-t", strconv.Itoa(agentB), "-m", "mount", "-t", "tmpfs", "none", filepath.Dir(out))
	res = e.migrate(t, pid, migIPB+":"+migPort)
	if res.code != 1 || !strings.Contains(res.stderr, "migration_failed") || !strings.Contains(res.stderr, "runs on") {
		t.Fatalf("failing restore: exit %d, %s", res.code, res.stderr)
	}
	t.Log(strings.TrimSpace(res.stderr))
	stillRunning("failed restore")
	nothingOnB("failed restore")
	sh(t, "nsenter", "-t", strconv.Itoa(agentB), "-m", "umount", filepath.Dir(out))

	// B stops (SIGSTOP: it takes nothing more) mid-transfer: the link is
	// slowed to 40 Mbit/s (64 MiB take 13 s); migrate gives up after its
	// stall timeout.
	sh(t, "ip", "netns", "exec", e.nsA, "tc", "qdisc", "add", "dev", "vmig", "root", "tbf", "rate", "40mbit", "burst", "64kb", "latency", "200ms")
	base := receivedBytes(agentB)
	stalled := make(chan result, 1)
	go func() { stalled <- e.migrate(t, pid, migIPB+":"+migPort, "--stall-timeout", "2s") }()
	waitFor(t, "the transfer to start", func() bool { return receivedBytes(agentB) > base+4<<20 })
	syscall.Kill(agentB, syscall.SIGSTOP)
	select {
	case res = <-stalled:
	case <-time.After(60 * time.Second):
		t.Fatal("migrate did not give up on a stopped destination")
	}
	syscall.Kill(agentB, syscall.SIGCONT)
	if res.code != 1 || !strings.Contains(res.stderr, "took nothing for 2s") || !strings.Contains(res.stderr, "runs on") {
		t.Fatalf("destination stopped: exit %d, %s", res.code, res.stderr)
	}
	t.Log(strings.TrimSpace(res.stderr))
	stillRunning("destination stopped")
	waitFor(t, "B to drop the cut migration", func() bool { return len(inPIDNS(agentB)) == 0 })

	// B dies mid-transfer: B's agent is killed once the transfer is under
	// way.
	base = receivedBytes(agentB)
	done := make(chan result, 1)
	go func() { done <- e.migrate(t, pid, migIPB+":"+migPort) }()
	waitFor(t, "the transfer to start", func() bool { return receivedBytes(agentB) > base+4<<20 })
	e.agentB.Process.Kill() // unshare --kill-child takes the agent (and its PID namespace) along
	e.agentB.Wait()
	select {
	case res = <-done:
	case <-time.After(60 * time.Second):
		t.Fatal("migrate did not return after the destination died")
	}
	if res.code != 1 || !strings.Contains(res.stderr, "runs on") {
		t.Fatalf("destination killed: exit %d, %s", res.code, res.stderr)
	}
	t.Log(strings.TrimSpace(res.stderr))
	stillRunning("destination killed")
	nothingOnB("destination killed")
}

// fdLinks lists pid's fds and what they point to.
func fdLinks(pid int) string {
	ents, _ := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	var out []string
	for _, e := range ents {
		l, _ := os.Readlink(fmt.Sprintf("/proc/%d/fd/%s", pid, e.Name()))
		out = append(out, e.Name()+"="+l)
	}
	return strings.Join(out, " ")
}

// receivedBytes reads the bytes a process has read from sockets and
// files (/proc/PID/io rchar): enough to see a transfer going.
func receivedBytes(pid int) int64 {
	b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/io", pid))
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "rchar: "); ok {
			n, _ := strconv.ParseInt(v, 10, 64)
			return n
		}
	}
	return 0
}

// TestDumpStreamRestoreStream: `ckpt dump --stream` piped into `ckpt
// restore --stream` (in a PID namespace of its own, as on another machine),
// the restore's stdout piped back into the dump's stdin as the
// confirmation: the process moves, the source is killed after the
// confirmation, and the output equals an uninterrupted run.
func TestDumpStreamRestoreStream(t *testing.T) {
	requireMigrationTools(t)
	dir := t.TempDir()
	bin := proctest.Build(t, "heartbeat", false)
	refOut, out := filepath.Join(dir, "ref.out"), filepath.Join(dir, "mig.out")
	rf, _ := os.Create(refOut)
	ref := exec.Command(bin, "32", "50", "777", "300")
	ref.Stdout = rf
	ref.Start()
	rf.Close()
	f, _ := os.OpenFile(out, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	src := exec.Command(bin, "32", "50", "777", "300")
	src.Stdout = f
	if err := src.Start(); err != nil {
		t.Fatal(err)
	}
	f.Close()
	t.Cleanup(func() { src.Process.Kill(); src.Wait(); ref.Process.Kill(); ref.Wait() })
	waitFor(t, "beats", func() bool { b, _ := os.ReadFile(out); return strings.Count(string(b), "\nHB ") >= 20 })

	fwdR, fwdW, _ := os.Pipe() // dump -> restore: the stream
	ackR, ackW, _ := os.Pipe() // restore -> dump: the confirmation
	var dumpErr, restErr strings.Builder
	dump := exec.Command(ckptBin, "dump", "--stream", strconv.Itoa(src.Process.Pid))
	dump.Stdin, dump.Stdout, dump.Stderr = ackR, fwdW, &dumpErr
	rest := exec.Command("unshare", "--pid", "--kill-child", "--mount-proc", ckptBin, "restore", "--stream")
	rest.Stdin, rest.Stdout, rest.Stderr = fwdR, ackW, &restErr
	if err := rest.Start(); err != nil {
		t.Fatal(err)
	}
	if err := dump.Start(); err != nil {
		t.Fatal(err)
	}
	fwdR.Close()
	fwdW.Close()
	ackR.Close()
	ackW.Close()
	if err := dump.Wait(); err != nil {
		t.Fatalf("dump --stream: %v\n%s\nrestore: %s", err, dumpErr.String(), restErr.String())
	}
	t.Log(strings.TrimSpace(dumpErr.String()))
	src.Wait()
	if ws := src.ProcessState.Sys().(syscall.WaitStatus); !ws.Signaled() || ws.Signal() != syscall.SIGKILL {
		t.Errorf("source: %v, want killed after the confirmation", src.ProcessState)
	}
	// The restore runs the program in the foreground to its end.
	if err := rest.Wait(); err != nil {
		t.Fatalf("restore --stream: %v\n%s", err, restErr.String())
	}
	ref.Wait()
	got, want := readBeats(t, out), readBeats(t, refOut)
	if !got.pass || strings.Join(got.seqVal, "\n") != strings.Join(want.seqVal, "\n") {
		t.Fatalf("streamed process: pass %v, %d beats; reference %d beats (fail %q)", got.pass, len(got.seqVal), len(want.seqVal), got.fail)
	}
	t.Logf("%d beats equal the uninterrupted run; largest gap %v", len(got.seqVal), got.maxGap())
}

// TestMigrateTree: a shell with the heartbeat as its child moves as one
// tree. Memory is built ahead only for single processes, so the
// destination restores this one the normal way (and says so); the output
// still equals an uninterrupted run and both PIDs are kept.
func TestMigrateTree(t *testing.T) {
	e := newMigEnv(t)
	bin := proctest.Build(t, "heartbeat", false)
	refOut := filepath.Join(e.dir, "ref.out")
	ref := startHeartbeat(t, refOut, os.O_TRUNC, 0, "16", "50", "99", "300")
	os.MkdirAll(filepath.Join(e.dir, "out"), 0o755)
	out := filepath.Join(e.dir, "out", "tree.out")
	f, _ := os.OpenFile(out, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	shell := e.inA("/bin/sh", "-c", bin+" 16 50 99 300 & wait")
	shell.Stdout, shell.Stderr = f, f
	shell.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := shell.Start(); err != nil {
		t.Fatal(err)
	}
	f.Close()
	t.Cleanup(func() { syscall.Kill(-shell.Process.Pid, syscall.SIGKILL); shell.Wait() })
	waitFor(t, "beats", func() bool { b, _ := os.ReadFile(out); return strings.Count(string(b), "\nHB ") >= 20 })
	agentB := e.agentBPID(t)
	res := e.migrate(t, shell.Process.Pid, migIPB+":"+migPort, "--json")
	wantCode(t, res, 0, "migrate")
	var mj migrateJSON
	json.Unmarshal([]byte(res.stdout), &mj)
	if mj.Prestaged {
		t.Errorf("a tree of two processes was prestaged: %+v", mj)
	}
	inB := inPIDNS(agentB)
	var pids []int
	for _, inner := range inB {
		pids = append(pids, inner)
	}
	if len(inB) != 2 {
		t.Fatalf("B holds %v, want the shell and its child", pids)
	}
	found := false
	for _, inner := range inB {
		found = found || inner == shell.Process.Pid
	}
	if !found {
		t.Errorf("shell PID %d not among %v in B", shell.Process.Pid, pids)
	}
	waitFor(t, "the migrated tree to finish", func() bool { l := readBeats(t, out); return l.pass || l.fail != "" })
	ref.Wait()
	got, want := readBeats(t, out), readBeats(t, refOut)
	if !got.pass || strings.Join(got.seqVal, "\n") != strings.Join(want.seqVal, "\n") {
		t.Fatalf("migrated tree: pass %v, %d beats; reference %d (fail %q)", got.pass, len(got.seqVal), len(want.seqVal), got.fail)
	}
	t.Logf("tree migrated (frozen %.1f ms, restore %.1f ms); %d beats equal the uninterrupted run", mj.FrozenMS, mj.RestoreMS, len(got.seqVal))
}

// TestMigrateKeepsTCPClient: a python3 server in namespace A serves a
// client outside both namespaces (the test itself) on a service address,
// 10.78.0.100, that both namespaces hold and the host routes to A. The
// server is migrated to B with its listener and the established
// connection (dumped in repair mode, so neither side's kernel closes it);
// the host's route to the service address is then moved to B, as an
// operator moves a service address, and the same client connection keeps
// working: the server answers from B with its original PID.
func TestMigrateKeepsTCPClient(t *testing.T) {
	e := newMigEnv(t)
	if _, err := exec.LookPath("python3"); err != nil {
		t.Skip("python3 is not installed")
	}
	id := os.Getpid() % 100000
	hA, hB := fmt.Sprintf("ckh%da", id), fmt.Sprintf("ckh%db", id)
	for _, l := range []struct{ host, ns, hostIP, nsIP string }{
		{hA, e.nsA, "10.78.1.1", "10.78.1.2"}, {hB, e.nsB, "10.78.2.1", "10.78.2.2"},
	} {
		sh(t, "ip", "link", "add", l.host, "type", "veth", "peer", "name", "vhost", "netns", l.ns)
		t.Cleanup(func() { exec.Command("ip", "link", "del", l.host).Run() })
		sh(t, "ip", "addr", "add", l.hostIP+"/24", "dev", l.host)
		sh(t, "ip", "link", "set", l.host, "up")
		sh(t, "ip", "-n", l.ns, "addr", "add", l.nsIP+"/24", "dev", "vhost")
		sh(t, "ip", "-n", l.ns, "link", "set", "vhost", "up")
		sh(t, "ip", "-n", l.ns, "route", "add", "default", "via", l.hostIP)
		sh(t, "ip", "-n", l.ns, "addr", "add", "10.78.0.100/32", "dev", "lo")
	}
	sh(t, "ip", "route", "add", "10.78.0.100/32", "via", "10.78.1.2", "dev", hA)
	t.Cleanup(func() { exec.Command("ip", "route", "del", "10.78.0.100/32").Run() })

	out := filepath.Join(e.dir, "server.out")
	f, _ := os.Create(out)
	server := e.inA("python3", "-u", "-c", `
import os, socket
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("10.78.0.100", 7600))
s.listen(4)
print("LISTEN", os.getpid(), flush=True)
c, peer = s.accept()
print("ACCEPTED", peer, flush=True)
while True:
    d = c.recv(100)
    if not d:
        break
    c.sendall(b"echo:" + d + b" from " + str(os.getpid()).encode() + b"\n")
`)
	server.Stdout, server.Stderr = f, f
	server.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := server.Start(); err != nil {
		t.Fatal(err)
	}
	f.Close()
	t.Cleanup(func() { server.Process.Kill(); server.Wait() })
	waitFor(t, "the server to listen", func() bool { b, _ := os.ReadFile(out); return strings.Contains(string(b), "LISTEN") })
	pid := server.Process.Pid

	conn, err := net.DialTimeout("tcp", "10.78.0.100:7600", 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	rd := bufio.NewReader(conn)
	ask := func(what string) string {
		t.Helper()
		conn.SetDeadline(time.Now().Add(20 * time.Second))
		if _, err := conn.Write([]byte(what)); err != nil {
			t.Fatalf("sending %q: %v", what, err)
		}
		line, err := rd.ReadString('\n')
		if err != nil {
			b, _ := os.ReadFile(out)
			t.Fatalf("reading the answer to %q: %v (server output: %s)", what, err, b)
		}
		return strings.TrimSpace(line)
	}
	want := fmt.Sprintf("echo:before from %d", pid)
	if got := ask("before"); got != want {
		t.Fatalf("before the migration: %q, want %q", got, want)
	}

	agentB := e.agentBPID(t)
	// The service address moves inside the freeze, once B runs the server
	// and before A's frozen copy is killed: A gives it up, the host routes
	// it to B (migrate runs in A's network namespace; the host's is this
	// test's).
	hook := fmt.Sprintf("ip addr del 10.78.0.100/32 dev lo && nsenter --net=/proc/%d/ns/net ip route replace 10.78.0.100/32 via 10.78.2.2 dev %s && echo moved $CKPT_MIGRATE_PID to $CKPT_MIGRATE_NODE", os.Getpid(), hB)
	res := e.migrate(t, pid, migIPB+":"+migPort, "--before-kill", hook)
	wantCode(t, res, 0, "migrate")
	if !strings.Contains(res.stderr, fmt.Sprintf("moved %d to b", pid)) {
		t.Errorf("the --before-kill hook did not run: %s", res.stderr)
	}
	server.Wait()
	if got := ask("after"); got != fmt.Sprintf("echo:after from %d", pid) {
		t.Fatalf("after the migration: %q, want the same connection answered by PID %d", got, pid)
	}
	host := 0
	for h, inner := range inPIDNS(agentB) {
		if inner == pid {
			host = h
		}
	}
	if host == 0 {
		t.Fatalf("the server is not in B's PID namespace")
	}
	nsB, _ := os.Readlink(fmt.Sprintf("/proc/%d/ns/net", agentB))
	if l, _ := os.Readlink(fmt.Sprintf("/proc/%d/ns/net", host)); l != nsB {
		t.Errorf("the server answers from network namespace %s, want B's %s", l, nsB)
	}
	// And the migrated listener still accepts.
	c2, err := net.DialTimeout("tcp", "10.78.0.100:7600", 10*time.Second)
	if err != nil {
		t.Errorf("a new connection to the migrated listener: %v", err)
	} else {
		c2.Close()
	}
	t.Log("the client's connection survived the migration from A to B")
}

// TestMigrateLostAnswer: B restores the process but the connection breaks
// before its answer arrives (CKPT_TEST_LOSE_MIGRATION_ANSWER makes B's
// agent close it). migrate asks B for the migration's outcome, learns it
// was restored, and kills the source: exactly one copy runs, on B.
func TestMigrateLostAnswer(t *testing.T) {
	e := newMigEnv(t, "CKPT_TEST_LOSE_MIGRATION_ANSWER=1")
	src, out := e.startBeats(t, "lost", 16, 50, 300)
	pid := src.Process.Pid
	agentB := e.agentBPID(t)
	res := e.migrate(t, pid, migIPB+":"+migPort)
	wantCode(t, res, 0, "migrate with the answer lost")
	if !strings.Contains(res.stderr, "the answer was lost") || !strings.Contains(res.stderr, "status says restored") {
		t.Errorf("stderr does not say what happened: %s", res.stderr)
	}
	t.Log(strings.TrimSpace(res.stderr))
	src.Wait()
	if ws := src.ProcessState.Sys().(syscall.WaitStatus); !ws.Signaled() || ws.Signal() != syscall.SIGKILL {
		t.Errorf("source: %v, want killed", src.ProcessState)
	}
	found := false
	for _, inner := range inPIDNS(agentB) {
		found = found || inner == pid
	}
	if !found {
		t.Fatalf("process %d not on B", pid)
	}
	waitFor(t, "the migrated process to finish", func() bool { l := readBeats(t, out); return l.pass || l.fail != "" })
	if l := readBeats(t, out); !l.pass || len(l.seqVal) != 300 {
		t.Fatalf("migrated process: pass %v, %d beats (fail %q)", l.pass, len(l.seqVal), l.fail)
	}
}

// TestDumpStreamStalledReader: the reader of `ckpt dump --stream` takes
// nothing (a pipe nobody reads); after --stall-timeout the dump fails with
// a message and the process runs on, not stopped, with its fds as before.
func TestDumpStreamStalledReader(t *testing.T) {
	requireMigrationTools(t)
	dir := t.TempDir()
	out := filepath.Join(dir, "out")
	src := startHeartbeat(t, out, os.O_TRUNC, 10, "32", "50", "5", "0")
	fds := fdLinks(src.Process.Pid)
	r, w, _ := os.Pipe()
	defer r.Close()
	var se strings.Builder
	dump := exec.Command(ckptBin, "dump", "--stream", "--no-ack", "--stall-timeout", "1s", strconv.Itoa(src.Process.Pid))
	dump.Stdout, dump.Stderr = w, &se
	start := time.Now()
	err := dump.Run()
	w.Close()
	if err == nil || !strings.Contains(se.String(), "took nothing for 1s") {
		t.Fatalf("dump --stream into a stalled pipe: %v after %v\n%s", err, time.Since(start), se.String())
	}
	t.Log(strings.TrimSpace(se.String()))
	if s := proctest.State(src.Process.Pid); s == 't' || s == 'T' {
		t.Fatalf("source left stopped (%c)", s)
	}
	n := strings.Count(func() string { b, _ := os.ReadFile(out); return string(b) }(), "\nHB ")
	waitFor(t, "the source beating on", func() bool { b, _ := os.ReadFile(out); return strings.Count(string(b), "\nHB ") >= n+5 })
	if got := fdLinks(src.Process.Pid); got != fds {
		t.Errorf("source fds %s, were %s", got, fds)
	}
}

// TestMigrateThereAndBack: A to B, then B back to A with `ckpt migrate` run
// inside B (its PID and mount namespaces): each agent receives once, and
// the process ends in A with its original PID in the host's PID
// namespace, its output equal to an uninterrupted run.
func TestMigrateThereAndBack(t *testing.T) {
	e := newMigEnv(t)
	refOut := filepath.Join(e.dir, "ref.out")
	ref := startHeartbeat(t, refOut, os.O_TRUNC, 0, "32", "50", "12345", "500")
	src, out := e.startBeats(t, "trip", 32, 50, 500)
	pid := src.Process.Pid
	agentB := e.agentBPID(t)
	wantCode(t, e.migrate(t, pid, migIPB+":"+migPort), 0, "migrate A -> B")
	src.Wait()
	n := len(readBeats(t, out).seqVal)
	waitFor(t, "beats on B", func() bool { return len(readBeats(t, out).seqVal) >= n+20 })

	back := exec.Command("nsenter", "-t", strconv.Itoa(agentB), "-p", "-m", "-n", ckptBin, "migrate", strconv.Itoa(pid),
		"--to", migIPA+":"+migPort, "--group", "mig", "--token-file", e.tokFile)
	if b, err := back.CombinedOutput(); err != nil {
		t.Fatalf("migrate B -> A (inside B): %v\n%s", err, b)
	} else {
		t.Log(strings.TrimSpace(string(b)))
	}
	// Killed there after A confirmed; B's agent reaps it.
	waitFor(t, "B to let the killed copy go", func() bool { return len(inPIDNS(agentB)) == 0 })
	// Back in the host's PID namespace under its own PID, in A's network
	// namespace.
	nsA, _ := os.Readlink("/proc/" + strconv.Itoa(e.agentA.Process.Pid) + "/ns/net")
	if l, _ := os.Readlink(fmt.Sprintf("/proc/%d/ns/net", pid)); l != nsA {
		t.Errorf("process %d is in network namespace %q, want A's %q", pid, l, nsA)
	}
	waitFor(t, "the process to finish", func() bool { l := readBeats(t, out); return l.pass || l.fail != "" })
	ref.Wait()
	got, want := readBeats(t, out), readBeats(t, refOut)
	if !got.pass || strings.Join(got.seqVal, "\n") != strings.Join(want.seqVal, "\n") {
		t.Fatalf("after two migrations: pass %v, %d beats; reference %d (fail %q)", got.pass, len(got.seqVal), len(want.seqVal), got.fail)
	}
	if len(got.pids) != 1 || !got.pids[strconv.Itoa(pid)] {
		t.Errorf("PIDs in the output: %v, want only %d", got.pids, pid)
	}
	t.Logf("%d beats equal the uninterrupted run after A -> B -> A; largest gap %v", len(got.seqVal), got.maxGap())
}

// TestMigrateOverMutualTLS: the destination agent serves HTTPS and wants a
// client certificate (docs/AGENT.md); migrate reaches it with
// CKPT_AGENT_CA/CERT/KEY like every agent client, and without them is
// refused while the source runs on.
func TestMigrateOverMutualTLS(t *testing.T) {
	requireMigrationTools(t)
	dir := t.TempDir()
	pki := testPKI(t, dir)
	tok := filepath.Join(dir, "tok")
	os.WriteFile(tok, []byte(migTok), 0o600)
	addr := freeAddr(t)
	cfg, _ := json.Marshal(map[string]any{"listen": addr, "data_dir": filepath.Join(dir, "agent"), "node": "tls",
		"groups": map[string]any{"mig": map[string]string{"token_file": tok}}, "tls": pki})
	cfgFile := filepath.Join(dir, "agent.json")
	os.WriteFile(cfgFile, cfg, 0o600)
	agentCmd := exec.Command("unshare", "--pid", "--kill-child", "--mount-proc", ckptBin, "agent", "--config", cfgFile)
	alog := &lockedBuffer{}
	agentCmd.Stdout, agentCmd.Stderr = alog, alog
	if err := agentCmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { agentCmd.Process.Kill(); agentCmd.Wait() })
	waitFor(t, "the TLS agent", func() bool { return strings.Contains(alog.String(), "listening on") })

	out := filepath.Join(dir, "out")
	src := startHeartbeat(t, out, os.O_TRUNC, 10, "16", "50", "8", "300")
	migrateWith := func(env ...string) result {
		cmd := exec.Command(ckptBin, "migrate", strconv.Itoa(src.Process.Pid), "--to", addr, "--group", "mig", "--token-file", tok, "--json")
		cmd.Env = append(os.Environ(), "CKPT_AGENT_CA=", "CKPT_AGENT_CERT=", "CKPT_AGENT_KEY=")
		cmd.Env = append(cmd.Env, env...)
		var so, se strings.Builder
		cmd.Stdout, cmd.Stderr = &so, &se
		err := cmd.Run()
		code := 0
		if ee, ok := err.(*exec.ExitError); ok {
			code = ee.ExitCode()
		}
		return result{so.String(), se.String(), code}
	}
	res := migrateWith()
	if res.code != 1 || !strings.Contains(res.stderr, "runs on") || !strings.Contains(res.stderr, "this agent uses TLS: set CKPT_AGENT_CA") {
		t.Fatalf("plain HTTP to a TLS agent: exit %d, %s", res.code, res.stderr)
	}
	t.Log(strings.TrimSpace(res.stderr))
	if s := proctest.State(src.Process.Pid); s == 't' || s == 'T' || s == 'Z' || s == 0 {
		t.Fatalf("source in state %q after the refusal", s)
	}
	res = migrateWith(backend.AgentCAEnv+"="+pki.CAFile, backend.AgentCertEnv+"="+pki.CertFile, backend.AgentKeyEnv+"="+pki.KeyFile)
	wantCode(t, res, 0, "migrate over mTLS")
	var mj migrateJSON
	json.Unmarshal([]byte(res.stdout), &mj)
	if mj.Node != "tls" || !mj.Prestaged {
		t.Errorf("answer %+v", mj)
	}
	src.Wait()
	waitFor(t, "the migrated process to finish", func() bool { l := readBeats(t, out); return l.pass || l.fail != "" })
	if l := readBeats(t, out); !l.pass || len(l.seqVal) != 300 {
		t.Fatalf("migrated over mTLS: pass %v, %d beats", l.pass, len(l.seqVal))
	}
}

// TestMigrateUsage: bad invocations say what is wrong, with the CLI's exit
// statuses, before anything is touched.
func TestMigrateUsage(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"migrate", "1"}, exitUsage, "--to HOST:PORT is required"},
		{[]string{"migrate", "1", "--to", "nohostport"}, exitUsage, "want HOST:PORT or agent://HOST:PORT/GROUP"},
		{[]string{"migrate", "1", "--to", "127.0.0.1:1"}, exitUsage, "--group is required"},
		{[]string{"migrate", "1", "--to", "agent://127.0.0.1:1/a", "--group", "b"}, exitUsage, `--to names group "a" and --group "b"`},
		{[]string{"migrate", "no-such-process-name", "--to", "127.0.0.1:1", "--group", "g"}, exitNotFound, `no process is named "no-such-process-name"`},
		{[]string{"migrate", "--to", "127.0.0.1:1"}, exitUsage, "one PID or process name"},
		{[]string{"restore", "--stream", "sim"}, exitUsage, "no checkpoint reference with --stream"},
	} {
		res := runCkpt(t, dir, tc.args...)
		if res.code != tc.code || !strings.Contains(res.stderr, tc.want) {
			t.Errorf("ckpt %s: exit %d, %q; want exit %d and %q", strings.Join(tc.args, " "), res.code, res.stderr, tc.code, tc.want)
		}
	}
}

// TestDumpStreamNoAckClones: `dump --stream --no-ack` resumes the source
// after the stream, so the restore makes a second copy that continues
// from the same point: in the shared output file every beat after the
// copy appears twice, with the same generator state.
func TestDumpStreamNoAckClones(t *testing.T) {
	requireMigrationTools(t)
	dir := t.TempDir()
	out := filepath.Join(dir, "out")
	src := startHeartbeat(t, out, os.O_APPEND, 20, "16", "50", "3", "200")
	pr, pw, _ := os.Pipe()
	var dumpErr, restErr strings.Builder
	dump := exec.Command(ckptBin, "dump", "--stream", "--no-ack", strconv.Itoa(src.Process.Pid))
	dump.Stdout, dump.Stderr = pw, &dumpErr
	rest := exec.Command("unshare", "--pid", "--kill-child", "--mount-proc", ckptBin, "restore", "--stream")
	rest.Stdin, rest.Stderr = pr, &restErr
	if err := rest.Start(); err != nil {
		t.Fatal(err)
	}
	if err := dump.Run(); err != nil {
		t.Fatalf("dump --stream --no-ack: %v\n%s", err, dumpErr.String())
	}
	pw.Close()
	pr.Close()
	if !strings.Contains(dumpErr.String(), "left running") {
		t.Errorf("dump says: %s", dumpErr.String())
	}
	if err := rest.Wait(); err != nil {
		t.Fatalf("restore --stream of the copy: %v\n%s", err, restErr.String())
	}
	if err := src.Wait(); err != nil {
		t.Fatalf("the source did not run to its end: %v", err)
	}
	l := readBeats(t, out)
	seen := map[string]int{}
	for _, sv := range l.seqVal {
		seen[sv]++
	}
	twice := 0
	for _, n := range seen {
		if n > 2 {
			t.Fatalf("a beat appears %d times", n)
		}
		if n == 2 {
			twice++
		}
	}
	if len(seen) != 200 || twice < 100 || !strings.Contains(readText(t, out), "PASS") {
		t.Fatalf("%d distinct beats (want 200), %d of them twice", len(seen), twice)
	}
	t.Logf("the copy continued from beat %d: %d beats twice, same values", 201-twice, twice)
}

func readText(t *testing.T, p string) string {
	t.Helper()
	b, _ := os.ReadFile(p)
	return string(b)
}

// TestMigrateRefusedPIDInUse: a destination in the source's own PID
// namespace (an agent started plainly on this machine) cannot give the
// process its PID while the source holds it: it refuses at the hello,
// before any page is sent, migrate says so, the source runs on, and the
// destination keeps nothing.
func TestMigrateRefusedPIDInUse(t *testing.T) {
	requireMigrationTools(t)
	dst := startAgents(t, 1, map[string]any{})[0]
	dir := t.TempDir()
	tok := filepath.Join(dir, "tok")
	os.WriteFile(tok, []byte(agentTok), 0o600)
	out := filepath.Join(dir, "out")
	src := startHeartbeat(t, out, os.O_TRUNC, 10, "16", "50", "4", "0")
	res := runCkpt(t, dir, "migrate", strconv.Itoa(src.Process.Pid), "--to", dst.addr, "--group", "sim", "--token-file", tok)
	want := fmt.Sprintf("refused before the transfer: PID %d is used by process %d", src.Process.Pid, src.Process.Pid)
	if res.code != 1 || !strings.Contains(res.stderr, want) || !strings.Contains(res.stderr, "runs on") {
		t.Fatalf("exit %d, %s; want exit 1 with %q", res.code, res.stderr, want)
	}
	if strings.Contains(res.stderr, "round 1:") {
		t.Errorf("the refusal came only after a pre-copy round: %s", res.stderr)
	}
	t.Log(strings.TrimSpace(res.stderr))
	if s := proctest.State(src.Process.Pid); s == 't' || s == 'T' {
		t.Fatalf("source left stopped")
	}
	n := strings.Count(readText(t, out), "\nHB ")
	waitFor(t, "the source beating on", func() bool { return strings.Count(readText(t, out), "\nHB ") >= n+5 })
	agentPID := dst.cmd.Process.Pid
	waitFor(t, "the destination's helper to go", func() bool { return len(childrenOf(agentPID)) == 0 })
}

// childrenOf lists the processes whose parent is pid (any of its threads).
func childrenOf(pid int) []int {
	var out []int
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		c, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		st, _ := os.ReadFile(fmt.Sprintf("/proc/%d/status", c))
		for _, line := range strings.Split(string(st), "\n") {
			if f := strings.Fields(line); len(f) == 2 && f[0] == "PPid:" && f[1] == strconv.Itoa(pid) {
				out = append(out, c)
			}
		}
	}
	return out
}

// startHeartbeat starts the heartbeat fixture with args (MiB, permille,
// seed, beats), its stdout to out (opened with flag), and kills it at the
// end of the test; with minBeats > 0 it waits until that many beats are out.
func startHeartbeat(t *testing.T, out string, flag int, minBeats int, args ...string) *exec.Cmd {
	t.Helper()
	f, err := os.OpenFile(out, os.O_WRONLY|os.O_CREATE|flag, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	cmd := exec.Command(proctest.Build(t, "heartbeat", false), args...)
	cmd.Stdout = f
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	if minBeats > 0 {
		waitFor(t, "beats", func() bool { return strings.Count(readText(t, out), "\nHB ") >= minBeats })
	}
	return cmd
}

// TestFindProcessLongName finds a process by a name longer than the
// kernel's 15-character comm, and not one whose name only shares the
// first 15 characters.
func TestFindProcessLongName(t *testing.T) {
	dir := t.TempDir()
	name := "ckpt-find-long-name-" + strconv.Itoa(os.Getpid())
	bin := filepath.Join(dir, name)
	data, err := os.ReadFile("/bin/sleep")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bin, data, 0o755); err != nil {
		t.Fatal(err)
	}
	c := exec.Command(bin, "60")
	if err := c.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = c.Process.Kill(); _ = c.Wait() }()
	// Start returns once the exec succeeded, so comm is already set.
	if pid, err := findProcess(name); err != nil || pid != c.Process.Pid {
		t.Errorf("findProcess(%q) = %d, %v; want %d", name, pid, err, c.Process.Pid)
	}
	if pid, err := findProcess(name + "-other"); err == nil {
		t.Errorf("findProcess(%q) = %d, want no process", name+"-other", pid)
	}
}
