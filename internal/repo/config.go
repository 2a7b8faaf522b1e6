package repo

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/ckpt/ckpt/internal/backend"
	"github.com/zeebo/blake3"
	"golang.org/x/crypto/chacha20poly1305"
)

// FormatVersion is the repository format this package writes and the newest
// it reads.
const FormatVersion = 1

const configFormat = "ckpt-repository"

// DefaultChunkSize is the target size of a chunk: large enough that hashing,
// compression and per-file costs are amortised, small enough that dedup of
// unchanged regions stays useful.
const DefaultChunkSize = 1 << 20

// MinKeyLen is the shortest key file accepted.
const MinKeyLen = 16

// Config is the repository's configuration blob (backend.Config), plain JSON.
type Config struct {
	Format     string      `json:"format"`
	Version    int         `json:"version"`
	ID         string      `json:"id"`
	Created    time.Time   `json:"created"`
	Hash       string      `json:"hash"`
	ChunkSize  int         `json:"chunk_size"`
	Encryption *Encryption `json:"encryption,omitempty"`
}

// Encryption records how a keyed repository derives and checks its keys.
type Encryption struct {
	AEAD  string `json:"aead"`  // "xchacha20poly1305"
	KDF   string `json:"kdf"`   // "blake3-derive-key"
	Check string `json:"check"` // hex keyed BLAKE3 of the repository ID under the check key
}

// keys are derived from the user's key file; nil for a plain repository.
type keys struct {
	id    [32]byte // keyed-hash key for chunk and manifest IDs
	aead  [32]byte
	check [32]byte
}

const (
	ctxID    = "ckpt 2026-11 chunk and manifest id key"
	ctxAEAD  = "ckpt 2026-11 xchacha20poly1305 key"
	ctxCheck = "ckpt 2026-11 key check"
)

func deriveKeys(material []byte) (*keys, error) {
	if len(material) < MinKeyLen {
		return nil, fmt.Errorf("key is %d bytes; at least %d are required", len(material), MinKeyLen)
	}
	k := &keys{}
	blake3.DeriveKey(ctxID, material, k.id[:])
	blake3.DeriveKey(ctxAEAD, material, k.aead[:])
	blake3.DeriveKey(ctxCheck, material, k.check[:])
	return k, nil
}

func (k *keys) checkValue(repoID string) string {
	h, _ := blake3.NewKeyed(k.check[:])
	h.Write([]byte(repoID))
	return hex.EncodeToString(h.Sum(nil))
}

// InitOptions configure a new repository.
type InitOptions struct {
	Key       []byte // key material; nil for an unencrypted repository
	ChunkSize int    // 0: DefaultChunkSize
}

// Init creates a repository on be. It fails with ErrExists when one is
// already there.
func Init(ctx context.Context, be backend.Backend, opts InitOptions) (*Repository, error) {
	if _, err := be.Stat(ctx, backend.Handle{Kind: backend.Config}); err == nil {
		return nil, fmt.Errorf("%s: %w", be.Location(), ErrExists)
	} else if !errors.Is(err, backend.ErrNotExist) {
		return nil, err
	}
	var rid [16]byte
	if _, err := rand.Read(rid[:]); err != nil {
		return nil, err
	}
	cfg := Config{
		Format:    configFormat,
		Version:   FormatVersion,
		ID:        hex.EncodeToString(rid[:]),
		Created:   time.Now().UTC().Truncate(time.Second),
		Hash:      "blake3",
		ChunkSize: opts.ChunkSize,
	}
	if cfg.ChunkSize == 0 {
		cfg.ChunkSize = DefaultChunkSize
	}
	if cfg.ChunkSize < 4096 || cfg.ChunkSize > 64<<20 || cfg.ChunkSize%4096 != 0 {
		return nil, fmt.Errorf("chunk size %d: must be a multiple of 4096 between 4 KiB and 64 MiB", cfg.ChunkSize)
	}
	var k *keys
	if opts.Key != nil {
		var err error
		if k, err = deriveKeys(opts.Key); err != nil {
			return nil, err
		}
		cfg.Encryption = &Encryption{AEAD: "xchacha20poly1305", KDF: "blake3-derive-key", Check: k.checkValue(cfg.ID)}
	}
	b, err := json.MarshalIndent(cfg, "", "  ")
	if err != nil {
		return nil, err
	}
	if err := be.Save(ctx, backend.Handle{Kind: backend.Config}, append(b, '\n')); err != nil {
		return nil, err
	}
	if err := be.Sync(ctx); err != nil {
		return nil, err
	}
	return newRepository(be, cfg, k)
}

// Open opens the repository on be. key is the key material, nil for none.
func Open(ctx context.Context, be backend.Backend, key []byte) (*Repository, error) {
	b, err := be.Load(ctx, backend.Handle{Kind: backend.Config})
	if err != nil {
		if errors.Is(err, backend.ErrNotExist) {
			return nil, fmt.Errorf("%s: %w (no config; create one with 'ckpt init')", be.Location(), ErrNotRepository)
		}
		return nil, err
	}
	var cfg Config
	if err := json.Unmarshal(b, &cfg); err != nil || cfg.Format != configFormat {
		return nil, fmt.Errorf("%s: %w (unreadable config)", be.Location(), ErrNotRepository)
	}
	if cfg.Version > FormatVersion {
		return nil, fmt.Errorf("%s: version %d: %w (%d); upgrade ckpt", be.Location(), cfg.Version, ErrNewerFormat, FormatVersion)
	}
	if cfg.Version < 1 || cfg.Hash != "blake3" || cfg.ChunkSize < 4096 || cfg.ChunkSize > 64<<20 {
		return nil, fmt.Errorf("%s: %w (invalid config: version %d, hash %q, chunk size %d)", be.Location(), ErrNotRepository, cfg.Version, cfg.Hash, cfg.ChunkSize)
	}
	var k *keys
	switch {
	case cfg.Encryption == nil && key != nil:
		return nil, fmt.Errorf("%s: %w", be.Location(), ErrNotEncrypted)
	case cfg.Encryption != nil && key == nil:
		return nil, fmt.Errorf("%s: %w", be.Location(), ErrKeyRequired)
	case cfg.Encryption != nil:
		if cfg.Encryption.AEAD != "xchacha20poly1305" || cfg.Encryption.KDF != "blake3-derive-key" {
			return nil, fmt.Errorf("%s: unsupported encryption %s/%s", be.Location(), cfg.Encryption.AEAD, cfg.Encryption.KDF)
		}
		if k, err = deriveKeys(key); err != nil {
			return nil, err
		}
		if subtle.ConstantTimeCompare([]byte(k.checkValue(cfg.ID)), []byte(cfg.Encryption.Check)) != 1 {
			return nil, fmt.Errorf("%s: %w", be.Location(), ErrWrongKey)
		}
	}
	return newRepository(be, cfg, k)
}

func newRepository(be backend.Backend, cfg Config, k *keys) (*Repository, error) {
	r := &Repository{be: be, cfg: cfg, keys: k, manifests: map[string]*Manifest{}}
	if k != nil {
		aead, err := chacha20poly1305.NewX(k.aead[:])
		if err != nil {
			return nil, err
		}
		r.aead = aead
	}
	r.watchCommits() // commithook.go
	return r, nil
}
