package backend_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ckpt/ckpt/internal/agent"
	"github.com/ckpt/ckpt/internal/agent/agenttest"
	"github.com/ckpt/ckpt/internal/backend"
)

const (
	tokA = "token-of-group-a-0123456789"
	tokB = "token-of-group-b-9876543210"
)

func TestAgent(t *testing.T) {
	nodes := agenttest.Cluster(t, 1, map[string]string{"a": tokA}, agent.LevelsConfig{})
	be, err := backend.OpenAgent(context.Background(), nodes[0].Location("a"), tokA)
	if err != nil {
		t.Fatal(err)
	}
	backend.TestBackend(t, be)
}

// TestAgentGroupIsolation: a token of group A never reads group B, and a
// wrong or missing token gets a clear refusal.
func TestAgentGroupIsolation(t *testing.T) {
	ctx := context.Background()
	nodes := agenttest.Cluster(t, 1, map[string]string{"a": tokA, "b": tokB}, agent.LevelsConfig{})
	b, err := backend.OpenAgent(ctx, nodes[0].Location("b"), tokB)
	if err != nil {
		t.Fatal(err)
	}
	h := backend.Handle{Kind: backend.Manifest, Name: "secret"}
	if err := b.Save(ctx, h, []byte("group b's data")); err != nil {
		t.Fatal(err)
	}
	b.Sync(ctx)
	if _, err := backend.OpenAgent(ctx, nodes[0].Location("b"), tokA); !errors.Is(err, backend.ErrAgentAuth) {
		t.Fatalf("group a's token opened group b: %v", err)
	}
	cross := backend.NewAgent(nodes[0].Addr, "b", tokA)
	if _, err := cross.Load(ctx, h); !errors.Is(err, backend.ErrAgentAuth) {
		t.Fatalf("load with another group's token: %v", err)
	}
	if err := cross.Save(ctx, backend.Handle{Kind: backend.Manifest, Name: "x"}, []byte("x")); !errors.Is(err, backend.ErrAgentAuth) {
		t.Fatalf("save with another group's token: %v", err)
	}
	if err := cross.List(ctx, backend.Manifest, func(backend.Info) error { return nil }); !errors.Is(err, backend.ErrAgentAuth) {
		t.Fatalf("list with another group's token: %v", err)
	}
	a, _ := backend.OpenAgent(ctx, nodes[0].Location("a"), tokA)
	if _, err := a.Load(ctx, h); !errors.Is(err, backend.ErrNotExist) {
		t.Fatalf("group a sees group b's blob: %v", err)
	}
	if _, err := backend.OpenAgent(ctx, nodes[0].Location("nosuch"), tokA); !errors.Is(err, backend.ErrNotExist) || !strings.Contains(err.Error(), "unknown group") {
		t.Fatalf("unknown group: %v", err)
	}
	// Raw requests: no token, truncated upload, oversized body.
	url := "http://" + nodes[0].Addr + "/v1/groups/a/blobs/chunks/abcdef01"
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("no token: HTTP %d", resp.StatusCode)
	}
	req, _ := http.NewRequest(http.MethodPut, url, io.MultiReader(strings.NewReader("short"), errReader{}))
	req.ContentLength = 100
	req.Header.Set("Authorization", "Bearer "+tokA)
	if resp, err := http.DefaultClient.Do(req); err == nil {
		resp.Body.Close()
		if resp.StatusCode/100 == 2 {
			t.Fatalf("truncated upload: HTTP %d", resp.StatusCode)
		}
	}
	// An oversized body is refused from its header, before it is sent.
	conn, err := net.Dial("tcp", nodes[0].Addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	fmt.Fprintf(conn, "PUT /v1/groups/a/blobs/chunks/abcdef01 HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\nContent-Length: %d\r\n\r\n", tokA, int64(1)<<40)
	resp, err = http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusRequestEntityTooLarge {
		t.Fatalf("oversized body: HTTP %d", resp.StatusCode)
	}
	a.Sync(ctx)
	if _, err := a.Stat(ctx, backend.Handle{Kind: backend.Chunk, Name: "abcdef01"}); !errors.Is(err, backend.ErrNotExist) {
		t.Fatalf("a refused upload left a blob: %v", err)
	}
}

type errReader struct{}

func (errReader) Read([]byte) (int, error) { return 0, errors.New("connection lost") }

func TestParseAgent(t *testing.T) {
	for _, tc := range []struct {
		in, host, group string
		ok              bool
	}{
		{"agent://127.0.0.1:7411/sim", "127.0.0.1:7411", "sim", true},
		{"agent://node3:7411/g-1/", "node3:7411", "g-1", true},
		{"agent://node3/sim", "", "", false},
		{"agent://node3:7411/", "", "", false},
		{"agent://node3:7411/a/b", "", "", false},
		{"/dir", "", "", false},
	} {
		h, g, err := backend.ParseAgent(tc.in)
		if (err == nil) != tc.ok || h != tc.host || g != tc.group {
			t.Errorf("%s: %q %q %v", tc.in, h, g, err)
		}
	}
}

// TestAgentSyncGroups: two writers save chunks to one agent; the chunk of
// one cannot be renamed into place in the agent's store (a directory took
// its name). That writer's Sync fails, the other's does not, whichever
// syncs first: the writer is named to the agent with its sync group.
func TestAgentSyncGroups(t *testing.T) {
	ctx := context.Background()
	nodes := agenttest.Cluster(t, 1, map[string]string{"a": tokA}, agent.LevelsConfig{})
	be, err := backend.OpenAgent(ctx, nodes[0].Location("a"), tokA)
	if err != nil {
		t.Fatal(err)
	}
	bad, good := fmt.Sprintf("ab%062x", 1), fmt.Sprintf("cd%062x", 2)
	if err := os.MkdirAll(filepath.Join(nodes[0].Config.DataDir, "a", "chunks", "ab", bad), 0o700); err != nil {
		t.Fatal(err)
	}
	wa, wb := backend.WithSyncGroup(ctx, new(byte)), backend.WithSyncGroup(ctx, new(byte))
	if err := be.Save(wa, backend.Handle{Kind: backend.Chunk, Name: bad}, []byte("a")); err != nil {
		t.Fatal(err)
	}
	if err := be.Save(wb, backend.Handle{Kind: backend.Chunk, Name: good}, []byte("b")); err != nil {
		t.Fatal(err)
	}
	if err := be.Sync(wb); err != nil {
		t.Fatalf("Sync of the writer whose chunk is durable: %v", err)
	}
	if err := be.Sync(wa); err == nil {
		t.Fatal("Sync of the writer whose chunk failed succeeded")
	}
}
