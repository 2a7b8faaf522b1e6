package msglog

import (
	"fmt"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"

	"github.com/ckpt/ckpt/internal/group/script"
)

// net is processes with FIFO application and control channels.
type net struct {
	n         int
	procs     []*Process
	app       map[[2]int][]Msg
	ctl       map[[2]int][]Ctl
	seen      [][]string // each process's deliveries (its application state)
	saved     []State
	savedSeen [][]string
	b         strings.Builder
}

func newNet(n int) *net {
	e := &net{n: n, app: map[[2]int][]Msg{}, ctl: map[[2]int][]Ctl{}}
	for i := range n {
		var peers []int
		for j := range n {
			if j != i {
				peers = append(peers, j)
			}
		}
		e.procs = append(e.procs, New(i, peers))
		e.seen = append(e.seen, nil)
		e.saved = append(e.saved, State{})
		e.savedSeen = append(e.savedSeen, nil)
	}
	return e
}

func (e *net) collect(i int) {
	for _, c := range e.procs[i].Ready() {
		k := [2]int{c.From, c.To}
		e.ctl[k] = append(e.ctl[k], c)
	}
}

func (e *net) next(i int) bool {
	p := e.procs[i]
	replaying := p.Recovering()
	m, ok := p.Next()
	if !ok {
		return false
	}
	e.seen[i] = append(e.seen[i], string(m.Data))
	tag := ""
	if replaying && p.Recovering() {
		tag = " (replay)"
	}
	fmt.Fprintf(&e.b, "%d delivers %s from %d ssn%d rsn%d%s\n", i, m.Data, m.From, m.SSN, p.st.RSN, tag)
	e.collect(i)
	return true
}

func ctlString(c Ctl) string {
	switch c.Kind {
	case CtlRSN:
		return fmt.Sprintf("rsn ssn%d=%d", c.SSN, c.RSN)
	case CtlLogged:
		return fmt.Sprintf("logged rsn%d", c.RSN)
	case CtlTrim:
		return fmt.Sprintf("trim ssn%d", c.SSN)
	case CtlReplayReq:
		return fmt.Sprintf("replay after ssn%d", c.SSN)
	case CtlReplay:
		var es []string
		for _, x := range c.Entries {
			es = append(es, fmt.Sprintf("ssn%d rsn%d %s", x.SSN, x.RSN, x.Data))
		}
		var ks []string
		for _, x := range c.Known {
			ks = append(ks, fmt.Sprintf("ssn%d=%d", x.SSN, x.RSN))
		}
		return "replay [" + strings.Join(es, ", ") + "] known [" + strings.Join(ks, " ") + "]"
	}
	return "?"
}

func (e *net) run(t *testing.T, c script.Cmd) string {
	num := func(i int) int {
		n, err := strconv.Atoi(c.Args[i])
		if err != nil {
			t.Fatalf("%s: %v", c.Line, err)
		}
		return n
	}
	switch c.Name {
	case "send":
		from, to := num(0), num(1)
		m, err := e.procs[from].Send(to, []byte(c.Args[2]))
		if err != nil {
			return fmt.Sprintf("%d blocked", from)
		}
		e.app[[2]int{from, to}] = append(e.app[[2]int{from, to}], m)
		return fmt.Sprintf("%d -> %d %s ssn%d", from, to, m.Data, m.SSN)
	case "recv":
		from, to := num(0), num(1)
		k := [2]int{from, to}
		if len(e.app[k]) == 0 {
			return "nothing in flight"
		}
		m := e.app[k][0]
		e.app[k] = e.app[k][1:]
		p := e.procs[to]
		if m.SSN <= p.st.Delivered[from] {
			fmt.Fprintf(&e.b, "%d drops duplicate %s from %d ssn%d\n", to, m.Data, from, m.SSN)
		}
		p.Receive(m)
		e.collect(to)
		for !p.Recovering() && e.next(to) {
		}
	case "next":
		if !e.next(num(0)) {
			return "nothing to deliver"
		}
	case "flush":
		for {
			var keys [][2]int
			for k, q := range e.ctl {
				if len(q) > 0 {
					keys = append(keys, k)
				}
			}
			if len(keys) == 0 {
				break
			}
			sort.Slice(keys, func(a, b int) bool {
				if keys[a][0] != keys[b][0] {
					return keys[a][0] < keys[b][0]
				}
				return keys[a][1] < keys[b][1]
			})
			k := keys[0]
			x := e.ctl[k][0]
			e.ctl[k] = e.ctl[k][1:]
			fmt.Fprintf(&e.b, "%d <- %d %s\n", x.To, x.From, ctlString(x))
			e.procs[x.To].Handle(x)
			e.collect(x.To)
		}
	case "checkpoint":
		i := num(0)
		e.saved[i] = e.procs[i].State()
		e.savedSeen[i] = append([]string(nil), e.seen[i]...)
		e.procs[i].Committed(e.saved[i])
		e.collect(i)
		fmt.Fprintf(&e.b, "%d checkpoint at rsn%d\n", i, e.saved[i].RSN)
	case "crash":
		i := num(0)
		for k := range e.app {
			if k[0] == i || k[1] == i {
				delete(e.app, k)
			}
		}
		for k := range e.ctl {
			if k[0] == i || k[1] == i {
				delete(e.ctl, k)
			}
		}
		e.procs[i] = nil
		fmt.Fprintf(&e.b, "%d crashed\n", i)
	case "restart":
		i := num(0)
		var peers []int
		for j := range e.n {
			if j != i {
				peers = append(peers, j)
			}
		}
		e.procs[i] = New(i, peers)
		e.procs[i].Restart(e.saved[i])
		for _, m := range e.procs[i].Resend() {
			k := [2]int{i, m.To}
			e.app[k] = append(e.app[k], m)
			fmt.Fprintf(&e.b, "%d -> %d %s ssn%d again\n", i, m.To, m.Data, m.SSN)
		}
		e.seen[i] = append([]string(nil), e.savedSeen[i]...)
		e.collect(i)
		fmt.Fprintf(&e.b, "%d restarts at rsn%d\n", i, e.saved[i].RSN)
	case "app":
		i := num(0)
		return fmt.Sprintf("%d: %s", i, strings.Join(e.seen[i], " "))
	case "log":
		i := num(0)
		var parts []string
		for to := range e.n {
			for _, x := range e.procs[i].st.Log[to] {
				parts = append(parts, fmt.Sprintf("->%d ssn%d rsn%d %s", to, x.SSN, x.RSN, x.Data))
			}
		}
		return fmt.Sprintf("%d log: %s", i, strings.Join(parts, ", "))
	default:
		t.Fatalf("unknown command %q", c.Name)
	}
	out := e.b.String()
	e.b.Reset()
	return out
}

func TestScripts(t *testing.T) {
	files, _ := filepath.Glob("testdata/*.txt")
	if len(files) == 0 {
		t.Fatal("no scripts")
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			var e *net
			script.Run(t, f, func(t *testing.T, c script.Cmd) string {
				if c.Name == "net" {
					n, _ := c.Arg("nodes")
					nn, _ := strconv.Atoi(n)
					e = newNet(nn)
					return ""
				}
				return e.run(t, c)
			})
		})
	}
}

func scriptCmd(name string, i int) script.Cmd {
	return script.Cmd{Name: name, Args: []string{strconv.Itoa(i)}, Line: name}
}
