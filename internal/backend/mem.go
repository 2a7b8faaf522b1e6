package backend

import (
	"context"
	"sync"
	"time"
)

// Mem is a Backend held in memory, for tests and for the in-process level of
// the library. Saves are visible at once; Sync is a no-op.
type Mem struct {
	mu    sync.RWMutex
	blobs map[Handle]memBlob
	locks map[string]*sync.RWMutex
}

type memBlob struct {
	data  []byte
	mtime time.Time
}

// NewMem returns an empty memory backend.
func NewMem() *Mem {
	return &Mem{blobs: map[Handle]memBlob{}, locks: map[string]*sync.RWMutex{}}
}

func (m *Mem) Location() string { return "mem" }

func (m *Mem) Save(ctx context.Context, h Handle, data []byte) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	cp := append([]byte(nil), data...)
	m.mu.Lock()
	m.blobs[h] = memBlob{cp, time.Now()}
	m.mu.Unlock()
	return nil
}

func (m *Mem) Sync(ctx context.Context) error { return ctx.Err() }

func (m *Mem) Load(ctx context.Context, h Handle) ([]byte, error) {
	m.mu.RLock()
	b, ok := m.blobs[h]
	m.mu.RUnlock()
	if !ok {
		return nil, NotExist(m.Location(), h)
	}
	return append([]byte(nil), b.data...), nil
}

func (m *Mem) Stat(ctx context.Context, h Handle) (Info, error) {
	m.mu.RLock()
	b, ok := m.blobs[h]
	m.mu.RUnlock()
	if !ok {
		return Info{}, NotExist(m.Location(), h)
	}
	return Info{Handle: h, Size: int64(len(b.data)), ModTime: b.mtime}, nil
}

func (m *Mem) Remove(ctx context.Context, h Handle) error {
	m.mu.Lock()
	delete(m.blobs, h)
	m.mu.Unlock()
	return nil
}

func (m *Mem) List(ctx context.Context, k Kind, fn func(Info) error) error {
	m.mu.RLock()
	var infos []Info
	for h, b := range m.blobs {
		if h.Kind == k {
			infos = append(infos, Info{Handle: h, Size: int64(len(b.data)), ModTime: b.mtime})
		}
	}
	m.mu.RUnlock()
	for _, in := range infos {
		if err := fn(in); err != nil {
			return err
		}
	}
	return nil
}

func (m *Mem) Lock(ctx context.Context, name string, exclusive bool) (Unlocker, error) {
	m.mu.Lock()
	l, ok := m.locks[name]
	if !ok {
		l = &sync.RWMutex{}
		m.locks[name] = l
	}
	m.mu.Unlock()
	try := l.TryRLock
	unlock := l.RUnlock
	if exclusive {
		try, unlock = l.TryLock, l.Unlock
	}
	t := time.NewTicker(5 * time.Millisecond)
	defer t.Stop()
	for !try() {
		select {
		case <-ctx.Done():
			return nil, ErrLocked
		case <-t.C:
		}
	}
	return unlockFunc(func() error { unlock(); return nil }), nil
}

func (m *Mem) Close() error { return nil }

type unlockFunc func() error

func (f unlockFunc) Unlock() error { return f() }
