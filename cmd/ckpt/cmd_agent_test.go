package main

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ckpt/ckpt/internal/backend"
	"github.com/ckpt/ckpt/internal/repo"
)

const agentTok = "cmd-test-group-token-0123"

// TestAgentConfigRefused: inconsistent configurations are refused with a
// clear message and exit status 2.
func TestAgentConfigRefused(t *testing.T) {
	dir := t.TempDir()
	tokFile := filepath.Join(dir, "tok")
	os.WriteFile(tokFile, []byte(agentTok+"\n"), 0o600)
	short := filepath.Join(dir, "short")
	os.WriteFile(short, []byte("abc"), 0o600)
	base := func() map[string]any {
		return map[string]any{
			"listen": "127.0.0.1:7411", "data_dir": dir, "node": "n1",
			"peers":  map[string]string{"n2": "127.0.0.1:7412", "n3": "127.0.0.1:7413"},
			"groups": map[string]any{"sim": map[string]string{"token_file": tokFile}},
			"levels": map[string]any{
				"partner": map[string]any{"every": 1},
				"erasure": map[string]any{"every": 4, "k": 2, "m": 1},
			},
		}
	}
	for _, tc := range []struct {
		name   string
		change func(map[string]any)
		want   string
	}{
		{"unknown partner", func(c map[string]any) {
			c["levels"].(map[string]any)["partner"] = map[string]any{"every": 1, "node": "n9"}
		}, `partner.node "n9" is not a peer`},
		{"k+m too large", func(c map[string]any) {
			c["levels"].(map[string]any)["erasure"] = map[string]any{"every": 1, "k": 3, "m": 2}
		}, "k+m = 5 fragments need 5 nodes, but there are only 3"},
		{"missing token", func(c map[string]any) { c["groups"] = map[string]any{"sim": map[string]string{}} }, `group "sim" has no token`},
		{"short token", func(c map[string]any) { c["groups"] = map[string]any{"sim": map[string]string{"token_file": short}} }, "at least 16 are required"},
		{"token file missing", func(c map[string]any) {
			c["groups"] = map[string]any{"sim": map[string]string{"token_file": filepath.Join(dir, "nope")}}
		}, "reading token file"},
		{"self as peer", func(c map[string]any) { c["peers"].(map[string]string)["n1"] = "127.0.0.1:7414" }, `"n1" is this node`},
		{"durable without location", func(c map[string]any) { c["levels"].(map[string]any)["durable"] = map[string]any{"every": 10} }, "no location is given"},
		{"unknown field", func(c map[string]any) { c["peer"] = "x" }, `unknown field "peer"`},
		{"no groups", func(c map[string]any) { delete(c, "groups") }, "at least one group is required"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := base()
			tc.change(c)
			b, _ := json.Marshal(c)
			f := filepath.Join(t.TempDir(), "agent.json")
			os.WriteFile(f, b, 0o600)
			res := runCkpt(t, dir, "agent", "--config", f, "--check")
			if res.code != exitUsage || !strings.Contains(res.stderr, tc.want) {
				t.Fatalf("exit %d, stderr %q; want exit 2 and %q", res.code, res.stderr, tc.want)
			}
		})
	}
	b, _ := json.Marshal(base())
	f := filepath.Join(dir, "ok.json")
	os.WriteFile(f, b, 0o600)
	wantCode(t, runCkpt(t, dir, "agent", "--config", f, "--check"), exitOK, "consistent config")
	// Flags override the file.
	res := runCkpt(t, dir, "agent", "--config", f, "--erasure", "2+2", "--check")
	if res.code != exitUsage || !strings.Contains(res.stderr, "k+m = 4") {
		t.Fatalf("flag override: %d %s", res.code, res.stderr)
	}
}

type agentProc struct {
	name, addr, dir, cfg string
	cmd                  *exec.Cmd
}

// fillRandom fills b with bytes of a PCG seeded with (s1, s2), one per
// Uint32: state that neither compresses nor deduplicates.
func fillRandom(b []byte, s1, s2 uint64) {
	rnd := rand.New(rand.NewPCG(s1, s2))
	for i := range b {
		b[i] = byte(rnd.Uint32())
	}
}

// fillRandom64 is fillRandom eight bytes at a time (little-endian
// Uint64s), for large states; a tail shorter than eight stays as it is.
func fillRandom64(b []byte, s1, s2 uint64) {
	rnd := rand.New(rand.NewPCG(s1, s2))
	for i := 0; i+8 <= len(b); i += 8 {
		binary.LittleEndian.PutUint64(b[i:], rnd.Uint64())
	}
}

func freeAddr(t *testing.T) string {
	// Below the ephemeral range (32768-60999 here): a port the kernel
	// picked with port 0 is soon handed out again to some outgoing
	// connection, and then the agent started on it cannot bind.
	for range 1000 {
		addr := fmt.Sprintf("127.0.0.1:%d", 20000+rand.IntN(12000))
		if l, err := net.Listen("tcp", addr); err == nil {
			l.Close()
			return addr
		}
	}
	t.Fatal("no free port below the ephemeral range")
	return ""
}

func (p *agentProc) start(t *testing.T) {
	t.Helper()
	cmd := exec.Command(ckptBin, "agent", "--config", p.cfg)
	var se bytes.Buffer
	cmd.Stderr = &se
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p.cmd = cmd
	t.Cleanup(func() { p.kill() })
	deadline := time.Now().Add(10 * time.Second)
	for {
		resp, err := http.Get("http://" + p.addr + "/healthz")
		if err == nil {
			resp.Body.Close()
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("agent %s did not start: %v\n%s", p.name, err, se.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// kill sends SIGKILL: no polite shutdown.
func (p *agentProc) kill() {
	if p.cmd != nil {
		p.cmd.Process.Signal(syscall.SIGKILL)
		p.cmd.Wait()
		p.cmd = nil
	}
}

// TestAgentProcessesKilled: four agents as separate processes, erasure
// 2+2 and partner copies. The checkpoint's node and its partner are killed
// with SIGKILL and the node's store is lost; a replacement agent on that
// node fetches the checkpoint from the fragments and it verifies.
func TestAgentProcessesKilled(t *testing.T) {
	procs := startAgents(t, 4, map[string]any{
		"partner": map[string]any{"every": 1},
		"erasure": map[string]any{"every": 1, "k": 2, "m": 2, "stripe_kib": 64},
	})
	ctx := context.Background()
	loc := "agent://" + procs[0].addr + "/sim"
	t.Setenv(backend.AgentTokenEnv, agentTok)
	r, err := repo.OpenLocation(ctx, loc, nil, true)
	if err != nil {
		t.Fatal(err)
	}
	data := make([]byte, 2<<20)
	fillRandom(data, 1, 2)
	w, err := r.NewWriter(ctx, repo.WriterOptions{Name: "job", Kind: repo.KindLibrary})
	if err != nil {
		t.Fatal(err)
	}
	ow, _ := w.Create("grid", "bytes", nil)
	ow.Write(data)
	ow.Close()
	m, err := w.Commit(ctx)
	if err != nil {
		t.Fatal(err)
	}
	a := r.Backend().(*backend.Agent)
	if n, err := a.WaitIdle(ctx, 20*time.Second); err != nil || n != 0 {
		t.Fatalf("flush: %d %v", n, err)
	}
	// The status page lists the checkpoint for the group's token only.
	req, _ := http.NewRequest("GET", "http://"+procs[0].addr+"/", nil)
	req.Header.Set("Authorization", "Bearer "+agentTok)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	page, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(page), m.ID()) || !strings.Contains(string(page), "fragments") && !strings.Contains(string(page), "n1") {
		t.Fatalf("status page:\n%s", page)
	}
	resp, _ = http.Get("http://" + procs[0].addr + "/")
	page, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	if strings.Contains(string(page), m.ID()) {
		t.Fatal("the status page shows checkpoint IDs without a token")
	}
	resp, _ = http.Get("http://" + procs[0].addr + "/metrics")
	page, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(page), `ckpt_agent_flushes_total{level="erasure"} 1`) {
		t.Fatalf("metrics:\n%s", page)
	}

	// SIGKILL the node and its partner; the node's disk is lost.
	procs[0].kill()
	procs[1].kill()
	os.RemoveAll(procs[0].dir)
	procs[0].start(t)
	cmd := exec.Command(ckptBin, "fetch", "job", "--from", loc, "--json")
	cmd.Env = append(os.Environ(), "CKPT_AGENT_TOKEN="+agentTok, "CKPT_REPO=", "CKPT_KEY_FILE=")
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("fetch: %v %s", err, out)
	}
	var res fetchJSON
	if err := json.Unmarshal(out, &res); err != nil || res.ID != m.ID() || res.Level != "erasure" {
		t.Fatalf("fetch: %v %s", err, out)
	}
	res2 := runCkptEnv(t, loc, []string{"CKPT_AGENT_TOKEN=" + agentTok}, "verify", "job")
	wantCode(t, res2, exitOK, "verify the fetched checkpoint")
	// Nothing anywhere: exit 3.
	res2 = runCkptEnv(t, loc, []string{"CKPT_AGENT_TOKEN=" + agentTok}, "fetch", "nosuch", "--from", loc)
	wantCode(t, res2, exitNotFound, "fetch of a missing checkpoint")
}

// startAgents starts n agent processes (n0, n1, …), each other's peers,
// serving group "sim" with agentTok and the levels policy levels.
func startAgents(t *testing.T, n int, levels map[string]any, extra ...map[string]any) []*agentProc {
	t.Helper()
	dir := t.TempDir()
	tokFile := filepath.Join(dir, "tok")
	os.WriteFile(tokFile, []byte(agentTok), 0o600)
	procs := make([]*agentProc, n)
	for i := range procs {
		procs[i] = &agentProc{name: fmt.Sprintf("n%d", i), addr: freeAddr(t), dir: filepath.Join(dir, fmt.Sprintf("n%d", i))}
	}
	for i, p := range procs {
		peers := map[string]string{}
		for j, q := range procs {
			if j != i {
				peers[q.name] = q.addr
			}
		}
		cfg := map[string]any{
			"listen": p.addr, "data_dir": p.dir, "node": p.name, "peers": peers,
			"groups": map[string]any{"sim": map[string]string{"token_file": tokFile}},
			"levels": levels,
		}
		for _, e := range extra {
			maps.Copy(cfg, e)
		}
		b, _ := json.Marshal(cfg)
		p.cfg = filepath.Join(dir, p.name+".json")
		os.WriteFile(p.cfg, b, 0o600)
		p.start(t)
	}
	return procs
}

func runCkptEnv(t *testing.T, repoDir string, env []string, args ...string) result {
	t.Helper()
	for _, e := range env {
		k, v, _ := strings.Cut(e, "=")
		t.Setenv(k, v)
	}
	return runCkpt(t, repoDir, args...)
}
