package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"

	"github.com/ckpt/ckpt/internal/agent"
	"github.com/ckpt/ckpt/internal/backend"
	"github.com/ckpt/ckpt/internal/levels"
	"github.com/ckpt/ckpt/internal/repo"
	"github.com/spf13/cobra"
)

// agentOptions are ckpt agent's flags; each overrides the config file.
type agentOptions struct {
	config       string
	listen       string
	advertise    string
	dataDir      string
	node         string
	peers        []string // NAME=HOST:PORT
	groups       []string // NAME=TOKEN_FILE
	partnerEvery int
	partnerNode  string
	erasureEvery int
	erasure      string // K+M
	durableEvery int
	durable      string
	check        bool
	verbose      bool
}

func (o *agentOptions) addFlags(c *cobra.Command) {
	f := c.Flags()
	f.StringVar(&o.config, "config", "", "configuration file (JSON, see docs/CLI.md)")
	f.StringVar(&o.listen, "listen", "", "address to serve on, HOST:PORT")
	f.StringVar(&o.advertise, "advertise", "", "address peers and clients reach this agent at (default --listen)")
	f.StringVar(&o.dataDir, "data-dir", "", "directory of the group stores")
	f.StringVar(&o.node, "node", "", "this node's name")
	f.StringArrayVar(&o.peers, "peer", nil, "a peer agent, NAME=HOST:PORT (repeatable)")
	f.StringArrayVar(&o.groups, "group", nil, "a group and its token file, NAME=TOKEN_FILE (repeatable)")
	f.IntVar(&o.partnerEvery, "partner-every", 0, "partner copy of every Nth checkpoint (by sequence number; 0 never)")
	f.StringVar(&o.partnerNode, "partner", "", "partner node (default the next node by name)")
	f.IntVar(&o.erasureEvery, "erasure-every", 0, "Reed-Solomon fragments of every Nth checkpoint (0 never)")
	f.StringVar(&o.erasure, "erasure", "", "erasure code K+M, e.g. 4+2")
	f.IntVar(&o.durableEvery, "durable-every", 0, "durable copy of every Nth checkpoint (0 never)")
	f.StringVar(&o.durable, "durable", "", "durable location: a directory or s3:http(s)://HOST/BUCKET/PREFIX")
	f.BoolVar(&o.check, "check", false, "check the configuration and exit")
	f.BoolVar(&o.verbose, "verbose", false, "log every flush")
}

// buildConfig reads the file (if any) and applies the flags that were set.
func (o *agentOptions) buildConfig(changed func(string) bool) (*agent.Config, error) {
	cfg := &agent.Config{}
	if o.config != "" {
		var err error
		if cfg, err = agent.LoadConfig(o.config); err != nil {
			return nil, err
		}
	}
	set := func(name string, dst *string, v string) {
		if changed(name) {
			*dst = v
		}
	}
	set("listen", &cfg.Listen, o.listen)
	set("advertise", &cfg.Advertise, o.advertise)
	set("data-dir", &cfg.DataDir, o.dataDir)
	set("node", &cfg.Node, o.node)
	set("partner", &cfg.Levels.Partner.Node, o.partnerNode)
	set("durable", &cfg.Levels.Durable.Location, o.durable)
	if changed("partner-every") {
		cfg.Levels.Partner.Every = o.partnerEvery
	}
	if changed("erasure-every") {
		cfg.Levels.Erasure.Every = o.erasureEvery
	}
	if changed("durable-every") {
		cfg.Levels.Durable.Every = o.durableEvery
	}
	if o.erasure != "" {
		k, m, ok := strings.Cut(o.erasure, "+")
		ki, err1 := strconv.Atoi(k)
		mi, err2 := strconv.Atoi(m)
		if !ok || err1 != nil || err2 != nil {
			return nil, fmt.Errorf("--erasure %q: want K+M, e.g. 4+2", o.erasure)
		}
		cfg.Levels.Erasure.K, cfg.Levels.Erasure.M = ki, mi
	}
	for _, p := range o.peers {
		n, a, ok := strings.Cut(p, "=")
		if !ok {
			return nil, fmt.Errorf("--peer %q: want NAME=HOST:PORT", p)
		}
		if cfg.Peers == nil {
			cfg.Peers = map[string]string{}
		}
		cfg.Peers[n] = a
	}
	for _, g := range o.groups {
		n, f, ok := strings.Cut(g, "=")
		if !ok {
			return nil, fmt.Errorf("--group %q: want NAME=TOKEN_FILE", g)
		}
		if cfg.Groups == nil {
			cfg.Groups = map[string]agent.GroupConfig{}
		}
		cfg.Groups[n] = agent.GroupConfig{TokenFile: f}
	}
	return cfg, nil
}

func newAgentCommand(g *globalOptions) *cobra.Command {
	var o agentOptions
	c := &cobra.Command{
		Use:   "agent [--config FILE] [flags]",
		Short: "Run the node agent: local level, peers' copies and fragments, flushes",
		Long: `Run this node's ckpt agent (docs/AGENT.md). It serves, per group, a store
that clients use as the repository agent://HOST:PORT/GROUP (token in
CKPT_AGENT_TOKEN or CKPT_AGENT_TOKEN_FILE), holds its peers' partner copies
and erasure fragments, and moves each committed checkpoint up the levels in
the background as the policy says: partner copy, Reed-Solomon K+M fragments
over K+M agents, durable directory or S3.

The configuration is a JSON file (docs/CLI.md, "ckpt agent") and/or flags;
flags override the file. An inconsistent configuration is refused (exit 2)
with every problem listed. GET /healthz, /metrics (Prometheus) and / (status
page) are served beside the API. SIGTERM or SIGINT stops the agent.`,
		Example: `  ckpt agent --config /etc/ckpt/agent.json
  ckpt agent --listen 10.0.0.1:7411 --data-dir /local/ckpt --node n1 \
      --peer n2=10.0.0.2:7411 --peer n3=10.0.0.3:7411 --group sim=/etc/ckpt/sim.token \
      --partner-every 1 --erasure-every 4 --erasure 2+1 --durable-every 10 --durable /shared/ckpt`,
		Args: exactArgs(0, "no arguments"),
		RunE: func(cmd *cobra.Command, args []string) error {
			cfg, err := o.buildConfig(cmd.Flags().Changed)
			if err != nil {
				return usageError("%v", err)
			}
			if err := cfg.Validate(); err != nil {
				return withCode(exitUsage, err)
			}
			if o.check {
				fmt.Fprintf(g.stderr, "agent configuration of node %s is consistent: %d peers, %d groups\n", cfg.Node, len(cfg.Peers), len(cfg.Groups))
				return nil
			}
			return runAgent(cmd.Context(), g, cfg, o.verbose)
		},
	}
	o.addFlags(c)
	return c
}

func runAgent(ctx context.Context, g *globalOptions, cfg *agent.Config, verbose bool) error {
	lvl := slog.LevelWarn
	if verbose {
		lvl = slog.LevelInfo
	}
	log := slog.New(slog.NewTextHandler(g.stderr, &slog.HandlerOptions{Level: lvl})).With("node", cfg.Node)
	srv, err := agent.New(cfg, log)
	if err != nil {
		return err
	}
	if rcv := migrationReceiver(g, cfg.Node, log); rcv != nil {
		srv.SetMigrationReceiver(rcv)
	}
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return fmt.Errorf("agent: %w", err)
	}
	ctx, stop := signal.NotifyContext(ctx, syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	fmt.Fprintf(g.stderr, "ckpt agent %s listening on %s\n", cfg.Node, ln.Addr())
	return srv.Serve(ctx, ln)
}

// fetchJSON is the --json form of ckpt fetch's result.
type fetchJSON struct {
	ID    string   `json:"id"`
	Name  string   `json:"name"`
	Seq   uint64   `json:"seq"`
	Level string   `json:"level"`
	Where string   `json:"where"`
	To    string   `json:"to"`
	Notes []string `json:"notes,omitempty"`
}

func newFetchCommand(g *globalOptions) *cobra.Command {
	var from, to, tokenFile string
	var asJSON bool
	c := &cobra.Command{
		Use:   "fetch ID|NAME|NAME@SEQ --from agent://HOST:PORT/GROUP [--to REPO]",
		Short: "Bring the newest complete copy of a checkpoint to this node, from any level",
		Long: `Find the newest checkpoint matching the reference that is complete at any
level, asking the fastest first (this node's agent, the partners' stores,
erasure fragments on every agent, durable storage), and make it complete in
the destination: the --from agent's store (default) or --to REPO. A lost
local copy is rebuilt from a partner copy, from any K of the K+M fragments
(each shard checked: a corrupt one counts as lost), or from durable storage;
the destination may be a node that never held the checkpoint. Prints the
checkpoint ID; says on stderr which level served it. Then restore from it
as usual (--repo agent://HOST:PORT/GROUP).

The token comes from --token-file, CKPT_AGENT_TOKEN_FILE or
CKPT_AGENT_TOKEN; the key of an encrypted repository from --key-file.`,
		Example: `  ckpt fetch sim --from agent://127.0.0.1:7411/sim
  ckpt --repo agent://127.0.0.1:7411/sim restore sim`,
		Args: func(c *cobra.Command, args []string) error {
			if len(args) != 1 || from == "" {
				return usageError("fetch: expected one checkpoint reference and --from agent://HOST:PORT/GROUP (see 'ckpt fetch --help')")
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			tok, err := backend.AgentTokenFromEnv(tokenFile)
			if err != nil {
				return usageError("%v", err)
			}
			src, err := backend.OpenAgent(ctx, from, tok)
			if err != nil {
				return err
			}
			var topo agent.Topology
			if err := src.GetJSON(ctx, "/topology", &topo); err != nil {
				return err
			}
			var target backend.Backend = src
			src.Origin = "fetch" // a copy: the agent does not flush it again
			if to != "" {
				if strings.HasPrefix(to, "agent://") {
					a, err := backend.OpenAgent(ctx, to, tok)
					if err != nil {
						return err
					}
					a.Origin = "fetch"
					target = a
				} else if target, err = levels.OpenDurable(ctx, to, true); err != nil {
					return err
				}
			}
			var key []byte
			kf := g.keyFile
			if kf == "" {
				kf = os.Getenv("CKPT_KEY_FILE")
			}
			if kf != "" {
				if key, err = repo.ReadKeyFile(kf); err != nil {
					return err
				}
			}
			res, err := levels.Recover(ctx, levels.RecoverOptions{
				Ref: args[0], Key: key, Target: target,
				Cluster: levels.Cluster{Self: topo.Node, Nodes: topo.Nodes, Group: src.Group(), Token: tok, Durable: topo.Durable},
			})
			if err != nil {
				if errors.Is(err, repo.ErrKeyRequired) || errors.Is(err, repo.ErrWrongKey) {
					return usageError("%v", err)
				}
				return err
			}
			m := res.Manifest
			if asJSON {
				return g.printJSON(fetchJSON{ID: m.ID(), Name: m.Name, Seq: m.Seq, Level: res.Level, Where: res.Where, To: target.Location(), Notes: res.Tried})
			}
			fmt.Fprintln(g.stdout, m.ID())
			fmt.Fprintf(g.stderr, "%s: served from %s (%s); complete in %s\n", m.Ref(), res.Level, res.Where, target.Location())
			return nil
		},
	}
	c.Flags().StringVar(&from, "from", "", "this node's agent and group, agent://HOST:PORT/GROUP")
	c.Flags().StringVar(&to, "to", "", "destination repository (default the --from agent's store)")
	c.Flags().StringVar(&tokenFile, "token-file", "", "file holding the group token (env CKPT_AGENT_TOKEN_FILE, CKPT_AGENT_TOKEN)")
	c.Flags().BoolVar(&asJSON, "json", false, "print the result as JSON")
	return c
}
