package backend

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Agent is the Backend of one group's store on a ckpt agent, reached over
// HTTP at a location "agent://HOST:PORT/GROUP" (docs/AGENT.md). Every
// request carries the group's token as "Authorization: Bearer TOKEN".
//
// Blobs move whole in one request each; Sync asks the agent to make the
// group's pending saves durable; locks are leases the agent holds and this
// client refreshes while it holds them.
type Agent struct {
	host  string // host:port
	group string
	token string
	base  string // http://host:port/v1/groups/GROUP
	c     *http.Client
	err   error  // the TLS setting could not be used
	id    string // random: names this client's sync groups to the agent
	// Origin, when set, is sent as X-Ckpt-Origin: the saves are a copy made
	// by a level flush or a recovery, not a new checkpoint of this node, so
	// the agent does not flush them again.
	Origin string

	// Commit notification (CommitWatcher): manifests saved since the last
	// Sync, told to the agent once a Sync made them durable.
	cmu     sync.Mutex
	decode  ManifestDecoder
	pending []pendingManifest
}

type pendingManifest struct {
	id   string
	blob []byte
}

// maxPendingNotices bounds the commit notices kept for a retry at the next
// Sync when the agent could not be told.
const maxPendingNotices = 64

// Header names of the agent protocol.
const (
	AgentOriginHeader = "X-Ckpt-Origin"
	// AgentSyncGroupHeader carries the client's sync group
	// (WithSyncGroup): the agent's store reports a chunk that failed to
	// become durable to that writer's Sync, not to another client's.
	AgentSyncGroupHeader = "X-Ckpt-Sync-Group"
)

// AgentTokenEnv and AgentTokenFileEnv name the environment variables that
// give a client its group token (the value, or a file holding it).
const (
	AgentTokenEnv     = "CKPT_AGENT_TOKEN"
	AgentTokenFileEnv = "CKPT_AGENT_TOKEN_FILE"
)

// ErrAgentAuth is wrapped by errors for a token the agent refused.
var ErrAgentAuth = errors.New("agent refused the token")

// ParseAgent splits "agent://HOST:PORT/GROUP".
func ParseAgent(loc string) (host, group string, err error) {
	rest, ok := strings.CutPrefix(loc, "agent://")
	if !ok {
		return "", "", fmt.Errorf("%q is not an agent:// location", loc)
	}
	host, group, _ = strings.Cut(rest, "/")
	group = strings.Trim(group, "/")
	if _, _, err := net.SplitHostPort(host); err != nil || host == "" {
		return "", "", fmt.Errorf("agent location %q: want agent://HOST:PORT/GROUP", loc)
	}
	if !ValidGroup(group) {
		return "", "", fmt.Errorf("agent location %q: invalid group name %q (letters, digits, '-', '_', '.')", loc, group)
	}
	return host, group, nil
}

// ValidGroup reports whether s is a valid group name: 1-64 characters of
// letters, digits, '-', '_' and '.', not starting with '.'.
func ValidGroup(s string) bool {
	if s == "" || len(s) > 64 || s[0] == '.' {
		return false
	}
	for _, c := range s {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.') {
			return false
		}
	}
	return true
}

// ReadTokenFile reads a token from a file; surrounding whitespace is not
// part of it.
func ReadTokenFile(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("reading token file: %w", err)
	}
	t := strings.TrimSpace(string(b))
	if t == "" {
		return "", fmt.Errorf("token file %s is empty", path)
	}
	return t, nil
}

// AgentTokenFromEnv returns the token from a token file (tokenFile, else
// $CKPT_AGENT_TOKEN_FILE) or $CKPT_AGENT_TOKEN.
func AgentTokenFromEnv(tokenFile string) (string, error) {
	if tokenFile == "" {
		tokenFile = os.Getenv(AgentTokenFileEnv)
	}
	if tokenFile != "" {
		return ReadTokenFile(tokenFile)
	}
	if t := strings.TrimSpace(os.Getenv(AgentTokenEnv)); t != "" {
		return t, nil
	}
	return "", fmt.Errorf("no agent token: set %s or %s", AgentTokenEnv, AgentTokenFileEnv)
}

// agentTransport is the template of the transport all clients share
// (newAgentHTTP clones it, with or without TLS): connections to an agent
// are reused across backends.
var agentTransport = &http.Transport{
	Proxy: nil, // agents are on the cluster network, never behind a proxy
	DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := agentDialer.DialContext(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		return stallConn{c}, nil
	},
	MaxIdleConnsPerHost: 64,
	IdleConnTimeout:     90 * time.Second,
}

var agentDialer = &net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}

// longPoll bounds one server-side wait (flush/wait, gc's lock wait) well
// under the stall timeout: the connection is silent while the agent waits.
func longPoll(wait time.Duration) time.Duration {
	return max(min(wait, AgentStallTimeout()/2), time.Millisecond)
}

// NewAgent returns a client for group at host:port without contacting it.
func NewAgent(host, group, token string) *Agent {
	h := currentAgentHTTP()
	var id [8]byte
	_, _ = rand.Read(id[:])
	return &Agent{
		host: host, group: group, token: token, id: hex.EncodeToString(id[:]),
		base: h.scheme + "://" + host + "/v1/groups/" + url.PathEscape(group),
		c:    h.client,
		err:  h.err,
	}
}

// OpenAgent connects to the group at loc and checks the token.
func OpenAgent(ctx context.Context, loc, token string) (*Agent, error) {
	host, group, err := ParseAgent(loc)
	if err != nil {
		return nil, err
	}
	a := NewAgent(host, group, token)
	resp, err := a.do(ctx, http.MethodGet, "", nil, -1)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, a.statusError(resp, "opening group")
	}
	return a, nil
}

// Group is the group's name.
func (a *Agent) Group() string { return a.group }

// Host is the agent's HOST:PORT.
func (a *Agent) Host() string { return a.host }

// Token is the group token the client sends.
func (a *Agent) Token() string { return a.token }

func (a *Agent) Location() string { return "agent://" + a.host + "/" + a.group }

// do sends one request; path is relative to the group's base URL. The
// request is given up (a StallError) when the agent takes no byte for the
// stall timeout (stallConn), sends no answer within it once the body is
// sent, or pauses the answer's body for as long.
func (a *Agent) do(ctx context.Context, method, path string, body io.Reader, length int64) (*http.Response, error) {
	if a.err != nil {
		return nil, a.err
	}
	rctx, cancel := context.WithCancelCause(ctx)
	w := &stallWatch{cancel: cancel, stall: AgentStallTimeout(), addr: a.host}
	var getBody func() (io.ReadCloser, error)
	if br, ok := body.(*bytes.Reader); ok {
		// Kept replayable: the transport resends a request whose pooled
		// connection turned out to be closed.
		snap := *br
		getBody = func() (io.ReadCloser, error) { r := snap; return io.NopCloser(&sendWatch{r: &r, w: w}), nil }
	}
	if body != nil {
		body = &sendWatch{r: body, w: w}
	} else {
		w.arm()
	}
	req, err := http.NewRequestWithContext(rctx, method, a.base+path, body)
	if err != nil {
		cancel(nil)
		return nil, err
	}
	req.GetBody = getBody
	if length >= 0 {
		req.ContentLength = length
	}
	req.Header.Set("Authorization", "Bearer "+a.token)
	if a.Origin != "" {
		req.Header.Set(AgentOriginHeader, a.Origin)
	}
	if g := syncGroup(ctx); g != nil {
		// Unique while the writer lives (its group is a live pointer).
		req.Header.Set(AgentSyncGroupHeader, fmt.Sprintf("%s-%v", a.id, g))
	}
	resp, err := a.c.Do(req)
	w.disarm()
	if err != nil {
		err = stallCause(rctx, err)
		cancel(nil)
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		if strings.Contains(err.Error(), "server gave HTTP response to HTTPS client") {
			return nil, fmt.Errorf("%s: %w (this agent does not use TLS: unset %s)", a.Location(), err, AgentCAEnv)
		}
		return nil, fmt.Errorf("%s: %w", a.Location(), err)
	}
	resp.Body = &recvWatch{rc: resp.Body, w: w, ctx: rctx}
	return resp, nil
}

// agentError is the JSON body of an agent's error response.
type agentError struct {
	Error string `json:"error"`
	Code  string `json:"code"`
}

// statusError turns a non-2xx response into an error; 404s of blobs wrap
// ErrNotExist, refused tokens ErrAgentAuth.
func (a *Agent) statusError(resp *http.Response, what string) error {
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	var e agentError
	msg := strings.TrimSpace(string(b))
	if json.Unmarshal(b, &e) == nil && e.Error != "" {
		msg = e.Error
	}
	if resp.StatusCode == http.StatusBadRequest && strings.Contains(msg, "HTTPS server") {
		msg += " (this agent uses TLS: set " + AgentCAEnv + ", " + AgentCertEnv + " and " + AgentKeyEnv + ")"
	}
	switch {
	case resp.StatusCode == http.StatusUnauthorized || resp.StatusCode == http.StatusForbidden:
		return fmt.Errorf("%s: %s: %w: %s", a.Location(), what, ErrAgentAuth, msg)
	case resp.StatusCode == http.StatusNotFound:
		return fmt.Errorf("%s: %s: %s: %w", a.Location(), what, msg, ErrNotExist)
	}
	return fmt.Errorf("%s: %s: %s (HTTP %d)", a.Location(), what, msg, resp.StatusCode)
}

func blobPath(h Handle) (string, error) {
	if err := checkName(h); err != nil {
		return "", err
	}
	switch h.Kind {
	case Config:
		return "/config", nil
	case Chunk, Manifest, Level:
		return "/blobs/" + string(h.Kind) + "/" + url.PathEscape(h.Name), nil
	}
	return "", fmt.Errorf("unknown blob kind %q", h.Kind)
}

func (a *Agent) Save(ctx context.Context, h Handle, data []byte) error {
	p, err := blobPath(h)
	if err != nil {
		return err
	}
	resp, err := a.do(ctx, http.MethodPut, p, bytes.NewReader(data), int64(len(data)))
	if err != nil {
		return fmt.Errorf("saving %s: %w", h, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		return a.statusError(resp, "saving "+h.String())
	}
	if h.Kind == Manifest && a.Origin == "" {
		a.cmu.Lock()
		if a.decode != nil {
			a.pending = append(a.pending, pendingManifest{id: h.Name, blob: bytes.Clone(data)})
		}
		a.cmu.Unlock()
	}
	return nil
}

// WatchCommits implements CommitWatcher: after a Sync, every manifest this
// client saved before it is decoded with dec and told to the agent
// (Committed), so the agent moves it up the levels even when it cannot
// read it. Copies made with Origin set are not told: they are not new
// checkpoints of the node.
func (a *Agent) WatchCommits(dec ManifestDecoder) {
	a.cmu.Lock()
	a.decode = dec
	a.cmu.Unlock()
}

func (a *Agent) Sync(ctx context.Context) error {
	// Only manifests saved before the sync is asked for are durable after it.
	a.cmu.Lock()
	todo, dec := a.pending, a.decode
	a.pending = nil
	a.cmu.Unlock()
	resp, err := a.do(ctx, http.MethodPost, "/sync", nil, 0)
	if err != nil {
		a.requeue(todo)
		return fmt.Errorf("syncing: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		a.requeue(todo)
		return a.statusError(resp, "syncing")
	}
	a.notify(ctx, dec, todo)
	return nil
}

// CommitNotice is the body of POST …/checkpoints/ID/committed.
type CommitNotice struct {
	Seq    uint64    `json:"seq"`
	Series string    `json:"series,omitempty"`
	Time   time.Time `json:"time"`
	Chunks []string  `json:"chunks"`
}

// notify tells the agent of manifests made durable. The checkpoints are
// committed whatever happens here, so a failure is not the Sync's: a notice
// the agent did not take is kept (a bounded number) and sent again after
// the next Sync; one that cannot be decoded is dropped.
func (a *Agent) notify(ctx context.Context, dec ManifestDecoder, todo []pendingManifest) {
	var failed []pendingManifest
	for _, p := range todo {
		if dec == nil {
			break
		}
		ci, err := dec(p.id, p.blob)
		if err != nil {
			continue // not a manifest of this repository: nothing to tell
		}
		if ci.Chunks == nil {
			ci.Chunks = []string{}
		}
		if err := a.Committed(ctx, p.id, CommitNotice{Seq: ci.Seq, Series: ci.Series, Time: time.Now().UTC(), Chunks: ci.Chunks}); err != nil {
			if !errors.Is(err, ErrNotExist) {
				failed = append(failed, p)
			}
		}
	}
	a.requeue(failed)
}

func (a *Agent) requeue(ps []pendingManifest) {
	if len(ps) == 0 {
		return
	}
	a.cmu.Lock()
	defer a.cmu.Unlock()
	a.pending = append(ps, a.pending...)
	if n := len(a.pending); n > maxPendingNotices {
		a.pending = a.pending[n-maxPendingNotices:]
	}
}

func (a *Agent) Load(ctx context.Context, h Handle) ([]byte, error) {
	p, err := blobPath(h)
	if err != nil {
		return nil, err
	}
	resp, err := a.do(ctx, http.MethodGet, p, nil, -1)
	if err != nil {
		return nil, fmt.Errorf("loading %s: %w", h, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode == http.StatusNotFound {
		if err := a.statusError(resp, "loading "+h.String()); errors.Is(err, ErrNotExist) {
			return nil, NotExist(a.Location(), h)
		}
	}
	if resp.StatusCode != http.StatusOK {
		return nil, a.statusError(resp, "loading "+h.String())
	}
	if resp.ContentLength < 0 {
		return nil, fmt.Errorf("loading %s from %s: no length", h, a.Location())
	}
	b := make([]byte, resp.ContentLength)
	if _, err := io.ReadFull(resp.Body, b); err != nil {
		return nil, fmt.Errorf("loading %s from %s: %w (short read)", h, a.Location(), err)
	}
	return b, nil
}

func (a *Agent) Stat(ctx context.Context, h Handle) (Info, error) {
	p, err := blobPath(h)
	if err != nil {
		return Info{}, err
	}
	resp, err := a.do(ctx, http.MethodHead, p, nil, -1)
	if err != nil {
		return Info{}, fmt.Errorf("stat %s: %w", h, err)
	}
	resp.Body.Close()
	switch resp.StatusCode {
	case http.StatusOK:
	case http.StatusNotFound:
		return Info{}, NotExist(a.Location(), h)
	default:
		return Info{}, a.statusError(resp, "stat "+h.String())
	}
	in := Info{Handle: h, Size: resp.ContentLength}
	if t, err := http.ParseTime(resp.Header.Get("Last-Modified")); err == nil {
		in.ModTime = t
	}
	return in, nil
}

func (a *Agent) Remove(ctx context.Context, h Handle) error {
	p, err := blobPath(h)
	if err != nil {
		return err
	}
	resp, err := a.do(ctx, http.MethodDelete, p, nil, 0)
	if err != nil {
		return fmt.Errorf("removing %s: %w", h, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		return a.statusError(resp, "removing "+h.String())
	}
	return nil
}

// AgentListEntry is one line of a listing (newline-delimited JSON).
type AgentListEntry struct {
	Name  string    `json:"name"`
	Size  int64     `json:"size"`
	MTime time.Time `json:"mtime"`
}

func (a *Agent) List(ctx context.Context, k Kind, fn func(Info) error) error {
	if k == Config {
		in, err := a.Stat(ctx, Handle{Kind: Config})
		if errors.Is(err, ErrNotExist) {
			return nil
		} else if err != nil {
			return err
		}
		return fn(in)
	}
	return a.listLines(ctx, "/blobs/"+string(k), func(e AgentListEntry) error {
		return fn(Info{Handle: Handle{Kind: k, Name: e.Name}, Size: e.Size, ModTime: e.MTime})
	})
}

// listLines reads a streamed listing line by line, so a long one is never
// held whole.
func (a *Agent) listLines(ctx context.Context, path string, fn func(AgentListEntry) error) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	resp, err := a.do(ctx, http.MethodGet, path, nil, -1)
	if err != nil {
		return fmt.Errorf("listing %s: %w", path, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return a.statusError(resp, "listing "+path)
	}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 0, 4096), 1<<20)
	complete := false
	for sc.Scan() {
		line := sc.Bytes()
		if len(line) == 0 {
			continue
		}
		var e AgentListEntry
		if err := json.Unmarshal(line, &e); err != nil {
			return fmt.Errorf("listing %s on %s: bad line: %w", path, a.Location(), err)
		}
		if e.Name == "" { // the end marker: the listing is complete
			complete = true
			continue
		}
		if err := fn(e); err != nil {
			return err
		}
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("listing %s on %s: %w", path, a.Location(), err)
	}
	if !complete {
		return fmt.Errorf("listing %s on %s: cut short", path, a.Location())
	}
	return nil
}

// lockGrant is the agent's answer to a lock request.
type lockGrant struct {
	Lease string `json:"lease"`
	TTLms int64  `json:"ttl_ms"`
}

func (a *Agent) Lock(ctx context.Context, name string, exclusive bool) (Unlocker, error) {
	if name == "" || strings.ContainsAny(name, "/\\\x00") || name[0] == '.' {
		return nil, fmt.Errorf("invalid lock name %q", name)
	}
	mode := "shared"
	if exclusive {
		mode = "exclusive"
	}
	p := "/locks/" + url.PathEscape(name)
	delay := 5 * time.Millisecond
	var g lockGrant
	for {
		resp, err := a.do(ctx, http.MethodPost, p+"?mode="+mode, nil, 0)
		if err != nil {
			if ctx.Err() != nil {
				return nil, ErrLocked
			}
			return nil, fmt.Errorf("taking lock %s: %w", name, err)
		}
		if resp.StatusCode == http.StatusOK {
			err := json.NewDecoder(resp.Body).Decode(&g)
			resp.Body.Close()
			if err != nil || g.Lease == "" {
				return nil, fmt.Errorf("taking lock %s on %s: bad answer", name, a.Location())
			}
			break
		}
		if resp.StatusCode != http.StatusConflict {
			err := a.statusError(resp, "taking lock "+name)
			resp.Body.Close()
			return nil, err
		}
		resp.Body.Close()
		select {
		case <-ctx.Done():
			return nil, ErrLocked
		case <-time.After(delay):
		}
		delay = min(2*delay, 200*time.Millisecond)
	}
	lp := p + "/" + url.PathEscape(g.Lease)
	ttl := time.Duration(g.TTLms) * time.Millisecond
	if ttl <= 0 {
		ttl = 30 * time.Second
	}
	return holdLease(ttl/3, func(ctx context.Context) {
		if resp, err := a.do(ctx, http.MethodPut, lp, nil, 0); err == nil {
			resp.Body.Close()
		}
	}, func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		resp, err := a.do(ctx, http.MethodDelete, lp, nil, 0)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		if resp.StatusCode/100 != 2 {
			return a.statusError(resp, "releasing lock "+name)
		}
		return nil
	}), nil
}

func (a *Agent) Close() error { return nil }

// Fragment operations: erasure-coded fragments are not repository blobs;
// they live beside the group's store on the agent and stream (they can be
// far larger than a blob).

// PutFragment streams a fragment of exactly size bytes. The agent keeps it
// only when all size bytes arrived.
func (a *Agent) PutFragment(ctx context.Context, name string, r io.Reader, size int64) error {
	resp, err := a.do(ctx, http.MethodPut, "/fragments/"+url.PathEscape(name), r, size)
	if err != nil {
		return fmt.Errorf("sending fragment %s: %w", name, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		return a.statusError(resp, "sending fragment "+name)
	}
	return nil
}

// GetFragment opens a fragment for reading; the caller closes it.
func (a *Agent) GetFragment(ctx context.Context, name string) (io.ReadCloser, int64, error) {
	resp, err := a.do(ctx, http.MethodGet, "/fragments/"+url.PathEscape(name), nil, -1)
	if err != nil {
		return nil, 0, fmt.Errorf("reading fragment %s: %w", name, err)
	}
	if resp.StatusCode != http.StatusOK {
		defer resp.Body.Close()
		return nil, 0, a.statusError(resp, "reading fragment "+name)
	}
	return resp.Body, resp.ContentLength, nil
}

// ListFragments calls fn for every fragment the agent holds for the group
// (for checkpoint id only, unless id is empty).
func (a *Agent) ListFragments(ctx context.Context, id string, fn func(name string, size int64) error) error {
	p := "/fragments"
	if id != "" {
		p += "?checkpoint=" + url.QueryEscape(id)
	}
	return a.listLines(ctx, p, func(e AgentListEntry) error { return fn(e.Name, e.Size) })
}

// RemoveFragment deletes a fragment (missing is not an error).
func (a *Agent) RemoveFragment(ctx context.Context, name string) error {
	resp, err := a.do(ctx, http.MethodDelete, "/fragments/"+url.PathEscape(name), nil, 0)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		return a.statusError(resp, "removing fragment "+name)
	}
	return nil
}

// Committed tells the agent that checkpoint id was committed in its store,
// so it moves it up the levels. body is the JSON the agent expects
// (docs/AGENT.md): the sequence number and the chunk IDs, which an agent
// cannot read from an encrypted manifest.
func (a *Agent) Committed(ctx context.Context, id string, body any) error {
	b, err := json.Marshal(body)
	if err != nil {
		return err
	}
	resp, err := a.do(ctx, http.MethodPost, "/checkpoints/"+url.PathEscape(id)+"/committed", bytes.NewReader(b), int64(len(b)))
	if err != nil {
		return fmt.Errorf("notifying commit of %s: %w", id, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		return a.statusError(resp, "notifying commit of "+id)
	}
	return nil
}

// GC asks the agent to remove the chunks of the group's store that no
// checkpoint there references (partner copies included), waiting up to
// wait for writers to finish; the result is the agent's JSON answer
// (checkpoints, chunks, removed, removed_bytes). A store in use past wait
// gives an error wrapping ErrLocked.
func (a *Agent) GC(ctx context.Context, wait time.Duration, res any) error {
	deadline := time.Now().Add(wait)
	for {
		err := a.gc(ctx, longPoll(time.Until(deadline)), res)
		if !errors.Is(err, ErrLocked) || time.Until(deadline) <= 0 {
			return err
		}
	}
}

func (a *Agent) gc(ctx context.Context, wait time.Duration, res any) error {
	resp, err := a.do(ctx, http.MethodPost, "/gc?timeout_ms="+strconv.FormatInt(wait.Milliseconds(), 10), nil, 0)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode == http.StatusConflict {
		err := a.statusError(resp, "gc")
		if strings.Contains(err.Error(), "in use") {
			return fmt.Errorf("%w: %v", ErrLocked, err)
		}
		return err
	}
	if resp.StatusCode != http.StatusOK {
		return a.statusError(resp, "gc")
	}
	return json.NewDecoder(resp.Body).Decode(res)
}

// GetJSON reads a JSON document of the group (such as "/topology") into v.
func (a *Agent) GetJSON(ctx context.Context, path string, v any) error {
	resp, err := a.do(ctx, http.MethodGet, path, nil, -1)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return a.statusError(resp, "reading "+path)
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, 16<<20)).Decode(v); err != nil {
		return fmt.Errorf("%s: reading %s: %w", a.Location(), path, err)
	}
	return nil
}

// WaitIdle waits until the agent's flush queue for the group is empty (for
// tests and 'ckpt agent flush --wait'). The agent answers when idle or
// after wait; it returns the number of jobs left.
func (a *Agent) WaitIdle(ctx context.Context, wait time.Duration) (int, error) {
	deadline := time.Now().Add(wait)
	for {
		n, err := a.waitIdle(ctx, longPoll(time.Until(deadline)))
		if err != nil || n == 0 || time.Until(deadline) <= 0 {
			return n, err
		}
	}
}

func (a *Agent) waitIdle(ctx context.Context, wait time.Duration) (int, error) {
	resp, err := a.do(ctx, http.MethodPost, "/flush/wait?timeout_ms="+strconv.FormatInt(wait.Milliseconds(), 10), nil, 0)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return 0, a.statusError(resp, "waiting for flushes")
	}
	var v struct {
		Pending int `json:"pending"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&v); err != nil {
		return 0, err
	}
	return v.Pending, nil
}
