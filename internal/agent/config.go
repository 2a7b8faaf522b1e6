package agent

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"sort"
	"strings"
	"time"

	"github.com/ckpt/ckpt/internal/backend"
)

// Config is the agent's configuration file (JSON, docs/CLI.md "ckpt agent").
// Unknown fields are refused: a misspelt option must not be ignored.
type Config struct {
	// Listen is the address the agent serves on (HOST:PORT).
	Listen string `json:"listen"`
	// Advertise is the address peers and clients reach this agent at;
	// default Listen.
	Advertise string `json:"advertise,omitempty"`
	// DataDir holds one store per group (DATA_DIR/GROUP).
	DataDir string `json:"data_dir"`
	// Node is this node's name, unique in the cluster.
	Node string `json:"node"`
	// Peers maps the other nodes' names to their agents' HOST:PORT.
	Peers map[string]string `json:"peers,omitempty"`
	// Groups maps group names to their tokens.
	Groups map[string]GroupConfig `json:"groups"`
	// Levels is the policy: which checkpoints go to which levels.
	Levels LevelsConfig `json:"levels"`
	// Limits bound the agent's memory.
	Limits LimitsConfig `json:"limits"`
	// TLS, when set, makes the agent serve HTTPS, require client
	// certificates signed by its CA on the API (mTLS), and reach its peers
	// over TLS with its own certificate. Every agent of a cluster has it
	// or none does.
	TLS *backend.AgentTLS `json:"tls,omitempty"`
}

// GroupConfig is one group. The token is read from TokenFile (the same
// token on every node of the group); Token inline is accepted for tests but
// discouraged (the config file is often world-readable).
type GroupConfig struct {
	TokenFile string `json:"token_file,omitempty"`
	Token     string `json:"token,omitempty"`
}

// LevelsConfig chooses levels per checkpoint by its sequence number: a
// level with Every = N takes the checkpoints whose sequence number is a
// multiple of N (1: every checkpoint, 0: none). L1 (local) is every one.
type LevelsConfig struct {
	Partner PartnerConfig `json:"partner"`
	Erasure ErasureConfig `json:"erasure"`
	Durable DurableConfig `json:"durable"`
	Retry   RetryConfig   `json:"retry"`
}

// RetryConfig bounds how a level that failed is tried again: after
// BackoffMS, then twice as long each time up to MaxBackoffMS, at most
// Attempts times in all (the first try included). After the last, the
// level waits for the agent's restart or a new notice of the checkpoint.
type RetryConfig struct {
	Attempts     int `json:"attempts,omitempty"`       // default 10; 1: no retry
	BackoffMS    int `json:"backoff_ms,omitempty"`     // default 2000
	MaxBackoffMS int `json:"max_backoff_ms,omitempty"` // default 300000 (5 min)
}

// delay is the wait before try number next (2, 3, …).
func (r RetryConfig) delay(next int) time.Duration {
	d := time.Duration(r.BackoffMS) * time.Millisecond
	for i := 2; i < next && d < time.Duration(r.MaxBackoffMS)*time.Millisecond; i++ {
		d *= 2
	}
	return min(d, time.Duration(r.MaxBackoffMS)*time.Millisecond)
}

// PartnerConfig is L2.
type PartnerConfig struct {
	Every int `json:"every"`
	// Keep, when positive, keeps partner copies of only the newest Keep
	// checkpoints of each name (older ones are dropped from the partner
	// even while this node keeps them). Copies always go when this node
	// removes the checkpoint.
	Keep int `json:"keep,omitempty"`
	// Node is the partner; default the next node after this one in name
	// order. When it cannot be reached the next ones are tried.
	Node string `json:"node,omitempty"`
}

// ErasureConfig is L3: K data and M parity fragments on K+M nodes.
type ErasureConfig struct {
	Every     int `json:"every"`
	Keep      int `json:"keep,omitempty"` // as PartnerConfig.Keep, for fragments
	K         int `json:"k"`
	M         int `json:"m"`
	StripeKiB int `json:"stripe_kib,omitempty"` // shard size per stripe; default 1024
}

// DurableConfig is L4: a directory or s3: location; each group gets
// LOCATION/GROUP.
type DurableConfig struct {
	Every    int    `json:"every"`
	Location string `json:"location,omitempty"`
}

// LimitsConfig bounds memory: at most MaxInflight blob bodies of at most
// MaxBlobMiB each are held at once.
type LimitsConfig struct {
	MaxBlobMiB  int `json:"max_blob_mib,omitempty"` // default 80 (chunks are at most 64 MiB)
	MaxInflight int `json:"max_inflight,omitempty"` // default 16
	// MaxQueue bounds the flush jobs held in memory; more wait on disk
	// and are found by a scan of the store. Default 1024.
	MaxQueue int `json:"max_queue,omitempty"`
	// StallTimeoutMS gives up a transfer (to or from a peer or a client)
	// that moved no byte for this long: a node cut off by a partition
	// drops no connection. An upload to this agent may pause twice as
	// long. Default 60000.
	StallTimeoutMS int `json:"stall_timeout_ms,omitempty"`
}

// LoadConfig reads a config file.
func LoadConfig(path string) (*Config, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading agent config: %w", err)
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	var c Config
	if err := dec.Decode(&c); err != nil {
		return nil, fmt.Errorf("agent config %s: %w", path, err)
	}
	return &c, nil
}

// Nodes returns every node's name, this one included, sorted.
func (c *Config) Nodes() []string {
	ns := []string{c.Node}
	for n := range c.Peers {
		ns = append(ns, n)
	}
	sort.Strings(ns)
	return ns
}

// Addr returns the address of node n ("" when unknown).
func (c *Config) Addr(n string) string {
	if n == c.Node {
		if c.Advertise != "" {
			return c.Advertise
		}
		return c.Listen
	}
	return c.Peers[n]
}

// Ring returns the other nodes in ring order starting after this one.
func (c *Config) Ring() []string {
	ns := c.Nodes()
	i := sort.SearchStrings(ns, c.Node)
	var out []string
	for j := 1; j < len(ns); j++ {
		out = append(out, ns[(i+j)%len(ns)])
	}
	return out
}

// Validate fills defaults and refuses an inconsistent configuration with
// every problem found, one per line.
func (c *Config) Validate() error {
	var errs []string
	bad := func(format string, a ...any) { errs = append(errs, fmt.Sprintf(format, a...)) }
	if c.Listen == "" {
		bad("listen: an address is required (e.g. \"0.0.0.0:7411\")")
	} else if _, _, err := net.SplitHostPort(c.Listen); err != nil {
		bad("listen %q: %v", c.Listen, err)
	}
	if c.Advertise != "" {
		if h, _, err := net.SplitHostPort(c.Advertise); err != nil || h == "" {
			bad("advertise %q: want HOST:PORT", c.Advertise)
		}
	}
	if c.DataDir == "" {
		bad("data_dir: a directory is required")
	}
	if !backend.ValidGroup(c.Node) {
		bad("node %q: a name of letters, digits, '-', '_', '.' is required", c.Node)
	}
	addrs := map[string]string{}
	for n, a := range c.Peers {
		if n == c.Node {
			bad("peers: %q is this node; list only the other nodes", n)
			continue
		}
		if !backend.ValidGroup(n) {
			bad("peers: invalid node name %q", n)
		}
		if h, _, err := net.SplitHostPort(a); err != nil || h == "" {
			bad("peers: node %q: address %q: want HOST:PORT", n, a)
			continue
		}
		if o, dup := addrs[a]; dup {
			bad("peers: nodes %q and %q have the same address %s", o, n, a)
		}
		addrs[a] = n
	}
	if len(c.Groups) == 0 {
		bad("groups: at least one group is required")
	}
	for g, gc := range c.Groups {
		if !backend.ValidGroup(g) {
			bad("groups: invalid group name %q", g)
		}
		switch {
		case gc.Token == "" && gc.TokenFile == "":
			bad("groups: group %q has no token (set token_file)", g)
		case gc.Token != "" && gc.TokenFile != "":
			bad("groups: group %q has both token and token_file", g)
		case gc.TokenFile != "":
			t, err := backend.ReadTokenFile(gc.TokenFile)
			if err != nil {
				bad("groups: group %q: %v", g, err)
			} else if len(t) < minTokenLen {
				bad("groups: group %q: token in %s is %d characters; at least %d are required", g, gc.TokenFile, len(t), minTokenLen)
			}
		case len(gc.Token) < minTokenLen:
			bad("groups: group %q: token is %d characters; at least %d are required", g, len(gc.Token), minTokenLen)
		}
	}
	nodes := len(c.Peers) + 1
	l := &c.Levels
	if l.Partner.Keep < 0 || l.Erasure.Keep < 0 {
		bad("levels: keep must be 0 (follow this node's retention) or a positive number")
	}
	if l.Partner.Every < 0 || l.Erasure.Every < 0 || l.Durable.Every < 0 {
		bad("levels: every must be 0 (never) or a positive number")
	}
	if l.Partner.Every > 0 {
		if len(c.Peers) == 0 {
			bad("levels.partner: a partner copy needs at least one peer")
		}
		if l.Partner.Node != "" && l.Partner.Node != c.Node { // a shared file may name this node: then the ring decides
			if _, ok := c.Peers[l.Partner.Node]; !ok {
				bad("levels.partner.node %q is not a peer (peers: %s)", l.Partner.Node, strings.Join(c.Ring(), ", "))
			}
		}
	}
	if l.Erasure.Every > 0 {
		if l.Erasure.K < 1 || l.Erasure.M < 1 {
			bad("levels.erasure: k and m must be at least 1 (got k=%d m=%d)", l.Erasure.K, l.Erasure.M)
		} else if l.Erasure.K+l.Erasure.M > nodes {
			bad("levels.erasure: k+m = %d fragments need %d nodes, but there are only %d (this node and %d peers)", l.Erasure.K+l.Erasure.M, l.Erasure.K+l.Erasure.M, nodes, len(c.Peers))
		} else if l.Erasure.K+l.Erasure.M > 256 {
			bad("levels.erasure: k+m at most 256")
		}
		if l.Erasure.StripeKiB < 0 || l.Erasure.StripeKiB > 64<<10 {
			bad("levels.erasure.stripe_kib %d: between 1 and 65536", l.Erasure.StripeKiB)
		}
	}
	if l.Durable.Every > 0 && l.Durable.Location == "" {
		bad("levels.durable: every is %d but no location is given", l.Durable.Every)
	}
	if loc := l.Durable.Location; loc != "" && strings.HasPrefix(loc, "s3:") {
		if _, err := backend.ParseS3(loc); err != nil {
			bad("levels.durable.location: %v", err)
		}
	} else if loc != "" && !strings.HasPrefix(loc, "/") {
		bad("levels.durable.location %q: an absolute directory or s3:http(s)://HOST/BUCKET/PREFIX", loc)
	}
	if rc := l.Retry; rc.Attempts < 0 || rc.BackoffMS < 0 || rc.MaxBackoffMS < 0 {
		bad("levels.retry: must not be negative")
	} else if rc.MaxBackoffMS > 0 && rc.BackoffMS > rc.MaxBackoffMS {
		bad("levels.retry: backoff_ms %d is larger than max_backoff_ms %d", rc.BackoffMS, rc.MaxBackoffMS)
	}
	if c.Limits.MaxBlobMiB < 0 || c.Limits.MaxInflight < 0 || c.Limits.MaxQueue < 0 || c.Limits.StallTimeoutMS < 0 {
		bad("limits: must not be negative")
	}
	if c.TLS != nil {
		if c.TLS.CAFile == "" || c.TLS.CertFile == "" || c.TLS.KeyFile == "" {
			bad("tls: ca_file, cert_file and key_file are all required")
		} else if _, err := c.TLS.ServerConfig(); err != nil {
			bad("tls: %v", err)
		}
	}
	if len(errs) > 0 {
		sort.Strings(errs)
		return &ConfigError{Problems: errs}
	}
	if c.Levels.Erasure.StripeKiB == 0 {
		c.Levels.Erasure.StripeKiB = 1024
	}
	if c.Levels.Retry.Attempts == 0 {
		c.Levels.Retry.Attempts = 10
	}
	if c.Levels.Retry.BackoffMS == 0 {
		c.Levels.Retry.BackoffMS = 2000
	}
	if c.Levels.Retry.MaxBackoffMS == 0 {
		c.Levels.Retry.MaxBackoffMS = max(300000, c.Levels.Retry.BackoffMS)
	}
	if c.Limits.MaxBlobMiB == 0 {
		c.Limits.MaxBlobMiB = 80
	}
	if c.Limits.MaxInflight == 0 {
		c.Limits.MaxInflight = 16
	}
	if c.Limits.MaxQueue == 0 {
		c.Limits.MaxQueue = 1024
	}
	if c.Limits.StallTimeoutMS == 0 {
		c.Limits.StallTimeoutMS = int(backend.DefaultAgentStallTimeout / time.Millisecond)
	}
	return nil
}

// minTokenLen is the shortest group token accepted.
const minTokenLen = 16

// ConfigError lists what is wrong with a configuration.
type ConfigError struct{ Problems []string }

func (e *ConfigError) Error() string {
	return "inconsistent agent configuration:\n  " + strings.Join(e.Problems, "\n  ")
}

// ErrConfig is wrapped by every ConfigError.
var ErrConfig = errors.New("inconsistent agent configuration")

func (e *ConfigError) Unwrap() error { return ErrConfig }

// tokens reads every group's token (Validate has checked them).
func (c *Config) tokens() (map[string]string, error) {
	out := map[string]string{}
	for g, gc := range c.Groups {
		t := gc.Token
		if gc.TokenFile != "" {
			var err error
			if t, err = backend.ReadTokenFile(gc.TokenFile); err != nil {
				return nil, err
			}
		}
		out[g] = t
	}
	return out, nil
}
