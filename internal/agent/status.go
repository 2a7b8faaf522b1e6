package agent

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"fmt"
	"html/template"
	"io"
	"net/http"
	"sort"
	"strings"
	"time"

	"github.com/ckpt/ckpt/internal/backend"
	"github.com/ckpt/ckpt/internal/levels"
)

// CheckpointStatus is one checkpoint of a group as the agent sees it: the
// agent holds no keys, so it shows IDs, sizes, times and level records.
type CheckpointStatus struct {
	ID       string                    `json:"id"`
	Size     int64                     `json:"manifest_size"`
	Time     time.Time                 `json:"time"`
	Seq      uint64                    `json:"seq,omitempty"`
	Complete []string                  `json:"complete"` // levels it is complete at
	Levels   map[string]*levels.Record `json:"levels,omitempty"`
}

// eachCheckpoint calls fn for every checkpoint in g's store with its level
// records (the chunk lists left out), one at a time.
func (s *Server) eachCheckpoint(ctx context.Context, g *group, fn func(CheckpointStatus) error) error {
	return g.store.List(ctx, backend.Manifest, func(in backend.Info) error {
		cs := CheckpointStatus{ID: in.Name, Size: in.Size, Time: in.ModTime.UTC(), Levels: map[string]*levels.Record{}, Complete: []string{}}
		for _, l := range levels.Order {
			r, err := levels.LoadRecord(ctx, g.store, in.Name, l)
			if err != nil {
				continue
			}
			r.Chunks = nil
			cs.Levels[l] = r
			if r.Seq != 0 {
				cs.Seq = r.Seq
			}
			if r.Complete {
				cs.Complete = append(cs.Complete, l)
			}
		}
		if _, ok := cs.Levels[levels.Local]; !ok {
			if _, held := cs.Levels[levels.Partner]; !held {
				cs.Complete = append([]string{levels.Local}, cs.Complete...) // committed here, not yet processed
			}
		}
		return fn(cs)
	})
}

// groupStatus streams the group's checkpoints as JSON lines.
func (s *Server) groupStatus(w http.ResponseWriter, r *http.Request, g *group) {
	w.Header().Set("Content-Type", "application/x-ndjson")
	enc := json.NewEncoder(w)
	s.eachCheckpoint(r.Context(), g, func(cs CheckpointStatus) error { return enc.Encode(cs) })
}

var statusTmpl = template.Must(template.New("status").Parse(`<!doctype html>
<html><head><meta charset="utf-8"><title>ckpt agent {{.Node}}</title>
<style>body{font-family:sans-serif;margin:1.5em}table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:2px 8px;font-size:90%}code{font-size:90%}.no{color:#a00}.ok{color:#070}</style>
</head><body>
<h1>ckpt agent {{.Node}}</h1>
<p>listening on {{.Addr}}; peers: {{range .Peers}}{{.}} {{else}}none{{end}}; flush queue: {{.Queue}}</p>
<p>policy: partner every {{.Policy.Partner.Every}}, erasure every {{.Policy.Erasure.Every}} (k={{.Policy.Erasure.K}}, m={{.Policy.Erasure.M}}), durable every {{.Policy.Durable.Every}}{{if .Policy.Durable.Location}} to {{.Policy.Durable.Location}}{{end}}</p>
`))

var groupTmpl = template.Must(template.New("group").Parse(`<h2>group {{.}}</h2>
<table><tr><th>checkpoint</th><th>seq</th><th>manifest</th><th>committed</th><th>local</th><th>partner</th><th>erasure</th><th>durable</th></tr>
`))

var rowTmpl = template.Must(template.New("row").Funcs(template.FuncMap{
	"lvl": func(cs CheckpointStatus, l string) template.HTML {
		r := cs.Levels[l]
		if r == nil {
			for _, c := range cs.Complete {
				if c == l {
					return `<span class="ok">yes</span>`
				}
			}
			return "–"
		}
		if r.Complete {
			return template.HTML(`<span class="ok">yes</span> ` + template.HTMLEscapeString(r.Where))
		}
		return template.HTML(`<span class="no" title="` + template.HTMLEscapeString(r.Error) + `">no</span>`)
	},
}).Parse(`<tr><td><code>{{.ID}}</code></td><td>{{.Seq}}</td><td>{{.Size}} B</td><td>{{.Time.Format "2006-01-02 15:04:05"}}</td><td>{{lvl . "local"}}</td><td>{{lvl . "partner"}}</td><td>{{lvl . "erasure"}}</td><td>{{lvl . "durable"}}</td></tr>
`))

// statusPage is the HTML status page. Without a token it shows the node,
// its peers and policy and, per group, how many checkpoints it holds; with
// "Authorization: Bearer TOKEN" it lists that group's checkpoints and
// where each is complete (one group's details are never shown for
// another's token).
func (s *Server) statusPage(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	var peers []string
	for _, n := range s.cfg.Ring() {
		peers = append(peers, n+"="+s.cfg.Peers[n])
	}
	s.flush.mu.Lock()
	queue := len(s.flush.set)
	s.flush.mu.Unlock()
	statusTmpl.Execute(w, map[string]any{"Node": s.cfg.Node, "Addr": s.cfg.Addr(s.cfg.Node), "Peers": peers, "Queue": queue, "Policy": s.cfg.Levels})
	tok, _ := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	sum := sha256.Sum256([]byte(tok))
	names := make([]string, 0, len(s.groups))
	for n := range s.groups {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		g := s.groups[n]
		if tok == "" || subtle.ConstantTimeCompare(sum[:], g.tok[:]) != 1 {
			count := 0
			g.store.List(r.Context(), backend.Manifest, func(backend.Info) error { count++; return nil })
			fmt.Fprintf(w, "<h2>group %s</h2><p>%d checkpoints (send the group's token to list them)</p>\n", template.HTMLEscapeString(n), count)
			continue
		}
		groupTmpl.Execute(w, n)
		s.eachCheckpoint(r.Context(), g, func(cs CheckpointStatus) error { return rowTmpl.Execute(w, cs) })
		io.WriteString(w, "</table>\n")
	}
	io.WriteString(w, "</body></html>\n")
}
