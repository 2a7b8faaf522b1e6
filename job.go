package ckpt

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/ckpt/ckpt/internal/repo"
)

// Sentinel errors. Match them with errors.Is.
var (
	// ErrNoCheckpoint: Restore found no checkpoint of the job's name.
	ErrNoCheckpoint = errors.New("no checkpoint to restore")
	// ErrMismatch: a checkpoint does not fit a protected value (another
	// type, another length of a fixed-length slice, a variable missing).
	ErrMismatch = errors.New("checkpoint does not match the protected values")
	// ErrClosed: the Job was closed.
	ErrClosed = errors.New("checkpoint job is closed")
	// ErrCorrupt is wrapped by errors about damaged checkpoint data (a
	// *repo.CorruptError names the checkpoint, object and chunk).
	ErrCorrupt = repo.ErrCorrupt
)

// Job checkpoints and restores the values protected under one name. Its
// methods are safe for concurrent use, but a checkpoint sees protected
// values as they are while it copies them: call Checkpoint where the
// program's state is consistent (between steps), not while other
// goroutines modify it.
type Job struct {
	name string
	opts options
	repo *repo.Repository
	log  *slog.Logger
	// closeRepo closes what Open opened (nil when the caller owns it).
	closeRepo func() error

	mu        sync.Mutex // serialises the API
	vars      []*variable
	closed    bool
	lastStart time.Time // of the last checkpoint, for Maybe

	// inflight is closed when the background commit ends; nil when none
	// runs. The fields below it are written by that commit and read by the
	// API only after waiting for it.
	inflight chan struct{}
	bgErr    error          // the last background commit's error, not yet returned
	parent   *repo.Manifest // the last checkpoint committed or restored
	rewrite  bool           // damage was seen: the next commit stores every chunk again
	bg       context.Context
	cancel   context.CancelFunc

	lastMu sync.Mutex
	last   CommitInfo
}

// CommitInfo describes a committed checkpoint.
type CommitInfo struct {
	Seq  uint64    // sequence number among the job's checkpoints
	ID   string    // checkpoint ID (64 hex digits)
	Time time.Time // commit time
	// Blocked is how long Checkpoint held the caller (staging copy, and in
	// synchronous mode the whole commit); Duration is the commit itself.
	Blocked, Duration time.Duration
	Bytes             int64 // protected bytes written
	ReusedBytes       int64 // unchanged since the previous checkpoint, not stored again
	NewBytes          int64 // plain bytes of new chunks
	StoredBytes       int64 // their stored size (after compression)
	Removed           int   // older checkpoints removed by retention
}

// Open starts a checkpoint job named name (a checkpoint name: 1 to 128
// characters, no '@', '/' or whitespace). Without WithRepository or
// WithBackend it opens the local repository of WithDir (default: the ckpt
// command's default repository), creating it on first use.
func Open(name string, opts ...Option) (*Job, error) {
	if err := repo.ValidName(name); err != nil {
		return nil, fmt.Errorf("ckpt.Open: %w", err)
	}
	o := defaultOptions()
	for _, opt := range opts {
		if err := opt(&o); err != nil {
			return nil, fmt.Errorf("ckpt.Open(%q): %w", name, err)
		}
	}
	if o.log == nil {
		o.log = slog.Default()
	}
	j := &Job{name: name, opts: o, log: o.log.With("job", name)}
	ctx := context.Background()
	var err error
	switch {
	case o.repo != nil:
		j.repo = o.repo
	case o.be != nil:
		j.repo, err = repo.Open(ctx, o.be, o.key)
		if errors.Is(err, repo.ErrNotRepository) {
			j.repo, err = repo.Init(ctx, o.be, repo.InitOptions{Key: o.key})
		}
	case o.loc != "":
		j.repo, err = openLocation(ctx, o.loc, o.key)
		if err == nil {
			j.closeRepo = j.repo.Close
		}
	default:
		dir := o.dir
		if dir == "" {
			dir = repo.DefaultDir()
		}
		j.repo, err = openDir(ctx, dir, o.key)
		if err == nil {
			j.closeRepo = j.repo.Close
		}
	}
	if err != nil {
		return nil, fmt.Errorf("ckpt.Open(%q): %w", name, err)
	}
	j.bg, j.cancel = context.WithCancel(context.Background())
	j.lastStart = time.Now()
	return j, nil
}

// openDir opens the local repository in dir, creating it (encrypted when a
// key is given) when dir is missing or empty.
func openDir(ctx context.Context, dir string, key []byte) (*repo.Repository, error) {
	r, err := repo.OpenDir(ctx, dir, key, true)
	if err != nil && key != nil && errors.Is(err, repo.ErrNotRepository) {
		// OpenDir creates plain repositories only; InitDir refuses a
		// directory that holds anything.
		if r, ierr := repo.InitDir(ctx, dir, repo.InitOptions{Key: key}); ierr == nil {
			return r, nil
		}
	}
	return r, err
}

// openLocation opens the repository at loc (a directory, s3: or agent://
// location), creating it when there is none (encrypted when a key is given).
func openLocation(ctx context.Context, loc string, key []byte) (*repo.Repository, error) {
	if !strings.HasPrefix(loc, "s3:") && !strings.HasPrefix(loc, "agent://") {
		return openDir(ctx, loc, key)
	}
	r, err := repo.OpenLocation(ctx, loc, key, true)
	if err != nil && key != nil && errors.Is(err, repo.ErrNotRepository) {
		return repo.InitLocation(ctx, loc, repo.InitOptions{Key: key})
	}
	return r, err
}

// Name is the job's checkpoint name.
func (j *Job) Name() string { return j.name }

// Repository is the repository the job writes to.
func (j *Job) Repository() *repo.Repository { return j.repo }

// Protect registers v under name, to be saved by every Checkpoint and
// filled by Restore. v is a slice of fixed-size numbers ([]float64, []byte,
// …: fixed length, restored in place), a pointer to such a slice (Restore
// may resize it), a pointer to a fixed-size value (*int64, a *struct of
// fixed-size fields), a value implementing both encoding.BinaryMarshaler and
// encoding.BinaryUnmarshaler, or any other pointer gob can encode. Protecting
// a name again replaces the earlier value (after the running commit).
func (j *Job) Protect(name string, v any) error {
	nv, err := newVariable(name, v)
	if err != nil {
		return err
	}
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.closed {
		return ErrClosed
	}
	j.waitInflight(context.Background())
	defer func() {
		// Async checkpoints copy into a staging buffer: get a large one
		// ready while the program computes towards its first checkpoint.
		if mem, ok := nv.live(); ok && j.opts.async && len(mem) >= parallelMin && cap(nv.staging) < len(mem) {
			nv.prepare(len(mem))
		}
	}()
	for i, old := range j.vars {
		if old.name == name {
			old.waitPrepared()
			nv.staging = old.staging
			j.vars[i] = nv
			return nil
		}
	}
	j.vars = append(j.vars, nv)
	return nil
}

// Unprotect removes the value registered under name; later checkpoints do
// not contain it. It reports whether there was one.
func (j *Job) Unprotect(name string) bool {
	j.mu.Lock()
	defer j.mu.Unlock()
	j.waitInflight(context.Background())
	for i, v := range j.vars {
		if v.name == name {
			v.waitPrepared() // let the buffer go with the variable
			j.vars = append(j.vars[:i], j.vars[i+1:]...)
			return true
		}
	}
	return false
}

// LastCommit describes the newest checkpoint this Job committed; ok is
// false before the first commit.
func (j *Job) LastCommit() (info CommitInfo, ok bool) {
	j.lastMu.Lock()
	defer j.lastMu.Unlock()
	return j.last, j.last.ID != ""
}

// waitInflight waits for the background commit, if any. It reports false
// when ctx ended first. The commit's error stays in bgErr.
func (j *Job) waitInflight(ctx context.Context) bool {
	if j.inflight == nil {
		return true
	}
	select {
	case <-j.inflight:
		j.inflight = nil
		return true
	case <-ctx.Done():
		return false
	}
}

// takeErr returns and forgets the background commit's error.
func (j *Job) takeErr() error {
	err := j.bgErr
	j.bgErr = nil
	return err
}

// Wait waits until the checkpoint being committed in the background (if
// any) is committed, and returns its error.
func (j *Job) Wait() error {
	j.mu.Lock()
	defer j.mu.Unlock()
	j.waitInflight(context.Background())
	return j.takeErr()
}

// Close waits for the background commit, returns its error, and closes the
// repository if Open opened it. The protected values are not touched.
func (j *Job) Close() error {
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.closed {
		return ErrClosed
	}
	j.waitInflight(context.Background())
	j.closed = true
	j.cancel()
	err := j.takeErr()
	if j.closeRepo != nil {
		if cerr := j.closeRepo(); err == nil {
			err = cerr
		}
	}
	return err
}
