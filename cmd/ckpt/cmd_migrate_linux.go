package main

import (
	"bufio"
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/ckpt/ckpt/internal/agent"
	"github.com/ckpt/ckpt/internal/backend"
	"github.com/ckpt/ckpt/internal/dump"
	"github.com/ckpt/ckpt/internal/migrate"
	"github.com/ckpt/ckpt/internal/procfs"
	"github.com/ckpt/ckpt/internal/progress"
	"github.com/ckpt/ckpt/internal/restore"
	"github.com/spf13/cobra"
	"golang.org/x/sys/unix"
)

// migrateOptions are ckpt migrate's flags.
type migrateOptions struct {
	to, group, tokenFile string
	maxRounds            int
	noPreCopy            bool
	timeout, stall       time.Duration
	asJSON               bool
	beforeKill           string
}

// migrateJSON is ckpt migrate's --json result.
type migrateJSON struct {
	PID         int                 `json:"pid"`
	To          string              `json:"to"`
	Node        string              `json:"node,omitempty"`
	Rounds      []migrate.RoundInfo `json:"rounds"`
	PreCopied   uint64              `json:"pre_copied"`
	Final       uint64              `json:"final"`
	Reused      uint64              `json:"reused"`
	ArmStopMS   float64             `json:"arm_stop_ms"`
	FrozenMS    float64             `json:"frozen_ms"`
	TotalMS     float64             `json:"total_ms"`
	RestoreMS   float64             `json:"restore_ms"`
	Prestaged   bool                `json:"prestaged"`
	PreCopyNote string              `json:"pre_copy_note,omitempty"`
}

// migrateAnswer is what the destination agent answers a restored migration.
type migrateAnswer struct {
	Node      string  `json:"node"`
	Root      int     `json:"root"`
	PIDs      []int   `json:"pids"`
	Rounds    int     `json:"rounds"`
	Staged    uint64  `json:"staged"`
	Image     uint64  `json:"image"`
	RestoreMS float64 `json:"restore_ms"`
	// Prestaged: the memory was built while it arrived, so the restore
	// wrote only what was not in place (PrestageNote: why not).
	Prestaged    bool     `json:"prestaged"`
	PrestageNote string   `json:"prestage_note,omitempty"`
	Warnings     []string `json:"warnings,omitempty"`
}

func newMigrateCommand(g *globalOptions) *cobra.Command {
	var o migrateOptions
	c := &cobra.Command{
		Use:   "migrate PID|NAME --to HOST:PORT --group GROUP",
		Short: "Move a running process tree to another node's agent",
		Long: `Move the process tree rooted at PID (or at the one process whose command
name is NAME) to the node whose agent listens at HOST:PORT, with the same
PIDs there (docs/MIGRATE.md).

Memory is copied while the tree runs, in rounds: the first sends every page,
each next one the pages written since (userfaultfd write-protect tracking),
until a round sends at most 8 MiB, stops shrinking, or --max-rounds. Then the
tree is frozen, the pages written since and the process image are sent, the
destination restores the tree, and only when it says the restore finished is
the tree here killed. If anything fails (the destination is unreachable,
refuses, dies, or the restore fails there) the tree here is resumed untouched
and nothing is left on the destination.

The destination's group and token authenticate the request like every agent
request: --group (or --to agent://HOST:PORT/GROUP) and the token from
--token-file, CKPT_AGENT_TOKEN_FILE or CKPT_AGENT_TOKEN. Files the tree has
open must exist at the same paths on the destination (a shared or copied
file system), as for 'ckpt restore'.`,
		Example: `  ckpt migrate 4242 --to 10.0.0.2:7411 --group sim
  ckpt migrate simulate --to agent://n2:7411/sim --json`,
		Args: exactArgs(1, "one PID or process name"),
		RunE: func(cmd *cobra.Command, args []string) error {
			if o.to == "" {
				return usageError("migrate: --to HOST:PORT is required")
			}
			pid, err := findProcess(args[0])
			if err != nil {
				return err
			}
			return runMigrate(cmd.Context(), g, pid, o)
		},
	}
	f := c.Flags()
	f.StringVar(&o.to, "to", "", "destination agent, HOST:PORT or agent://HOST:PORT/GROUP")
	f.StringVar(&o.group, "group", "", "the destination agent's group (with --to HOST:PORT)")
	f.StringVar(&o.tokenFile, "token-file", "", "file holding the group token (env CKPT_AGENT_TOKEN_FILE, CKPT_AGENT_TOKEN)")
	f.IntVar(&o.maxRounds, "max-rounds", 8, "most pre-copy rounds")
	f.BoolVar(&o.noPreCopy, "no-pre-copy", false, "send all memory while the tree is frozen")
	f.DurationVar(&o.timeout, "timeout", 2*time.Minute, "how long to wait, frozen, for the destination's restore")
	f.DurationVar(&o.stall, "stall-timeout", 30*time.Second, "give up when the destination takes no data for this long")
	f.BoolVar(&o.asJSON, "json", false, "print the result as one JSON document")
	f.StringVar(&o.beforeKill, "before-kill", "", "shell command run once the destination restored the tree and before the frozen source is killed (move a service address or route there)")
	return c
}

// findProcess resolves a PID, or a command name that exactly one process
// has.
func findProcess(arg string) (int, error) {
	if pid, err := strconv.Atoi(arg); err == nil {
		if pid <= 0 {
			return 0, usageError("%q is not a PID", arg)
		}
		return pid, nil
	}
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return 0, err
	}
	var found []int
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		if hasName(pid, arg) {
			found = append(found, pid)
		}
	}
	switch len(found) {
	case 0:
		return 0, withCode(exitNotFound, fmt.Errorf("no process is named %q", arg))
	case 1:
		return found[0], nil
	}
	return 0, fmt.Errorf("%d processes are named %q (%v): give a PID", len(found), arg, found)
}

// commLen is the kernel's limit on a process name (TASK_COMM_LEN less
// the NUL): longer names are cut in /proc/PID/comm.
const commLen = 15

// hasName reports whether process pid is named name: its comm, or for a
// name longer than comm holds, the comm it was cut to and the base name of
// its argv[0].
func hasName(pid int, name string) bool {
	b, err := procfs.Read(pid, "comm")
	if err != nil {
		return false
	}
	comm := strings.TrimSuffix(string(b), "\n")
	if len(name) <= commLen {
		return comm == name
	}
	if comm != name[:commLen] {
		return false
	}
	cmdline, err := procfs.Read(pid, "cmdline")
	if err != nil {
		return false
	}
	argv0, _, _ := strings.Cut(string(cmdline), "\x00")
	return filepath.Base(argv0) == name
}

// migrateTarget turns --to and --group into the agent's
// HOST:PORT/v1/groups/GROUP.
func migrateTarget(o migrateOptions) (string, error) {
	to, group := o.to, o.group
	if rest, ok := strings.CutPrefix(to, "agent://"); ok {
		host, grp, _ := strings.Cut(rest, "/")
		if grp != "" && group != "" && grp != group {
			return "", usageError("--to names group %q and --group %q", grp, group)
		}
		if grp != "" {
			group = grp
		}
		to = host
	}
	if _, _, err := net.SplitHostPort(to); err != nil {
		return "", usageError("--to %q: want HOST:PORT or agent://HOST:PORT/GROUP", o.to)
	}
	if group == "" {
		return "", usageError("--group is required (or --to agent://HOST:PORT/GROUP)")
	}
	return to + "/v1/groups/" + url.PathEscape(group), nil
}

func runMigrate(ctx context.Context, g *globalOptions, pid int, o migrateOptions) error {
	base, err := migrateTarget(o)
	if err != nil {
		return err
	}
	tok, err := backend.AgentTokenFromEnv(o.tokenFile)
	if err != nil {
		return usageError("%v", err)
	}
	// Agents with TLS (docs/AGENT.md) are reached as every client reaches
	// them: CKPT_AGENT_CA, CKPT_AGENT_CERT, CKPT_AGENT_KEY.
	scheme, hc, err := backend.AgentHTTP()
	if err != nil {
		return usageError("%v", err)
	}
	var tlsCfg *tls.Config
	if t, ok := hc.Transport.(*http.Transport); ok && t.TLSClientConfig != nil {
		tlsCfg = t.TLSClientConfig.Clone()
	}
	base = scheme + "://" + base
	dialer := &net.Dialer{Timeout: 10 * time.Second}
	client := &http.Client{Transport: &http.Transport{
		TLSClientConfig: tlsCfg,
		// A destination that stops taking the stream (stopped, cut off)
		// fails the migration after --stall-timeout instead of holding
		// the source, frozen in the final pass, for ever.
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			c, err := dialer.DialContext(ctx, network, addr)
			if err != nil {
				return nil, err
			}
			return &stallConn{Conn: c, stall: o.stall}, nil
		},
		ResponseHeaderTimeout: 0, // the answer comes after the restore
	}}
	// Preflight: reachable, group known, token right, before the process
	// is touched.
	pctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	req, _ := http.NewRequestWithContext(pctx, http.MethodGet, base, nil)
	req.Header.Set("Authorization", "Bearer "+tok)
	resp, err := client.Do(req)
	if err != nil {
		cancel()
		if strings.Contains(err.Error(), "server gave HTTP response to HTTPS client") {
			err = fmt.Errorf("%w (this agent does not use TLS: unset %s)", err, backend.AgentCAEnv)
		}
		return fmt.Errorf("destination %s unreachable: %w (nothing was done; the process runs on)", o.to, err)
	}
	var info struct{ Node string }
	err = agentAnswer(resp, &info) // the body is read under pctx too
	cancel()
	if err != nil {
		return fmt.Errorf("destination %s refused: %w (nothing was done; the process runs on)", o.to, err)
	}
	start := time.Now()
	pr, pw := io.Pipe()
	// The request ends when the stream does; it is cancelled when the
	// destination's answer does not come in time after that.
	rctx, rcancel := context.WithCancel(ctx)
	defer rcancel()
	req, _ = http.NewRequestWithContext(rctx, http.MethodPost, base+"/migrate", pr)
	req.Header.Set("Authorization", "Bearer "+tok)
	req.Header.Set("Content-Type", "application/x-ckpt-migration")
	var idb [8]byte
	if _, err := rand.Read(idb[:]); err != nil {
		return err
	}
	id := hex.EncodeToString(idb[:])
	req.Header.Set(agent.MigrationHeader, id)
	type answer struct {
		a    migrateAnswer
		err  error
		lost bool // no answer from the agent (the connection failed or timed out), not a refusal
	}
	ansc := make(chan answer, 1)
	go func() {
		var an answer
		resp, err := client.Do(req)
		an.lost = err != nil
		if err == nil {
			err = agentAnswer(resp, &an.a)
			var he *agentHTTPError
			an.lost = err != nil && !errors.As(err, &he)
		}
		if err != nil {
			an.err = err
			// Stop the sender at once with the destination's reason.
			pr.CloseWithError(fmt.Errorf("the destination stopped the transfer: %w", err))
		}
		ansc <- an
	}()
	logf := func(string, ...any) {}
	if !o.asJSON {
		logf = func(format string, a ...any) { fmt.Fprintf(g.stderr, "ckpt: migrate: "+format+"\n", a...) }
	}
	sent, err := migrate.Send(ctx, pid, pw, migrate.SendOptions{MaxRounds: o.maxRounds, NoPreCopy: o.noPreCopy, Log: logf})
	if err != nil {
		pw.CloseWithError(err)
		// Prefer the destination's own words when it is what failed.
		select {
		case an := <-ansc:
			if an.err != nil && !errors.Is(err, dump.ErrNotFound) {
				return fmt.Errorf("migration to %s failed: %w; the process runs on", o.to, an.err)
			}
		case <-time.After(2 * time.Second):
		}
		return procExitCode(fmt.Errorf("migration to %s failed: %w", o.to, err))
	}
	pw.Close()
	var an answer
	select {
	case an = <-ansc:
	case <-time.After(o.timeout):
		rcancel()
		an = answer{err: fmt.Errorf("no answer within --timeout %v after the stream ended", o.timeout), lost: true}
	}
	note := ""
	if an.err != nil && an.lost {
		// The whole stream went out but the answer did not come back: ask
		// the destination what became of the migration rather than guess.
		st, serr := migrationOutcome(ctx, client, base, tok, id)
		switch {
		case serr != nil:
			an.err = fmt.Errorf("%w; its outcome could not be asked either (%v): the destination may hold a restored copy, check node %s", an.err, serr, info.Node)
		case st.State == "restored":
			b, _ := json.Marshal(st.Answer)
			if jerr := json.Unmarshal(b, &an.a); jerr == nil {
				note = fmt.Sprintf("the answer was lost (%v); the destination's status says restored", an.err)
				an.err = nil
			}
		case st.State == "failed":
			an.err = fmt.Errorf("%w; the destination says: %s", an.err, st.Error)
		default:
			an.err = fmt.Errorf("%w; the destination says the migration is %s", an.err, st.State)
		}
	}
	if an.err != nil {
		if rerr := sent.Abort(); rerr != nil {
			return errors.Join(fmt.Errorf("migration to %s failed: %w", o.to, an.err), fmt.Errorf("resuming the process: %w", rerr))
		}
		return fmt.Errorf("migration to %s failed: %w; the process runs on here", o.to, an.err)
	}
	if o.beforeKill != "" {
		// The process runs there; here it is frozen, its TCP sockets in
		// repair mode (they neither answer nor reset): the moment to move
		// addresses and routes, before the kill closes them.
		if err := runHook(ctx, g, o.beforeKill, pid, an.a); err != nil {
			g.warnf("--before-kill: %v (the process runs on %s; killing it here anyway)", err, an.a.Node)
		}
	}
	if err := sent.Commit(); err != nil {
		return fmt.Errorf("restored on %s (PID %d), but killing the process here: %w", an.a.Node, an.a.Root, err)
	}
	total := time.Since(start)
	st := sent.Stats
	res := migrateJSON{PID: pid, To: o.to, Node: an.a.Node, Rounds: st.Rounds, PreCopied: st.PreCopied, Final: st.Final, Reused: st.Reused,
		ArmStopMS: ms(st.ArmStop), FrozenMS: ms(sent.Frozen()), TotalMS: ms(total), RestoreMS: an.a.RestoreMS, Prestaged: an.a.Prestaged,
		PreCopyNote: st.PreCopyNote}
	if res.Rounds == nil {
		res.Rounds = []migrate.RoundInfo{}
	}
	if note != "" {
		g.warnf("%s", note)
	}
	if o.asJSON {
		return g.printJSON(res)
	}
	fmt.Fprintln(g.stdout, an.a.Root)
	fmt.Fprintf(g.stderr, "migrated process %d to %s (node %s) in %.0f ms: %d pre-copy round(s), %s sent while running, %s while frozen; frozen %.1f ms (restore there %.1f ms)\n",
		pid, o.to, an.a.Node, res.TotalMS, len(st.Rounds), progress.Bytes(int64(st.PreCopied)), progress.Bytes(int64(st.Final)), res.FrozenMS, res.RestoreMS)
	if st.PreCopyNote != "" {
		g.warnf("no pre-copy: %s", st.PreCopyNote)
	}
	return nil
}

// runHook runs cmd with /bin/sh, its output on stderr, with the migration
// in its environment; it is given 30 s.
func runHook(ctx context.Context, g *globalOptions, cmd string, pid int, a migrateAnswer) error {
	hctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	c := exec.CommandContext(hctx, "/bin/sh", "-c", cmd)
	c.Env = append(os.Environ(), "CKPT_MIGRATE_PID="+strconv.Itoa(pid), "CKPT_MIGRATE_NODE="+a.Node,
		"CKPT_MIGRATE_ROOT="+strconv.Itoa(a.Root))
	c.Stdout, c.Stderr = g.stderr, g.stderr
	return c.Run()
}

// stallConn fails a write that makes no progress for stall.
type stallConn struct {
	net.Conn
	stall time.Duration
}

func (c *stallConn) Write(p []byte) (int, error) {
	if err := c.SetWriteDeadline(time.Now().Add(c.stall)); err != nil {
		return 0, err
	}
	n, err := c.Conn.Write(p)
	if errors.Is(err, os.ErrDeadlineExceeded) {
		err = fmt.Errorf("the destination took nothing for %v (--stall-timeout): %w", c.stall, err)
	}
	return n, err
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// agentHTTPError is an answer of the agent other than 200: a refusal.
type agentHTTPError struct {
	status int
	msg    string
}

func (e *agentHTTPError) Error() string { return e.msg }

// agentAnswer decodes a 200 answer into v, or turns the agent's JSON error
// into an *agentHTTPError.
func agentAnswer(resp *http.Response, v any) error {
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return fmt.Errorf("reading the answer: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		var e struct{ Error, Code string }
		if json.Unmarshal(b, &e) == nil && e.Error != "" {
			return &agentHTTPError{resp.StatusCode, fmt.Sprintf("%s (%s)", e.Error, e.Code)}
		}
		msg := strings.TrimSpace(string(b))
		if resp.StatusCode == http.StatusBadRequest && strings.Contains(msg, "HTTPS server") {
			msg += " (this agent uses TLS: set " + backend.AgentCAEnv + ", " + backend.AgentCertEnv + " and " + backend.AgentKeyEnv + ")"
		}
		return &agentHTTPError{resp.StatusCode, fmt.Sprintf("HTTP %s: %s", resp.Status, msg)}
	}
	return json.Unmarshal(b, v)
}

// migrationOutcome asks the destination agent what became of migration
// id, for up to 15 s while it is unreachable or still receiving.
func migrationOutcome(ctx context.Context, client *http.Client, base, tok, id string) (*agent.MigrationStatus, error) {
	deadline := time.Now().Add(15 * time.Second)
	var last error
	for {
		rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		req, _ := http.NewRequestWithContext(rctx, http.MethodGet, base+"/migrations/"+id, nil)
		req.Header.Set("Authorization", "Bearer "+tok)
		var st agent.MigrationStatus
		resp, err := client.Do(req)
		if err == nil {
			err = agentAnswer(resp, &st)
		}
		cancel()
		var he *agentHTTPError
		switch {
		case err == nil && st.State != "receiving":
			return &st, nil
		case errors.As(err, &he) && he.status == http.StatusNotFound:
			// Never received: nothing was restored there.
			return &agent.MigrationStatus{State: "failed", Error: he.msg}, nil
		case errors.As(err, &he):
			return nil, err
		case err != nil:
			last = err
		default:
			last = fmt.Errorf("still receiving")
		}
		if time.Now().After(deadline) {
			return nil, last
		}
		// Retry: the destination may be busy finishing the restore or
		// briefly unreachable.
		time.Sleep(200 * time.Millisecond)
	}
}

// migrationReceiver restores migrations sent to this node's agent. The
// restored tree is the agent's child (so the agent reaps it); its stdin is
// /dev/null and stdout/stderr that led outside the tree are the agent's.
func migrationReceiver(g *globalOptions, node string, log *slog.Logger) agent.MigrationReceiver {
	return func(ctx context.Context, stream io.Reader) (any, error) {
		null, err := os.Open(os.DevNull)
		if err != nil {
			return nil, err
		}
		defer null.Close()
		opts := restore.Options{Stdin: null}
		if f, ok := g.stderr.(*os.File); ok {
			opts.Stdout, opts.Stderr = f, f
		}
		res, st, err := migrate.Receive(ctx, stream, opts)
		if err != nil {
			return nil, err
		}
		log.Info("migrated process restored", "root", res.Root, "pids", res.PIDs, "rounds", st.Rounds, "restore", st.Restore)
		go func() {
			ws, err := res.Wait()
			log.Info("migrated process ended", "root", res.Root, "status", fmt.Sprint(ws), "error", err)
		}()
		return migrateAnswer{Node: node, Root: res.Root, PIDs: res.PIDs, Rounds: st.Rounds, Staged: st.Staged, Image: st.Image,
			RestoreMS: ms(st.Restore), Prestaged: st.Prestaged, PrestageNote: st.PrestageNote, Warnings: res.Warnings}, nil
	}
}

// dumpStream is 'ckpt dump --stream': the migration stream on stdout; the
// restore's confirmation (the root PID it prints) read from stdin.
func dumpStream(ctx context.Context, g *globalOptions, pid int, noPreCopy, noAck bool, timeout, stall time.Duration) error {
	if !noAck && progress.IsTerminal(os.Stdin) {
		return usageError("dump --stream waits for the restore's confirmation on stdin, which is a terminal: connect it to 'ckpt restore --stream''s stdout (e.g. with socat), or pass --no-ack to leave the process running")
	}
	if progress.IsTerminal(os.Stdout) {
		return usageError("dump --stream writes a binary stream to stdout, which is a terminal: pipe it")
	}
	f, ok := g.stdout.(*os.File)
	if !ok {
		f = os.Stdout
	}
	out, done, err := stallWriter(f, stall)
	if err != nil {
		return err
	}
	defer done()
	sent, err := migrate.Send(ctx, pid, out, migrate.SendOptions{NoPreCopy: noPreCopy})
	if err != nil {
		return procExitCode(err)
	}
	st := sent.Stats
	report := func(what string) {
		fmt.Fprintf(g.stderr, "streamed process %d: %d pre-copy round(s), %s sent while running, %s while frozen; %s\n",
			pid, len(st.Rounds), progress.Bytes(int64(st.PreCopied)), progress.Bytes(int64(st.Final)), what)
	}
	if noAck {
		if err := sent.Abort(); err != nil {
			return fmt.Errorf("resuming the process: %w", err)
		}
		report(fmt.Sprintf("frozen %.1f ms; left running (--no-ack)", ms(sent.Frozen())))
		return nil
	}
	line := make(chan string, 1)
	go func() {
		s, _ := bufio.NewReader(os.Stdin).ReadString('\n')
		line <- strings.TrimSpace(s)
	}()
	var got string
	select {
	case got = <-line:
	case <-time.After(timeout):
		got = "(nothing within " + timeout.String() + ")"
	}
	if n, err := strconv.Atoi(got); err == nil && n == sent.Tree.Root {
		if err := sent.Commit(); err != nil {
			return fmt.Errorf("the restore confirmed PID %d, but killing the process here: %w", n, err)
		}
		report(fmt.Sprintf("frozen %.1f ms; restored as PID %d there, killed here", ms(sent.Frozen()), n))
		return nil
	}
	if err := sent.Abort(); err != nil {
		return fmt.Errorf("resuming the process: %w", err)
	}
	if got == "" {
		got = "end of input"
	}
	return fmt.Errorf("the restore did not confirm (stdin gave %q, want the root PID %d): the process runs on here", got, sent.Tree.Root)
}

// stallWriter writes to f (a pipe or socket) with a deadline of stall per
// write, so a reader that stops taking the stream fails the dump (and the
// source resumes) instead of holding the source frozen. The deadline
// needs the descriptor in non-blocking mode: a duplicate is switched for
// the dump and switched back by done. A file that cannot wait (a regular
// file) is written as it is.
func stallWriter(f *os.File, stall time.Duration) (w io.Writer, done func(), err error) {
	sc, err := f.SyscallConn()
	if err != nil {
		return f, func() {}, nil
	}
	nfd := -1
	var derr error
	if cerr := sc.Control(func(fd uintptr) { nfd, derr = unix.FcntlInt(fd, unix.F_DUPFD_CLOEXEC, 3) }); cerr != nil || derr != nil {
		return f, func() {}, nil
	}
	if err := unix.SetNonblock(nfd, true); err != nil {
		unix.Close(nfd)
		return f, func() {}, nil
	}
	nf := os.NewFile(uintptr(nfd), f.Name())
	if nf.SetWriteDeadline(time.Time{}) != nil {
		// Not pollable: back to blocking, written as it is.
		unix.SetNonblock(nfd, false)
		nf.Close()
		return f, func() {}, nil
	}
	return &deadlineWriter{f: nf, stall: stall}, func() {
		if rc, err := nf.SyscallConn(); err == nil {
			rc.Control(func(fd uintptr) { unix.SetNonblock(int(fd), false) })
		}
		nf.Close()
	}, nil
}

type deadlineWriter struct {
	f     *os.File
	stall time.Duration
}

func (d *deadlineWriter) Write(p []byte) (int, error) {
	if err := d.f.SetWriteDeadline(time.Now().Add(d.stall)); err != nil {
		return 0, err
	}
	n, err := d.f.Write(p)
	if errors.Is(err, os.ErrDeadlineExceeded) {
		err = fmt.Errorf("the reader took nothing for %v (--stall-timeout): %w", d.stall, err)
	}
	return n, err
}

// restoreStream is 'ckpt restore --stream': the stream from stdin, the
// root PID on stdout once restored (the confirmation 'ckpt dump --stream'
// waits for).
func restoreStream(ctx context.Context, g *globalOptions, opts restore.Options) (*restore.Result, error) {
	if progress.IsTerminal(os.Stdin) {
		return nil, usageError("restore --stream reads the stream from stdin, which is a terminal: pipe 'ckpt dump --stream' into it")
	}
	if opts.Stdin == nil {
		// stdin is the stream: the tree does not get it.
		null, err := os.Open(os.DevNull)
		if err != nil {
			return nil, err
		}
		opts.Stdin = null
	}
	res, _, err := migrate.Receive(ctx, os.Stdin, opts)
	if err != nil {
		return nil, err
	}
	fmt.Fprintln(g.stdout, res.Root)
	if f, ok := g.stdout.(*os.File); ok {
		_ = f.Sync()
	}
	return res, nil
}
