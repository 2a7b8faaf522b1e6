// Package agenttest runs ckpt agents in the test process on loopback ports,
// for tests of the agent, its client backend and the levels.
package agenttest

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"testing"

	"github.com/ckpt/ckpt/internal/agent"
)

// Node is one agent of a test cluster.
type Node struct {
	Name   string
	Addr   string // 127.0.0.1:PORT
	Config *agent.Config
	Server *agent.Server

	cancel context.CancelFunc
	done   chan error
}

// Cluster starts n agents (node0, node1, …) that are each other's peers,
// serving groups (name -> token) with the levels policy lv. Their data
// directories are under t.TempDir(); they stop with the test. Each tweak
// may change a node's configuration before it is validated.
func Cluster(t testing.TB, n int, groups map[string]string, lv agent.LevelsConfig, tweak ...func(*agent.Config)) []*Node {
	t.Helper()
	nodes := make([]*Node, n)
	lns := make([]net.Listener, n)
	for i := range nodes {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		lns[i] = ln
		nodes[i] = &Node{Name: fmt.Sprintf("node%d", i), Addr: ln.Addr().String()}
	}
	base := t.TempDir()
	for i, nd := range nodes {
		cfg := &agent.Config{
			Listen: nd.Addr, DataDir: filepath.Join(base, nd.Name), Node: nd.Name,
			Peers: map[string]string{}, Groups: map[string]agent.GroupConfig{}, Levels: lv,
		}
		if lv.Durable.Location != "" {
			cfg.Levels.Durable.Location = lv.Durable.Location
		}
		for j, p := range nodes {
			if j != i {
				cfg.Peers[p.Name] = p.Addr
			}
		}
		for g, tok := range groups {
			cfg.Groups[g] = agent.GroupConfig{Token: tok}
		}
		for _, f := range tweak {
			f(cfg)
		}
		if err := cfg.Validate(); err != nil {
			t.Fatal(err)
		}
		nd.Config = cfg
		nd.start(t, lns[i])
	}
	return nodes
}

func (nd *Node) start(t testing.TB, ln net.Listener) {
	t.Helper()
	var log *slog.Logger
	if os.Getenv("CKPT_TEST_AGENT_LOG") != "" {
		log = slog.New(slog.NewTextHandler(os.Stderr, nil)).With("node", nd.Name)
	}
	srv, err := agent.New(nd.Config, log)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	nd.Server, nd.cancel, nd.done = srv, cancel, make(chan error, 1)
	go func() { nd.done <- srv.Serve(ctx, ln) }()
	t.Cleanup(nd.Stop)
}

// Stop stops the agent (its data stays).
func (nd *Node) Stop() {
	if nd.cancel == nil {
		return
	}
	nd.cancel()
	<-nd.done
	nd.cancel = nil
}

// Restart starts a stopped agent again on the same address and data.
func (nd *Node) Restart(t testing.TB) {
	t.Helper()
	ln, err := net.Listen("tcp", nd.Addr)
	if err != nil {
		t.Fatal(err)
	}
	nd.start(t, ln)
}

// Wipe stops the agent and deletes its data directory (a lost node).
func (nd *Node) Wipe(t testing.TB) {
	nd.Stop()
	if err := os.RemoveAll(nd.Config.DataDir); err != nil {
		t.Fatal(err)
	}
}

// Location is the agent:// location of group g on this node.
func (nd *Node) Location(g string) string { return "agent://" + nd.Addr + "/" + g }
