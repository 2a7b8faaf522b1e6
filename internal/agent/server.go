package agent

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/ckpt/ckpt/internal/backend"
	"github.com/ckpt/ckpt/internal/vfs"
)

// Server is one node's agent: a store per group served over HTTP, a
// fragment store beside it, and the flusher that moves checkpoints up the
// levels.
type Server struct {
	cfg     *Config
	log     *slog.Logger
	groups  map[string]*group
	met     *metrics
	sem     chan struct{} // one slot per blob body held in memory
	maxBlob int64
	stall   time.Duration // limits.stall_timeout_ms
	tls     *tls.Config   // nil: plain HTTP
	flush   *flusher
	mux     *http.ServeMux

	migrate   MigrationReceiver // migrate.go
	migrating sync.Mutex
	migs      migrations

	// LockTTL is how long a lock lease lives without a refresh.
	LockTTL time.Duration
}

type group struct {
	name  string
	tok   [32]byte // SHA-256 of the token: compared in constant time
	token string   // sent to peers, which share the group's token
	store *backend.Local
	frags *fragStore
	locks *lockTable

	mu    sync.Mutex
	fresh map[string]bool // manifests saved by clients since the last Sync
}

// New opens (creating where missing) every group's store under the data
// directory. cfg must have passed Validate.
func New(cfg *Config, log *slog.Logger) (*Server, error) {
	if log == nil {
		log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	toks, err := cfg.tokens()
	if err != nil {
		return nil, err
	}
	s := &Server{
		cfg: cfg, log: log, groups: map[string]*group{},
		met:     newMetrics(),
		sem:     make(chan struct{}, cfg.Limits.MaxInflight),
		maxBlob: int64(cfg.Limits.MaxBlobMiB) << 20,
		stall:   time.Duration(cfg.Limits.StallTimeoutMS) * time.Millisecond,
		LockTTL: 30 * time.Second,
	}
	// The agent's own transfers to its peers give up a stalled peer alike.
	backend.SetAgentStallTimeout(s.stall)
	if cfg.TLS != nil {
		if s.tls, err = cfg.TLS.ServerConfig(); err != nil {
			return nil, err
		}
		ccfg, err := cfg.TLS.ClientConfig()
		if err != nil {
			return nil, err
		}
		backend.UseAgentTLS(ccfg)
	}
	if err := os.MkdirAll(cfg.DataDir, backend.DirMode); err != nil {
		return nil, fmt.Errorf("creating data directory: %w", err)
	}
	for name, tok := range toks {
		dir := filepath.Join(cfg.DataDir, name)
		var st *backend.Local
		if _, err := os.Stat(filepath.Join(dir, "manifests")); err == nil {
			st, err = backend.OpenLocal(vfs.OS, dir)
			if err != nil {
				return nil, err
			}
		} else if st, err = backend.CreateLocal(vfs.OS, dir); err != nil {
			return nil, err
		}
		// Leftovers of saves cut short by a crash of the agent (nothing
		// runs yet).
		if _, err := st.CleanTmp(context.Background()); err != nil {
			return nil, err
		}
		fs, err := openFragStore(filepath.Join(dir, "fragments"))
		if err != nil {
			return nil, err
		}
		s.groups[name] = &group{
			name: name, tok: sha256.Sum256([]byte(tok)), token: tok, store: st, frags: fs,
			locks: newLockTable(), fresh: map[string]bool{},
		}
	}
	s.flush = newFlusher(s)
	s.routes()
	return s, nil
}

// Handler is the agent's HTTP handler.
func (s *Server) Handler() http.Handler { return s.mux }

// Serve serves on ln and runs the flusher until ctx ends, then shuts down
// (waiting up to 5 s for requests in flight).
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	hs := &http.Server{Handler: s.mux, ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 2 * time.Minute, ErrorLog: slog.NewLogLogger(s.log.Handler(), slog.LevelWarn)}
	// Connections that never sent a request (a client's spare dial) would
	// hold Shutdown for 5 s: they are closed at once.
	var cmu sync.Mutex
	fresh := map[net.Conn]bool{}
	hs.ConnState = func(c net.Conn, st http.ConnState) {
		cmu.Lock()
		defer cmu.Unlock()
		if st == http.StateNew {
			fresh[c] = true
		} else {
			delete(fresh, c)
		}
	}
	fctx, stopFlush := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Add(1)
	s.flush.start(fctx)
	go func() { defer wg.Done(); s.flush.run(fctx) }()
	errc := make(chan error, 1)
	if s.tls != nil {
		ln = tls.NewListener(ln, s.tls)
	}
	go func() { errc <- hs.Serve(ln) }()
	var err error
	select {
	case <-ctx.Done():
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		go func() {
			time.Sleep(10 * time.Millisecond) // Shutdown has closed the listener
			cmu.Lock()
			for c := range fresh {
				c.Close()
			}
			cmu.Unlock()
		}()
		hs.Shutdown(sctx)
		cancel()
	case err = <-errc:
	}
	stopFlush()
	wg.Wait()
	if errors.Is(err, http.ErrServerClosed) {
		err = nil
	}
	return err
}

func (s *Server) routes() {
	m := http.NewServeMux()
	m.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		io.WriteString(w, "ok\n")
	})
	m.Handle("GET /metrics", s.met.handler())
	m.HandleFunc("GET /{$}", s.statusPage)
	g := func(pattern string, h func(http.ResponseWriter, *http.Request, *group)) {
		method, path, _ := strings.Cut(pattern, " ")
		m.HandleFunc(method+" /v1/groups/{group}"+path, s.authed(h))
	}
	g("GET ", s.groupInfo)
	g("GET /config", s.blob)
	g("HEAD /config", s.blob)
	g("PUT /config", s.blob)
	g("DELETE /config", s.blob)
	g("GET /blobs/{kind}/{name}", s.blob)
	g("HEAD /blobs/{kind}/{name}", s.blob)
	g("PUT /blobs/{kind}/{name}", s.blob)
	g("DELETE /blobs/{kind}/{name}", s.blob)
	g("GET /blobs/{kind}", s.list)
	g("POST /sync", s.sync)
	g("POST /locks/{name}", s.lock)
	g("PUT /locks/{name}/{lease}", s.lockRefresh)
	g("DELETE /locks/{name}/{lease}", s.unlock)
	g("GET /fragments", s.fragList)
	g("GET /fragments/{name}", s.fragGet)
	g("HEAD /fragments/{name}", s.fragGet)
	g("PUT /fragments/{name}", s.fragPut)
	g("DELETE /fragments/{name}", s.fragDelete)
	g("POST /checkpoints/{id}/committed", s.committed)
	g("GET /topology", s.topology)
	g("GET /status", s.groupStatus)
	g("POST /flush/wait", s.flushWait)
	g("POST /gc", s.gcHandler)
	g("POST /migrate", s.migrateHandler)
	g("GET /migrations/{id}", s.migrationStatus)
	s.mux = m
}

// httpError writes a JSON error; code is a stable machine-readable word.
func httpError(w http.ResponseWriter, status int, code, format string, a ...any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(map[string]string{"error": fmt.Sprintf(format, a...), "code": code})
}

// authed resolves the group and checks its token before anything else.
// The token comparison is constant-time (over SHA-256 digests, so the
// length does not leak either); a token of one group never opens another.
func (s *Server) authed(h func(http.ResponseWriter, *http.Request, *group)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		rec := &statusRecorder{ResponseWriter: w, status: 200}
		defer func() { s.met.requests.WithLabelValues(r.Method, strconv.Itoa(rec.status)).Inc() }()
		if s.tls != nil && (r.TLS == nil || len(r.TLS.VerifiedChains) == 0) {
			httpError(rec, http.StatusUnauthorized, "no_client_cert", "this agent requires a client certificate signed by its CA (%s and %s)", backend.AgentCertEnv, backend.AgentKeyEnv)
			return
		}
		name := r.PathValue("group")
		g := s.groups[name]
		tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		if !ok || tok == "" {
			httpError(rec, http.StatusUnauthorized, "no_token", "a group token is required (Authorization: Bearer TOKEN)")
			return
		}
		if g == nil {
			httpError(rec, http.StatusNotFound, "unknown_group", "unknown group %q on node %s", name, s.cfg.Node)
			return
		}
		sum := sha256.Sum256([]byte(tok))
		if subtle.ConstantTimeCompare(sum[:], g.tok[:]) != 1 {
			httpError(rec, http.StatusUnauthorized, "bad_token", "wrong token for group %q", name)
			return
		}
		// A client that stops sending or reading (cut off, frozen) is
		// given up after the stall timeout instead of holding a request,
		// an in-flight slot and its files forever. The deadlines are
		// refreshed at every read and write and cleared at the end: the
		// server does not reset them for the connection's next request.
		// A body may pause for twice as long: its sender may be held up
		// by another, stalled peer (erasure coding feeds all fragments in
		// step) and gives that one up after one stall timeout; the
		// healthy peers must not give up the sender first.
		rec.rc, rec.stall = http.NewResponseController(w), s.stall
		if r.ContentLength != 0 && r.Body != nil {
			// On a copy: the server inspects the original request's Body
			// to decide how to finish an unread one.
			r2 := *r
			r2.Body = &stallBody{ReadCloser: r.Body, rc: rec.rc, stall: 2 * s.stall}
			r = &r2
		}
		h(rec, r, g)
		rec.rc.SetReadDeadline(time.Time{})
		rec.rc.SetWriteDeadline(time.Time{})
	}
}

type statusRecorder struct {
	http.ResponseWriter
	status int
	rc     *http.ResponseController
	stall  time.Duration
}

func (r *statusRecorder) WriteHeader(code int) { r.status = code; r.ResponseWriter.WriteHeader(code) }

func (r *statusRecorder) Write(p []byte) (int, error) {
	if r.rc != nil {
		r.rc.SetWriteDeadline(time.Now().Add(r.stall))
	}
	return r.ResponseWriter.Write(p)
}

// stallBody refreshes the connection's read deadline before every read of
// a request body.
type stallBody struct {
	io.ReadCloser
	rc    *http.ResponseController
	stall time.Duration
}

func (b *stallBody) Read(p []byte) (int, error) {
	b.rc.SetReadDeadline(time.Now().Add(b.stall))
	n, err := b.ReadCloser.Read(p)
	if err != nil {
		// The server reads the connection in the background once the body
		// is done (to notice a client going away): no deadline for that.
		b.rc.SetReadDeadline(time.Time{})
	}
	return n, err
}

func (r *statusRecorder) Flush() {
	if r.rc != nil {
		r.rc.SetWriteDeadline(time.Now().Add(r.stall))
	}
	if f, ok := r.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

func (s *Server) groupInfo(w http.ResponseWriter, r *http.Request, g *group) {
	writeJSON(w, map[string]string{"group": g.name, "node": s.cfg.Node})
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(v)
}

func handleOf(r *http.Request) (backend.Handle, error) {
	kind := r.PathValue("kind")
	if kind == "" {
		return backend.Handle{Kind: backend.Config}, nil
	}
	switch k := backend.Kind(kind); k {
	case backend.Chunk, backend.Manifest, backend.Level:
		return backend.Handle{Kind: k, Name: r.PathValue("name")}, nil
	}
	return backend.Handle{}, fmt.Errorf("unknown blob kind %q (chunks, manifests, levels)", kind)
}

// acquire takes a memory slot for one blob body, or gives up with ctx.
func (s *Server) acquire(ctx context.Context) bool {
	select {
	case s.sem <- struct{}{}:
		return true
	case <-ctx.Done():
		return false
	}
}

func (s *Server) release() { <-s.sem }

func (s *Server) blob(w http.ResponseWriter, r *http.Request, g *group) {
	h, err := handleOf(r)
	if err != nil {
		httpError(w, http.StatusBadRequest, "bad_kind", "%v", err)
		return
	}
	ctx := r.Context()
	switch r.Method {
	case http.MethodHead:
		in, err := g.store.Stat(ctx, h)
		if err != nil {
			blobError(w, h, err)
			return
		}
		w.Header().Set("Content-Length", strconv.FormatInt(in.Size, 10))
		w.Header().Set("Last-Modified", in.ModTime.UTC().Format(http.TimeFormat))
		w.WriteHeader(http.StatusOK)
	case http.MethodGet:
		if !s.acquire(ctx) {
			return
		}
		defer s.release()
		b, err := g.store.Load(ctx, h)
		if err != nil {
			blobError(w, h, err)
			return
		}
		w.Header().Set("Content-Type", "application/octet-stream")
		w.Header().Set("Content-Length", strconv.Itoa(len(b)))
		n, _ := w.Write(b)
		s.met.bytesOut.Add(float64(n))
	case http.MethodDelete:
		if err := g.store.Remove(ctx, h); err != nil {
			blobError(w, h, err)
			return
		}
		if h.Kind == backend.Manifest && r.Header.Get(backend.AgentOriginHeader) == "" {
			// The origin removed a checkpoint (retention, ckpt rm): its
			// copies on other levels go too, once the removal is durable.
			if err := g.store.Sync(ctx); err != nil {
				blobError(w, h, err)
				return
			}
			s.flush.enqueue(job{g: g, id: h.Name, drop: true})
		}
		w.WriteHeader(http.StatusNoContent)
	case http.MethodPut:
		if r.ContentLength > s.maxBlob {
			httpError(w, http.StatusRequestEntityTooLarge, "too_large", "%s: %d bytes; the agent takes blobs of at most %d bytes", h, r.ContentLength, s.maxBlob)
			return
		}
		if !s.acquire(ctx) {
			return
		}
		defer s.release()
		body := http.MaxBytesReader(w, r.Body, s.maxBlob)
		var b []byte
		if r.ContentLength >= 0 {
			b = make([]byte, r.ContentLength)
			_, err = io.ReadFull(body, b)
			if err == nil { // nothing may follow the declared length
				var one [1]byte
				if n, _ := body.Read(one[:]); n > 0 {
					err = errors.New("body longer than its Content-Length")
				}
			}
		} else {
			b, err = io.ReadAll(body)
		}
		if err != nil {
			var mbe *http.MaxBytesError
			if errors.As(err, &mbe) {
				httpError(w, http.StatusRequestEntityTooLarge, "too_large", "%s: the agent takes blobs of at most %d bytes", h, s.maxBlob)
				return
			}
			httpError(w, http.StatusBadRequest, "truncated", "%s: upload cut short: %v; nothing was stored", h, err)
			return
		}
		s.met.bytesIn.Add(float64(len(b)))
		if err := g.store.Save(withSyncGroup(ctx, r), h, b); err != nil {
			blobError(w, h, err)
			return
		}
		s.met.blobsStored.Inc()
		if h.Kind == backend.Manifest && r.Header.Get(backend.AgentOriginHeader) == "" {
			g.mu.Lock()
			g.fresh[h.Name] = true
			g.mu.Unlock()
		}
		w.WriteHeader(http.StatusNoContent)
	}
}

// withSyncGroup puts the client's sync group (AgentSyncGroupHeader) in
// ctx: the store reports a chunk that failed to become durable to the Sync
// of the writer that saved it.
func withSyncGroup(ctx context.Context, r *http.Request) context.Context {
	if g := r.Header.Get(backend.AgentSyncGroupHeader); g != "" {
		return backend.WithSyncGroup(ctx, g)
	}
	return ctx
}

func blobError(w http.ResponseWriter, h backend.Handle, err error) {
	switch {
	case errors.Is(err, backend.ErrNotExist):
		httpError(w, http.StatusNotFound, "no_blob", "%s does not exist", h)
	case strings.Contains(err.Error(), "invalid blob name") || strings.Contains(err.Error(), "invalid chunk name") || strings.Contains(err.Error(), "takes no name"):
		httpError(w, http.StatusBadRequest, "bad_name", "%v", err)
	default:
		httpError(w, http.StatusInternalServerError, "io", "%v", err)
	}
}

// list streams one JSON line per blob and an empty object at the end, so a
// reader can tell a complete listing from one cut short.
func (s *Server) list(w http.ResponseWriter, r *http.Request, g *group) {
	k := backend.Kind(r.PathValue("kind"))
	switch k {
	case backend.Config, backend.Chunk, backend.Manifest, backend.Level:
	default:
		httpError(w, http.StatusBadRequest, "bad_kind", "unknown blob kind %q", k)
		return
	}
	w.Header().Set("Content-Type", "application/x-ndjson")
	enc := json.NewEncoder(w)
	err := g.store.List(r.Context(), k, func(in backend.Info) error {
		return enc.Encode(backend.AgentListEntry{Name: in.Name, Size: in.Size, MTime: in.ModTime})
	})
	if err != nil {
		s.log.Warn("listing", "group", g.name, "kind", k, "err", err)
		return // no end marker: the client sees a listing cut short
	}
	io.WriteString(w, "{}\n")
}

func (s *Server) sync(w http.ResponseWriter, r *http.Request, g *group) {
	g.mu.Lock()
	fresh := g.fresh
	g.fresh = map[string]bool{}
	g.mu.Unlock()
	if err := g.store.Sync(withSyncGroup(r.Context(), r)); err != nil {
		g.mu.Lock()
		for id := range fresh {
			g.fresh[id] = true
		}
		g.mu.Unlock()
		httpError(w, http.StatusInternalServerError, "io", "sync: %v", err)
		return
	}
	for id := range fresh {
		s.flush.enqueue(job{g: g, id: id})
	}
	w.WriteHeader(http.StatusNoContent)
}

func (s *Server) lock(w http.ResponseWriter, r *http.Request, g *group) {
	name := r.PathValue("name")
	excl := r.URL.Query().Get("mode") == "exclusive"
	lease, ok := g.locks.try(name, excl, s.LockTTL)
	if !ok {
		httpError(w, http.StatusConflict, "locked", "lock %q is held", name)
		return
	}
	writeJSON(w, map[string]any{"lease": lease, "ttl_ms": s.LockTTL.Milliseconds()})
}

func (s *Server) lockRefresh(w http.ResponseWriter, r *http.Request, g *group) {
	if !g.locks.refresh(r.PathValue("name"), r.PathValue("lease"), s.LockTTL) {
		httpError(w, http.StatusNotFound, "no_lease", "lease expired or unknown")
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (s *Server) unlock(w http.ResponseWriter, r *http.Request, g *group) {
	g.locks.release(r.PathValue("name"), r.PathValue("lease"))
	w.WriteHeader(http.StatusNoContent)
}

func (s *Server) topology(w http.ResponseWriter, r *http.Request, g *group) {
	t := Topology{Node: s.cfg.Node, Nodes: map[string]string{}, K: s.cfg.Levels.Erasure.K, M: s.cfg.Levels.Erasure.M}
	for _, n := range s.cfg.Nodes() {
		t.Nodes[n] = s.cfg.Addr(n)
	}
	if loc := s.cfg.Levels.Durable.Location; loc != "" {
		t.Durable = durableLocation(loc, g.name)
	}
	writeJSON(w, t)
}

// Topology is what an agent tells clients about its cluster, for recovery.
type Topology struct {
	Node    string            `json:"node"`
	Nodes   map[string]string `json:"nodes"` // name -> HOST:PORT, this node included
	K       int               `json:"k,omitempty"`
	M       int               `json:"m,omitempty"`
	Durable string            `json:"durable,omitempty"` // the group's durable location
}

// durableLocation is the group's own place under the durable location.
func durableLocation(loc, group string) string {
	return strings.TrimRight(loc, "/") + "/" + group
}

func (s *Server) committed(w http.ResponseWriter, r *http.Request, g *group) {
	id := r.PathValue("id")
	var n Committed
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, 64<<20))
	if err := dec.Decode(&n); err != nil {
		httpError(w, http.StatusBadRequest, "bad_body", "committed: %v", err)
		return
	}
	if _, err := g.store.Stat(r.Context(), backend.Handle{Kind: backend.Manifest, Name: id}); err != nil {
		blobError(w, backend.Handle{Kind: backend.Manifest, Name: id}, err)
		return
	}
	s.flush.enqueue(job{g: g, id: id, note: &n})
	w.WriteHeader(http.StatusAccepted)
}

// Committed is the body of POST .../checkpoints/ID/committed.
type Committed struct {
	Seq    uint64    `json:"seq"`
	Series string    `json:"series,omitempty"` // stands for the name (repo.SeriesTag)
	Time   time.Time `json:"time"`
	Chunks []string  `json:"chunks"`
}

func (s *Server) flushWait(w http.ResponseWriter, r *http.Request, g *group) {
	ms, _ := strconv.Atoi(r.URL.Query().Get("timeout_ms"))
	ctx, cancel := context.WithTimeout(r.Context(), time.Duration(ms)*time.Millisecond)
	defer cancel()
	writeJSON(w, map[string]int{"pending": s.flush.wait(ctx)})
}

// lockTable holds a group's locks as leases: a holder that stops
// refreshing (it died, or its node was cut off) loses the lock after the TTL.
type lockTable struct {
	mu    sync.Mutex
	locks map[string]*lockState
}

type lockState struct {
	excl    bool
	holders map[string]time.Time // lease -> expiry
}

func newLockTable() *lockTable { return &lockTable{locks: map[string]*lockState{}} }

func (t *lockTable) try(name string, excl bool, ttl time.Duration) (string, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	now := time.Now()
	l := t.locks[name]
	if l != nil {
		for id, exp := range l.holders {
			if now.After(exp) {
				delete(l.holders, id)
			}
		}
		if len(l.holders) == 0 {
			l = nil
		}
	}
	if l != nil && (excl || l.excl) {
		return "", false
	}
	if l == nil {
		l = &lockState{excl: excl, holders: map[string]time.Time{}}
		t.locks[name] = l
	}
	id := randomID()
	l.holders[id] = now.Add(ttl)
	return id, true
}

// hold takes the lock for the agent itself (no client refreshes it: the
// lease lasts until released), waiting until ctx ends (then ok is false).
func (t *lockTable) hold(ctx context.Context, name string, excl bool) (release func(), ok bool) {
	delay := 5 * time.Millisecond
	for {
		if lease, ok := t.try(name, excl, 365*24*time.Hour); ok {
			return func() { t.release(name, lease) }, true
		}
		select {
		case <-ctx.Done():
			return nil, false
		case <-time.After(delay):
		}
		delay = min(2*delay, 200*time.Millisecond)
	}
}

func (t *lockTable) refresh(name, lease string, ttl time.Duration) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	l := t.locks[name]
	if l == nil {
		return false
	}
	exp, ok := l.holders[lease]
	if !ok || time.Now().After(exp) {
		return false
	}
	l.holders[lease] = time.Now().Add(ttl)
	return true
}

func (t *lockTable) release(name, lease string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if l := t.locks[name]; l != nil {
		delete(l.holders, lease)
		if len(l.holders) == 0 {
			delete(t.locks, name)
		}
	}
}
