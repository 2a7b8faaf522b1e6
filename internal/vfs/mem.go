package vfs

import (
	"errors"
	"io"
	"io/fs"
	"path"
	"sort"
	"strings"
	"sync"
	"time"
)

// ErrCrashed is returned by every operation of a MemFS after its operation
// budget (SetCrashAfter) is spent: the simulated machine has lost power.
var ErrCrashed = errors.New("vfs: simulated crash")

// MemFS is an in-memory filesystem that remembers, for every file and
// directory, what was last made durable. Crash drops everything that was not:
// file contents not followed by File.Sync, and directory entries (creations,
// renames, removals) not followed by SyncDir of their directory. It follows
// the model of Pebble's crashable memory filesystem.
type MemFS struct {
	mu     sync.Mutex
	root   *memNode
	budget int // operations left before the simulated crash; <0: unlimited
	ops    int // mutating operations performed
}

type memNode struct {
	dir    bool
	mode   fs.FileMode
	mtime  time.Time
	data   []byte // current contents (files)
	synced []byte // contents at the last Sync (files)
	kids   map[string]*memNode
	durKid map[string]*memNode // entries at the last SyncDir
}

// NewCrashableMem returns an empty MemFS with an unlimited operation budget.
func NewCrashableMem() *MemFS {
	return &MemFS{root: newDir(0o700), budget: -1}
}

func newDir(perm fs.FileMode) *memNode {
	return &memNode{dir: true, mode: fs.ModeDir | perm, kids: map[string]*memNode{}, durKid: map[string]*memNode{}, mtime: time.Now()}
}

// SetCrashAfter makes every operation after the next n mutating ones fail with
// ErrCrashed. n < 0 removes the limit.
func (m *MemFS) SetCrashAfter(n int) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.budget = n
}

// Ops reports how many mutating operations have been performed.
func (m *MemFS) Ops() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.ops
}

// Crash discards everything that was not made durable and lifts the
// operation limit, as after a reboot.
func (m *MemFS) Crash() {
	m.mu.Lock()
	defer m.mu.Unlock()
	var reset func(n *memNode)
	reset = func(n *memNode) {
		if !n.dir {
			n.data = append([]byte(nil), n.synced...)
			return
		}
		n.kids = map[string]*memNode{}
		for k, v := range n.durKid {
			n.kids[k] = v
		}
		for _, v := range n.kids {
			reset(v)
		}
	}
	reset(m.root)
	m.budget = -1
}

// mutate spends one operation of the budget. Callers hold m.mu.
func (m *MemFS) mutate() error {
	if m.budget == 0 {
		return ErrCrashed
	}
	if m.budget > 0 {
		m.budget--
	}
	m.ops++
	return nil
}

func (m *MemFS) alive() error {
	if m.budget == 0 {
		return ErrCrashed
	}
	return nil
}

func split(name string) []string {
	name = path.Clean("/" + name)
	if name == "/" {
		return nil
	}
	return strings.Split(name[1:], "/")
}

func (m *MemFS) lookup(name string) (*memNode, error) {
	n := m.root
	for _, p := range split(name) {
		if !n.dir {
			return nil, &fs.PathError{Op: "open", Path: name, Err: fs.ErrNotExist}
		}
		c, ok := n.kids[p]
		if !ok {
			return nil, &fs.PathError{Op: "open", Path: name, Err: fs.ErrNotExist}
		}
		n = c
	}
	return n, nil
}

func (m *MemFS) parent(name, op string) (*memNode, string, error) {
	parts := split(name)
	if len(parts) == 0 {
		return nil, "", &fs.PathError{Op: op, Path: name, Err: fs.ErrInvalid}
	}
	dir, err := m.lookup(path.Join(parts[:len(parts)-1]...))
	if err != nil || !dir.dir {
		return nil, "", &fs.PathError{Op: op, Path: name, Err: fs.ErrNotExist}
	}
	return dir, parts[len(parts)-1], nil
}

func (m *MemFS) Create(name string, perm fs.FileMode) (File, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := m.mutate(); err != nil {
		return nil, err
	}
	dir, base, err := m.parent(name, "create")
	if err != nil {
		return nil, err
	}
	n := &memNode{mode: perm, mtime: time.Now()}
	dir.kids[base] = n
	return &memFile{fs: m, n: n, name: name, write: true}, nil
}

func (m *MemFS) Open(name string) (File, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := m.alive(); err != nil {
		return nil, err
	}
	n, err := m.lookup(name)
	if err != nil {
		return nil, err
	}
	return &memFile{fs: m, n: n, name: name}, nil
}

func (m *MemFS) ReadFile(name string) ([]byte, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := m.alive(); err != nil {
		return nil, err
	}
	n, err := m.lookup(name)
	if err != nil {
		return nil, err
	}
	if n.dir {
		return nil, &fs.PathError{Op: "read", Path: name, Err: errors.New("is a directory")}
	}
	return append([]byte(nil), n.data...), nil
}

func (m *MemFS) Rename(oldname, newname string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := m.mutate(); err != nil {
		return err
	}
	od, ob, err := m.parent(oldname, "rename")
	if err != nil {
		return err
	}
	n, ok := od.kids[ob]
	if !ok {
		return &fs.PathError{Op: "rename", Path: oldname, Err: fs.ErrNotExist}
	}
	nd, nb, err := m.parent(newname, "rename")
	if err != nil {
		return err
	}
	delete(od.kids, ob)
	nd.kids[nb] = n
	return nil
}

func (m *MemFS) Remove(name string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := m.mutate(); err != nil {
		return err
	}
	d, b, err := m.parent(name, "remove")
	if err != nil {
		return err
	}
	n, ok := d.kids[b]
	if !ok {
		return &fs.PathError{Op: "remove", Path: name, Err: fs.ErrNotExist}
	}
	if n.dir && len(n.kids) > 0 {
		return &fs.PathError{Op: "remove", Path: name, Err: errors.New("directory not empty")}
	}
	delete(d.kids, b)
	return nil
}

// MkdirAll creates missing directories. Like mkdir(2), a new directory's
// entry in its parent is durable only after SyncDir of the parent.
func (m *MemFS) MkdirAll(name string, perm fs.FileMode) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := m.mutate(); err != nil {
		return err
	}
	n := m.root
	for _, p := range split(name) {
		c, ok := n.kids[p]
		if !ok {
			c = newDir(perm)
			n.kids[p] = c
		} else if !c.dir {
			return &fs.PathError{Op: "mkdir", Path: name, Err: errors.New("not a directory")}
		}
		n = c
	}
	return nil
}

func (m *MemFS) ReadDir(name string) ([]fs.DirEntry, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := m.alive(); err != nil {
		return nil, err
	}
	n, err := m.lookup(name)
	if err != nil {
		return nil, err
	}
	if !n.dir {
		return nil, &fs.PathError{Op: "readdir", Path: name, Err: errors.New("not a directory")}
	}
	out := make([]fs.DirEntry, 0, len(n.kids))
	for k, v := range n.kids {
		out = append(out, fs.FileInfoToDirEntry(memInfo{name: k, n: v}))
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name() < out[j].Name() })
	return out, nil
}

func (m *MemFS) Stat(name string) (fs.FileInfo, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := m.alive(); err != nil {
		return nil, err
	}
	n, err := m.lookup(name)
	if err != nil {
		return nil, err
	}
	return memInfo{name: path.Base(name), n: n}, nil
}

func (m *MemFS) SyncDir(name string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := m.mutate(); err != nil {
		return err
	}
	n, err := m.lookup(name)
	if err != nil {
		return err
	}
	n.durKid = map[string]*memNode{}
	for k, v := range n.kids {
		n.durKid[k] = v
	}
	return nil
}

type memInfo struct {
	name string
	n    *memNode
}

func (i memInfo) Name() string       { return i.name }
func (i memInfo) Size() int64        { return int64(len(i.n.data)) }
func (i memInfo) Mode() fs.FileMode  { return i.n.mode }
func (i memInfo) ModTime() time.Time { return i.n.mtime }
func (i memInfo) IsDir() bool        { return i.n.dir }
func (i memInfo) Sys() any           { return nil }

type memFile struct {
	fs    *MemFS
	n     *memNode
	name  string
	off   int
	write bool
}

func (f *memFile) Name() string { return f.name }

func (f *memFile) Read(p []byte) (int, error) {
	f.fs.mu.Lock()
	defer f.fs.mu.Unlock()
	if err := f.fs.alive(); err != nil {
		return 0, err
	}
	if f.off >= len(f.n.data) {
		return 0, io.EOF
	}
	n := copy(p, f.n.data[f.off:])
	f.off += n
	return n, nil
}

func (f *memFile) Write(p []byte) (int, error) {
	f.fs.mu.Lock()
	defer f.fs.mu.Unlock()
	if err := f.fs.mutate(); err != nil {
		return 0, err
	}
	if !f.write {
		return 0, &fs.PathError{Op: "write", Path: f.name, Err: fs.ErrPermission}
	}
	f.n.data = append(f.n.data[:f.off], p...)
	f.off += len(p)
	f.n.mtime = time.Now()
	return len(p), nil
}

func (f *memFile) Sync() error {
	f.fs.mu.Lock()
	defer f.fs.mu.Unlock()
	if err := f.fs.mutate(); err != nil {
		return err
	}
	f.n.synced = append([]byte(nil), f.n.data...)
	return nil
}

func (f *memFile) Close() error { return nil }
