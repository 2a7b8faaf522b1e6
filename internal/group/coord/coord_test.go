package coord

import (
	"errors"
	"fmt"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/ckpt/ckpt/internal/group/script"
)

// env drives a coordinator through a script. durable is what the storage
// holds: only a write that completed survives a crash.
type env struct {
	cfg     Config
	c       *Coordinator
	durable Global
	pending *Global
}

func (e *env) ready() string {
	if e.c == nil {
		return ""
	}
	rd := e.c.Ready()
	var b strings.Builder
	for _, m := range rd.Msgs {
		fmt.Fprintln(&b, m)
	}
	if g := rd.Persist; g != nil {
		e.pending = g
		fmt.Fprintf(&b, "persist r%d %s\n", g.Round, votes(*g))
	}
	for _, r := range rd.Results {
		if r.Committed {
			fmt.Fprintf(&b, "committed r%d\n", r.Round)
		} else {
			fmt.Fprintf(&b, "aborted r%d: %s\n", r.Round, r.Reason)
		}
	}
	return b.String()
}

func votes(g Global) string {
	var s []string
	for _, v := range g.Votes {
		s = append(s, v.Checkpoint)
	}
	return "[" + strings.Join(s, " ") + "]"
}

func atoi(t *testing.T, s string) int {
	n, err := strconv.Atoi(s)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func (e *env) run(t *testing.T, c script.Cmd) string {
	if e.c == nil && c.Name != "new" && c.Name != "restart" && c.Name != "durable" {
		return "coordinator is down"
	}
	switch c.Name {
	case "new":
		ranks, _ := c.Arg("ranks")
		to, _ := c.Arg("timeout")
		e.cfg = Config{Ranks: atoi(t, ranks)}
		if to != "" {
			e.cfg.Timeout = atoi(t, to)
		}
		e.c = New(e.cfg, Global{})
	case "register":
		for _, a := range c.Args {
			if err := e.c.Register(atoi(t, a)); err != nil {
				return err.Error()
			}
		}
	case "down":
		e.c.Down(atoi(t, c.Args[0]))
	case "start":
		r, err := e.c.Start()
		if err != nil {
			return "start: " + err.Error()
		}
		return fmt.Sprintf("round %d\n", r) + e.ready()
	case "prepared":
		e.c.Prepared(atoi(t, c.Args[0]), uint64(atoi(t, c.Args[1])), Vote{Checkpoint: c.Args[2]})
	case "failed":
		e.c.Failed(atoi(t, c.Args[0]), uint64(atoi(t, c.Args[1])), strings.Join(c.Args[2:], " "))
	case "tick":
		n := 1
		if len(c.Args) > 0 {
			n = atoi(t, c.Args[0])
		}
		for range n {
			e.c.Tick()
		}
	case "persist":
		g := e.pending
		if g == nil {
			return "nothing to persist"
		}
		e.pending = nil
		switch c.Args[0] {
		case "ok":
			e.durable = *g
			e.c.Persisted(g.Round, *g, nil)
		case "fail":
			e.c.Persisted(g.Round, *g, errors.New(strings.Join(c.Args[1:], " ")))
		case "crash-before":
			e.c = nil
			return "coordinator crashed before the manifest was written"
		case "crash-after":
			e.durable = *g
			e.c = nil
			return "coordinator crashed after the manifest was written"
		}
	case "crash":
		e.c, e.pending = nil, nil
		return "coordinator crashed"
	case "restart":
		e.c = New(e.cfg, e.durable)
	case "durable":
		if e.durable.Round == 0 {
			return "durable: none"
		}
		return fmt.Sprintf("durable: r%d %s", e.durable.Round, votes(e.durable))
	case "line":
		g := e.c.Committed()
		return fmt.Sprintf("recovery line: r%d %s", g.Round, votes(g))
	default:
		t.Fatalf("unknown command %q", c.Name)
	}
	return e.ready()
}

func TestScripts(t *testing.T) {
	files, _ := filepath.Glob("testdata/*.txt")
	if len(files) == 0 {
		t.Fatal("no scripts")
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			e := &env{}
			script.Run(t, f, e.run)
		})
	}
}
