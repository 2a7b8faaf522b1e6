package ckpt

import (
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/ckpt/ckpt/internal/backend"
	"github.com/ckpt/ckpt/internal/repo"
)

// DefaultKeep is how many checkpoints of a job are kept unless WithKeep
// says otherwise: enough that a damaged newest one still leaves two to fall
// back to.
const DefaultKeep = 3

// DefaultInterval is Maybe's interval unless WithInterval says otherwise.
const DefaultInterval = time.Minute

// An Option configures Open.
type Option func(*options) error

type options struct {
	dir      string
	loc      string
	key      []byte
	repo     *repo.Repository
	be       backend.Backend
	async    bool
	keep     int
	codec    repo.Codec
	log      *slog.Logger
	interval time.Duration
	onCommit func(CommitInfo)
}

func defaultOptions() options {
	return options{async: true, keep: DefaultKeep, interval: DefaultInterval}
}

// WithDir stores checkpoints in the local repository in dir, creating it on
// first use. The default is the one the ckpt command uses ($CKPT_REPO, else
// $XDG_DATA_HOME/ckpt, else ~/.local/share/ckpt).
func WithDir(dir string) Option {
	return func(o *options) error {
		if dir == "" {
			return errors.New("WithDir: empty directory")
		}
		o.dir = dir
		return nil
	}
}

// WithLocation stores checkpoints in the repository at loc, creating it on
// first use (encrypted when a key is given): a directory (as WithDir), an
// S3 location "s3:http(s)://HOST/BUCKET/PREFIX", or a ckpt agent's
// "agent://HOST:PORT/GROUP" (docs/AGENT.md; the group token comes from
// $CKPT_AGENT_TOKEN_FILE or $CKPT_AGENT_TOKEN). On an agent, Checkpoint
// returns once the checkpoint is committed on the node (L1); the agent then
// moves it to the partner, erasure and durable levels in the background.
func WithLocation(loc string) Option {
	return func(o *options) error {
		if loc == "" {
			return errors.New("WithLocation: empty location")
		}
		o.loc = loc
		return nil
	}
}

// WithKeyFile opens (or creates) an encrypted repository with the key in
// the file at path.
func WithKeyFile(path string) Option {
	return func(o *options) error {
		k, err := repo.ReadKeyFile(path)
		if err != nil {
			return err
		}
		o.key = k
		return nil
	}
}

// WithKey opens (or creates) an encrypted repository with key material key
// (at least 16 bytes).
func WithKey(key []byte) Option {
	return func(o *options) error {
		if len(key) < repo.MinKeyLen {
			return fmt.Errorf("WithKey: %d bytes; at least %d are required", len(key), repo.MinKeyLen)
		}
		o.key = append([]byte(nil), key...)
		return nil
	}
}

// WithRepository uses a repository the caller has opened (and closes).
// It is for code inside this module, such as the ckpt command.
func WithRepository(r *repo.Repository) Option {
	return func(o *options) error {
		if r == nil {
			return errors.New("WithRepository: nil repository")
		}
		o.repo = r
		return nil
	}
}

// WithBackend stores checkpoints on be, initialising a repository there if
// it holds none. The caller closes be.
func WithBackend(be backend.Backend) Option {
	return func(o *options) error {
		if be == nil {
			return errors.New("WithBackend: nil backend")
		}
		o.be = be
		return nil
	}
}

// WithAsync chooses asynchronous checkpoints (true, the default: Checkpoint
// returns once the data is staged) or synchronous ones (false: Checkpoint
// returns once the checkpoint is committed, and needs no staging memory).
func WithAsync(async bool) Option {
	return func(o *options) error { o.async = async; return nil }
}

// WithKeep keeps the newest n checkpoints of the job and removes older
// ones after each commit (their unshared chunks are freed by 'ckpt gc').
// n = 0 keeps every checkpoint.
func WithKeep(n int) Option {
	return func(o *options) error {
		if n < 0 {
			return fmt.Errorf("WithKeep: %d is negative", n)
		}
		o.keep = n
		return nil
	}
}

// WithCodec sets the compression of new chunks: "auto" (the default: s2
// where it pays), "none", "s2" or "zstd".
func WithCodec(name string) Option {
	return func(o *options) error {
		c, err := repo.ParseCodec(name)
		if err != nil {
			return err
		}
		o.codec = c
		return nil
	}
}

// WithLogger sends the job's log records to l (default slog.Default()).
// Commits log at debug level, restores at info, damage and fallbacks at
// warn.
func WithLogger(l *slog.Logger) Option {
	return func(o *options) error { o.log = l; return nil }
}

// WithInterval sets how often Maybe checkpoints (default DefaultInterval).
func WithInterval(d time.Duration) Option {
	return func(o *options) error {
		if d < 0 {
			return fmt.Errorf("WithInterval: %v is negative", d)
		}
		o.interval = d
		return nil
	}
}

// WithCommitHook calls fn after each successful commit, from the goroutine
// that committed it (in async mode a background goroutine): fn must be quick
// and must not call the Job.
func WithCommitHook(fn func(CommitInfo)) Option {
	return func(o *options) error { o.onCommit = fn; return nil }
}
