// Package backend defines the storage interface under a ckpt repository and
// its implementations: a local directory (the embedded default) and memory.
// S3-compatible object stores and peer agents implement the same interface.
//
// A backend stores opaque, immutable blobs named by a Handle. It knows nothing
// about chunks, manifests, codecs or keys: the repository package owns those.
package backend

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// Kind is the namespace of a blob.
type Kind string

// The kinds a repository stores. Each maps to a directory (local) or key
// prefix (object stores) of the same name.
const (
	Config   Kind = "config"    // the single repository configuration blob, Name ""
	Chunk    Kind = "chunks"    // content-addressed chunks, Name = hex ID
	Manifest Kind = "manifests" // checkpoint manifests, Name = hex ID
	Level    Kind = "levels"    // per-checkpoint level records, Name = hex ID + "." + level
)

// Kinds lists every kind, for tools that walk a whole backend.
var Kinds = []Kind{Config, Chunk, Manifest, Level}

// Handle names one blob.
type Handle struct {
	Kind Kind
	Name string
}

func (h Handle) String() string {
	if h.Name == "" {
		return string(h.Kind)
	}
	return string(h.Kind) + "/" + h.Name
}

// Info describes a stored blob.
type Info struct {
	Handle
	Size    int64
	ModTime time.Time
}

// ErrNotExist is wrapped by every error for a blob (or backend) that does not exist.
var ErrNotExist = errors.New("does not exist")

// ErrLocked is returned by Lock when the lock is held by someone else and
// the context ends before it is released.
var ErrLocked = errors.New("locked by another process")

// Backend is the storage contract of every level.
//
// Blobs are immutable: a Save of an existing handle replaces it with equal or
// newer content (chunks are content-addressed, so equal; level records are
// the only blobs that are replaced). All methods are safe for concurrent use,
// also by several processes sharing one backend.
type Backend interface {
	// Location describes the backend for messages ("local:/path", "mem").
	Location() string

	// Save stores data under h. The blob is all-or-nothing: a reader never
	// sees a partial blob. Save must not keep data after it returns (the
	// caller reuses the buffer): copy it if it is needed later. It need not be visible or durable before the next
	// Sync returns; after a crash before that Sync it may be absent, but never
	// present and partial.
	Save(ctx context.Context, h Handle, data []byte) error

	// Sync makes every Save of this Backend value that returned before the
	// call durable and visible. It is the barrier the repository uses between
	// chunks and the manifest that commits them.
	Sync(ctx context.Context) error

	// Load returns the whole blob. A missing blob gives an error wrapping
	// ErrNotExist; a short read is an error, never silent truncation.
	Load(ctx context.Context, h Handle) ([]byte, error)

	// Stat returns the blob's size, or an error wrapping ErrNotExist.
	Stat(ctx context.Context, h Handle) (Info, error)

	// Remove deletes the blob. Removing a missing blob is not an error. The
	// removal is durable after the next Sync.
	Remove(ctx context.Context, h Handle) error

	// List calls fn for each blob of kind k, in no particular order. An error
	// from fn stops the listing and is returned.
	List(ctx context.Context, k Kind, fn func(Info) error) error

	// Lock takes the named advisory lock, shared or exclusive, waiting until
	// ctx ends (then ErrLocked). Locks die with the process that holds them.
	Lock(ctx context.Context, name string, exclusive bool) (Unlocker, error)

	// Close releases resources. Pending unsynced Saves may be lost.
	Close() error
}

// BufLoader is implemented by backends that can load a blob into a buffer
// the caller reuses (the local one): a restore reads a gigabyte of chunks,
// and a fresh buffer per chunk costs an allocation, zeroing and garbage for
// every megabyte.
type BufLoader interface {
	// LoadBuf is Load, reading the blob into buf[:0] and returning it,
	// grown (newly allocated) when cap(buf) is too small.
	LoadBuf(ctx context.Context, h Handle, buf []byte) ([]byte, error)
}

// Unlocker releases a lock taken by Backend.Lock.
type Unlocker interface {
	Unlock() error
}

// NotExist wraps ErrNotExist with the handle and location.
func NotExist(loc string, h Handle) error {
	return fmt.Errorf("%s: %s: %w", loc, h, ErrNotExist)
}

// ReuseStater is implemented by backends where a blob can be visible before
// it is durable (Local: chunks renamed in the background): StatReuse is
// Stat for a blob the caller found and will refer to, and makes the
// caller's next Sync cover it.
type ReuseStater interface {
	StatReuse(ctx context.Context, h Handle) (Info, error)
}
