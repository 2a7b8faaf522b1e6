package backend

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"path/filepath"
	"strings"
	"sync"

	"github.com/ckpt/ckpt/internal/vfs"
)

// DirMode and FileMode are the permissions of everything a local repository
// creates: checkpoints hold a program's secrets.
const (
	DirMode  fs.FileMode = 0o700
	FileMode fs.FileMode = 0o600
)

// Local stores blobs as files under a directory:
//
//	config
//	chunks/ab/abcdef…   (256 fan-out directories, made by Create)
//	manifests/<id>
//	levels/<id>.<level>
//	tmp/                (blobs other than chunks being written; renamed into place at Sync)
//	locks/              (advisory lock files)
//
// A Save writes a file in tmp/ (a chunk: chunks/ab/.tmp-…); Sync fsyncs
// those files, renames them into place and fsyncs every directory that
// changed, so a blob is visible only once its bytes are durable. Chunks
// are fsynced and renamed in the background as soon as they are written
// (a dump's chunks become durable while it reads the next ones, and Sync
// waits only for the last); a chunk nothing refers to yet is harmless,
// unlike a manifest, so the other kinds wait for Sync.
type Local struct {
	fs   vfs.FS
	root string

	mu      sync.Mutex
	pending []pendingFile
	dirty   map[string]bool // directories whose entries changed since the last Sync

	// Chunks being made durable in the background (under mu): their count
	// (done is signalled when it drops to zero), the errors by sync group
	// (WithSyncGroup), and the temporary files of those that failed.
	inflight int
	done     *sync.Cond
	bgErrs   map[any][]error
	bgFailed []string
	bgSem    chan struct{} // fsyncs at once
	bgQueue  chan struct{} // chunks written and not yet durable (open files)

	locks locker
}

type pendingFile struct {
	f     vfs.File
	tmp   string
	final string
}

// layout is the directory skeleton of a local backend.
func layout() []string {
	return append([]string{"manifests", "levels", "tmp", "locks", "chunks"}, chunkDirs("")...)
}

// chunkDirs lists the 256 fan-out directories of chunks under root.
func chunkDirs(root string) []string {
	dirs := make([]string, 256)
	for i := range dirs {
		dirs[i] = filepath.Join(root, "chunks", fmt.Sprintf("%02x", i))
	}
	return dirs
}

// CreateLocal makes the directory skeleton under root (which may exist, but
// must not hold a config blob: the repository package checks that) and
// returns the backend.
func CreateLocal(fsys vfs.FS, root string) (*Local, error) {
	if err := fsys.MkdirAll(root, DirMode); err != nil {
		return nil, fmt.Errorf("creating %s: %w", root, err)
	}
	for _, d := range layout() {
		if err := fsys.MkdirAll(filepath.Join(root, d), DirMode); err != nil {
			return nil, fmt.Errorf("creating %s: %w", filepath.Join(root, d), err)
		}
	}
	// Make the skeleton durable, leaves first (in parallel: one at a time,
	// 261 directory fsyncs took 60-80 ms on a VM disk).
	var dirs []string
	for _, d := range layout() {
		if d != "chunks" {
			dirs = append(dirs, filepath.Join(root, d))
		}
	}
	if err := syncDirs(fsys, dirs); err != nil {
		return nil, err
	}
	if err := fsys.SyncDir(filepath.Join(root, "chunks")); err != nil {
		return nil, err
	}
	if err := fsys.SyncDir(root); err != nil {
		return nil, err
	}
	if err := fsys.SyncDir(filepath.Dir(root)); err != nil {
		return nil, err
	}
	return OpenLocal(fsys, root)
}

// OpenLocal opens an existing local backend. A missing directory gives an
// error wrapping ErrNotExist.
func OpenLocal(fsys vfs.FS, root string) (*Local, error) {
	st, err := fsys.Stat(root)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("%s: %w", root, ErrNotExist)
		}
		return nil, err
	}
	if !st.IsDir() {
		return nil, fmt.Errorf("%s is not a directory", root)
	}
	l := &Local{fs: fsys, root: root, dirty: map[string]bool{}, bgErrs: map[any][]error{},
		bgSem: make(chan struct{}, bgSyncParallelism), bgQueue: make(chan struct{}, bgQueueLen)}
	l.done = sync.NewCond(&l.mu)
	if fsys == vfs.OS {
		l.locks = flockLocker{dir: filepath.Join(root, "locks")}
	} else {
		l.locks = newMemLocker()
	}
	return l, nil
}

func (l *Local) Location() string { return "local:" + l.root }

// Root is the directory of the backend.
func (l *Local) Root() string { return l.root }

func (l *Local) path(h Handle) (string, error) {
	if err := checkName(h); err != nil {
		return "", err
	}
	switch h.Kind {
	case Config:
		return filepath.Join(l.root, "config"), nil
	case Chunk:
		return filepath.Join(l.root, "chunks", h.Name[:2], h.Name), nil
	case Manifest, Level:
		return filepath.Join(l.root, string(h.Kind), h.Name), nil
	}
	return "", fmt.Errorf("unknown blob kind %q", h.Kind)
}

// checkName rejects names that could escape the directory.
func checkName(h Handle) error {
	if h.Kind == Config {
		if h.Name != "" {
			return fmt.Errorf("config blob takes no name, got %q", h.Name)
		}
		return nil
	}
	if h.Name == "" || strings.ContainsAny(h.Name, "/\\\x00") || h.Name[0] == '.' {
		return fmt.Errorf("invalid blob name %q", h.Name)
	}
	if h.Kind == Chunk && len(h.Name) < 3 {
		return fmt.Errorf("invalid chunk name %q", h.Name)
	}
	return nil
}

func (l *Local) Save(ctx context.Context, h Handle, data []byte) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	final, err := l.path(h)
	if err != nil {
		return err
	}
	var rnd [12]byte
	if _, err := rand.Read(rnd[:]); err != nil {
		return err
	}
	tmp := filepath.Join(l.root, "tmp", hex.EncodeToString(rnd[:]))
	if h.Kind == Chunk {
		tmp = filepath.Join(filepath.Dir(final), tmpPrefix+hex.EncodeToString(rnd[:]))
	}
	f, err := l.fs.Create(tmp, FileMode)
	if err != nil {
		return fmt.Errorf("saving %s: %w", h, err)
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		l.fs.Remove(tmp)
		return fmt.Errorf("saving %s: %w", h, err)
	}
	startWriteback(f)
	p := pendingFile{f: f, tmp: tmp, final: final}
	if h.Kind != Chunk {
		l.mu.Lock()
		l.pending = append(l.pending, p)
		l.mu.Unlock()
		return nil
	}
	l.bgQueue <- struct{}{} // back-pressure: a bounded number of open files
	l.mu.Lock()
	l.inflight++
	l.mu.Unlock()
	go l.syncInBackground(p, syncGroup(ctx))
	return nil
}

// bgQueueLen bounds the chunks written and not yet durable, each an open
// file: Save waits beyond it.
const bgQueueLen = 256

type syncGroupKey struct{}

// WithSyncGroup tags ctx with g (comparable, unique to one writer: a
// pointer): a Save with the tagged context belongs to that group, and a
// Sync with it reports the failures of that group's Saves made durable in
// the background, not those of other writers sharing the backend.
func WithSyncGroup(ctx context.Context, g any) context.Context {
	return context.WithValue(ctx, syncGroupKey{}, g)
}

func syncGroup(ctx context.Context) any { return ctx.Value(syncGroupKey{}) }

// tmpPrefix starts the name of a chunk being written, in its own fan-out
// directory: renamed within one directory, chunks written by several
// workers do not all contend for tmp/ (a rename between two directories
// locks both), and ext4 allocates their inodes in the groups of 256
// directories instead of one.
const tmpPrefix = ".tmp-"

// bgSyncParallelism bounds the chunks fsynced at once in the background:
// concurrent fsyncs share the filesystem's journal commits.
const bgSyncParallelism = 16

// syncInBackground makes one chunk durable and renames it into place.
func (l *Local) syncInBackground(p pendingFile, group any) {
	defer func() { <-l.bgQueue }()
	l.bgSem <- struct{}{}
	err := p.f.Sync()
	if cerr := p.f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = l.fs.Rename(p.tmp, p.final)
	}
	<-l.bgSem
	l.mu.Lock()
	defer l.mu.Unlock()
	if err != nil {
		l.bgErrs[group] = append(l.bgErrs[group], err)
		l.bgFailed = append(l.bgFailed, p.tmp)
	} else {
		l.dirty[filepath.Dir(p.final)] = true
	}
	if l.inflight--; l.inflight == 0 {
		l.done.Broadcast()
	}
}

// waitBackground waits for the chunks being made durable and returns (and
// forgets) the errors of group's, removing the files that failed.
func (l *Local) waitBackground(group any) error {
	l.mu.Lock()
	for l.inflight > 0 {
		l.done.Wait()
	}
	errs, failed := l.bgErrs[group], l.bgFailed
	delete(l.bgErrs, group)
	l.bgFailed = nil
	l.mu.Unlock()
	for _, tmp := range failed {
		l.fs.Remove(tmp)
	}
	return errors.Join(errs...)
}

// syncParallelism bounds concurrent fsyncs: enough to let the filesystem
// batch journal commits, few enough not to thrash.
const syncParallelism = 8

func (l *Local) Sync(ctx context.Context) error {
	if err := l.waitBackground(syncGroup(ctx)); err != nil {
		return fmt.Errorf("syncing %s: %w", l.Location(), err)
	}
	l.mu.Lock()
	pending := l.pending
	l.pending = nil
	l.mu.Unlock()

	// 1. File contents durable, then each file into place: in parallel, as
	// concurrent fsyncs share journal commits. A file is renamed only once
	// its own fsync succeeded; on failure the files not yet renamed are
	// removed (the renamed ones are durable blobs that nothing refers to
	// yet, which GC removes, as after a crash).
	errs := make([]error, len(pending))
	renamed := make([]bool, len(pending))
	sem := make(chan struct{}, syncParallelism)
	var wg sync.WaitGroup
	for i, p := range pending {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			err := p.f.Sync()
			if cerr := p.f.Close(); err == nil {
				err = cerr
			}
			if err == nil {
				err = l.fs.Rename(p.tmp, p.final)
				renamed[i] = err == nil
			}
			errs[i] = err
		}()
	}
	wg.Wait()
	for i, p := range pending {
		if renamed[i] {
			l.markDirty(filepath.Dir(p.final))
		}
	}
	if err := errors.Join(errs...); err != nil {
		for i, p := range pending {
			if !renamed[i] {
				l.fs.Remove(p.tmp)
			}
		}
		return fmt.Errorf("syncing %s: %w", l.Location(), err)
	}
	// 2. Directory entries durable, in parallel too: a chunk-heavy commit
	// dirties up to all 256 fan-out directories.
	l.mu.Lock()
	dirty := l.dirty
	l.dirty = map[string]bool{}
	l.mu.Unlock()
	ds := make([]string, 0, len(dirty))
	for d := range dirty {
		ds = append(ds, d)
	}
	return syncDirs(l.fs, ds)
}

// syncDirs fsyncs directories, syncParallelism at a time.
func syncDirs(fsys vfs.FS, dirs []string) error {
	errs := make([]error, len(dirs))
	sem := make(chan struct{}, syncParallelism)
	var wg sync.WaitGroup
	for i, d := range dirs {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			if err := fsys.SyncDir(d); err != nil {
				errs[i] = fmt.Errorf("syncing %s: %w", d, err)
			}
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

func (l *Local) markDirty(dir string) {
	l.mu.Lock()
	l.dirty[dir] = true
	l.mu.Unlock()
}

func (l *Local) Load(ctx context.Context, h Handle) ([]byte, error) {
	p, err := l.path(h)
	if err != nil {
		return nil, err
	}
	b, err := l.fs.ReadFile(p)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, NotExist(l.Location(), h)
		}
		return nil, fmt.Errorf("loading %s: %w", h, err)
	}
	return b, nil
}

// LoadBuf implements BufLoader.
func (l *Local) LoadBuf(ctx context.Context, h Handle, buf []byte) ([]byte, error) {
	p, err := l.path(h)
	if err != nil {
		return nil, err
	}
	f, err := l.fs.Open(p)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, NotExist(l.Location(), h)
		}
		return nil, fmt.Errorf("loading %s: %w", h, err)
	}
	defer f.Close()
	buf = buf[:0]
	for {
		if len(buf) == cap(buf) {
			buf = append(buf, 0)[:len(buf)]
		}
		n, err := f.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if err == io.EOF {
			return buf, nil
		}
		if err != nil {
			return nil, fmt.Errorf("loading %s: %w", h, err)
		}
	}
}

func (l *Local) Stat(ctx context.Context, h Handle) (Info, error) {
	p, err := l.path(h)
	if err != nil {
		return Info{}, err
	}
	st, err := l.fs.Stat(p)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return Info{}, NotExist(l.Location(), h)
		}
		return Info{}, err
	}
	return Info{Handle: h, Size: st.Size(), ModTime: st.ModTime()}, nil
}

// StatReuse is Stat for a chunk a writer found and will refer to instead of
// storing it (ReuseStater): another writer may have renamed it into place
// without having fsynced its directory yet, so the next Sync fsyncs that
// directory too.
func (l *Local) StatReuse(ctx context.Context, h Handle) (Info, error) {
	in, err := l.Stat(ctx, h)
	if err == nil {
		if p, perr := l.path(h); perr == nil {
			l.markDirty(filepath.Dir(p))
		}
	}
	return in, err
}

func (l *Local) Remove(ctx context.Context, h Handle) error {
	p, err := l.path(h)
	if err != nil {
		return err
	}
	if err := l.fs.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("removing %s: %w", h, err)
	}
	l.markDirty(filepath.Dir(p))
	return nil
}

func (l *Local) List(ctx context.Context, k Kind, fn func(Info) error) error {
	var dirs []string
	switch k {
	case Config:
		in, err := l.Stat(ctx, Handle{Kind: Config})
		if errors.Is(err, ErrNotExist) {
			return nil
		} else if err != nil {
			return err
		}
		return fn(in)
	case Chunk:
		dirs = chunkDirs(l.root)
	case Manifest, Level:
		dirs = []string{filepath.Join(l.root, string(k))}
	default:
		return fmt.Errorf("unknown blob kind %q", k)
	}
	for _, d := range dirs {
		if err := ctx.Err(); err != nil {
			return err
		}
		var ferr error // fn's error, told apart from the listing's
		err := eachDirEntry(l.fs, d, func(e fs.DirEntry) error {
			if e.IsDir() || strings.HasPrefix(e.Name(), ".") {
				return nil
			}
			in := Info{Handle: Handle{Kind: k, Name: e.Name()}}
			if fi, err := e.Info(); err == nil {
				in.Size, in.ModTime = fi.Size(), fi.ModTime()
			} else if errors.Is(err, fs.ErrNotExist) {
				return nil // removed while listed
			}
			ferr = fn(in)
			return ferr
		})
		if ferr != nil {
			return ferr
		}
		if err != nil {
			return fmt.Errorf("listing %s: %w", d, err)
		}
	}
	return nil
}

// CleanTmp removes leftovers of writers that died before their Sync: files
// in tmp/ and chunks being written in the fan-out directories. Only call
// it while holding the exclusive repository lock.
func (l *Local) CleanTmp(ctx context.Context) (int, error) {
	n := 0
	remove := func(dir string, match func(string) bool) error {
		ents, err := l.fs.ReadDir(dir)
		if err != nil {
			return err
		}
		for _, e := range ents {
			if match(e.Name()) && l.fs.Remove(filepath.Join(dir, e.Name())) == nil {
				n++
			}
		}
		return nil
	}
	if err := remove(filepath.Join(l.root, "tmp"), func(string) bool { return true }); err != nil {
		return n, err
	}
	for _, dir := range chunkDirs(l.root) {
		if err := ctx.Err(); err != nil {
			return n, err
		}
		if err := remove(dir, func(name string) bool { return strings.HasPrefix(name, tmpPrefix) }); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return n, err
		}
	}
	return n, nil
}

func (l *Local) Lock(ctx context.Context, name string, exclusive bool) (Unlocker, error) {
	if name == "" || strings.ContainsAny(name, "/\\\x00") || name[0] == '.' {
		return nil, fmt.Errorf("invalid lock name %q", name)
	}
	return l.locks.lock(ctx, name, exclusive)
}

func (l *Local) Close() error {
	// Chunks already on their way become durable orphans, which gc removes.
	_ = l.waitBackground(nil)
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, p := range l.pending {
		p.f.Close()
		l.fs.Remove(p.tmp)
	}
	l.pending = nil
	return nil
}

type locker interface {
	lock(ctx context.Context, name string, exclusive bool) (Unlocker, error)
}

// memLocker serves locks within one process (for non-OS filesystems).
type memLocker struct{ m *Mem }

func newMemLocker() memLocker { return memLocker{NewMem()} }

func (l memLocker) lock(ctx context.Context, name string, excl bool) (Unlocker, error) {
	return l.m.Lock(ctx, name, excl)
}
