package repo

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/ckpt/ckpt/internal/backend"
	"github.com/ckpt/ckpt/internal/vfs"
)

// DefaultDir is the repository used when none is named: $CKPT_REPO, else
// $XDG_DATA_HOME/ckpt, else ~/.local/share/ckpt.
func DefaultDir() string {
	if d := os.Getenv("CKPT_REPO"); d != "" {
		return d
	}
	if d := os.Getenv("XDG_DATA_HOME"); d != "" {
		return filepath.Join(d, "ckpt")
	}
	home, err := os.UserHomeDir()
	if err != nil || home == "" {
		home = "/root"
	}
	return filepath.Join(home, ".local", "share", "ckpt")
}

// ReadKeyFile reads key material from a file. Surrounding whitespace (a
// trailing newline from an editor or echo) is not part of the key.
func ReadKeyFile(path string) ([]byte, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading key file: %w", err)
	}
	k := []byte(strings.TrimSpace(string(b)))
	if len(k) < MinKeyLen {
		return nil, fmt.Errorf("key file %s: %d bytes; at least %d are required", path, len(k), MinKeyLen)
	}
	return k, nil
}

// OpenDir opens the local repository in dir. With create, a missing or
// empty directory becomes a new unencrypted repository (the embedded
// default: first use needs no 'ckpt init').
func OpenDir(ctx context.Context, dir string, key []byte, create bool) (*Repository, error) {
	be, err := backend.OpenLocal(vfs.OS, dir)
	if errors.Is(err, backend.ErrNotExist) && create && key == nil {
		return InitDir(ctx, dir, InitOptions{})
	}
	if err != nil {
		if errors.Is(err, backend.ErrNotExist) {
			return nil, fmt.Errorf("%s: %w (no such directory)", dir, ErrNotRepository)
		}
		return nil, err
	}
	r, err := Open(ctx, be, key)
	if errors.Is(err, ErrNotRepository) && create && key == nil && emptyDir(dir) {
		return InitDir(ctx, dir, InitOptions{})
	}
	return r, err
}

// OpenLocation opens a repository named by a directory, an
// "s3:http(s)://HOST/BUCKET/PREFIX" location or an agent's
// "agent://HOST:PORT/GROUP" (internal/repo/levels.go). create makes a missing one
// (unencrypted) as OpenDir does.
func OpenLocation(ctx context.Context, loc string, key []byte, create bool) (*Repository, error) {
	if strings.HasPrefix(loc, "agent://") {
		return openAgentRepo(ctx, loc, key, create)
	}
	if !strings.HasPrefix(loc, "s3:") {
		return OpenDir(ctx, loc, key, create)
	}
	cfg, err := backend.ParseS3(loc)
	if err != nil {
		return nil, err
	}
	be, err := backend.OpenS3(ctx, cfg, create)
	if err != nil {
		return nil, err
	}
	r, err := Open(ctx, be, key)
	if errors.Is(err, ErrNotRepository) && create && key == nil {
		return Init(ctx, be, InitOptions{})
	}
	return r, err
}

// InitLocation creates a repository at a directory or s3: location.
func InitLocation(ctx context.Context, loc string, opts InitOptions) (*Repository, error) {
	if strings.HasPrefix(loc, "agent://") {
		return initAgentRepo(ctx, loc, opts)
	}
	if !strings.HasPrefix(loc, "s3:") {
		return InitDir(ctx, loc, opts)
	}
	cfg, err := backend.ParseS3(loc)
	if err != nil {
		return nil, err
	}
	be, err := backend.OpenS3(ctx, cfg, true)
	if err != nil {
		return nil, err
	}
	return Init(ctx, be, opts)
}

// InitDir creates a local repository in dir.
func InitDir(ctx context.Context, dir string, opts InitOptions) (*Repository, error) {
	if !emptyDir(dir) {
		if _, err := os.Stat(filepath.Join(dir, "config")); err == nil {
			return nil, fmt.Errorf("%s: %w", dir, ErrExists)
		}
		return nil, fmt.Errorf("%s is not empty and holds no ckpt repository; choose an empty or new directory", dir)
	}
	be, err := backend.CreateLocal(vfs.OS, dir)
	if err != nil {
		return nil, err
	}
	return Init(ctx, be, opts)
}

// emptyDir reports whether dir is missing, empty, or holds only the
// directory skeleton of an InitDir that was interrupted before its config
// was stored. Nothing else can be in such a skeleton (nothing is written
// before the config), so it may be initialised again; otherwise a crash
// during the first use would leave a directory that can never be opened.
func emptyDir(dir string) bool {
	ents, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return true
	}
	if err != nil {
		return false
	}
	for _, e := range ents {
		switch e.Name() {
		case "chunks", "levels", "locks", "tmp":
		case "manifests":
			if m, err := os.ReadDir(filepath.Join(dir, "manifests")); err != nil || len(m) > 0 {
				return false
			}
		default:
			return false
		}
		if !e.IsDir() {
			return false
		}
	}
	return true
}
