package agent

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/ckpt/ckpt/internal/backend"
	"github.com/ckpt/ckpt/internal/levels"
)

// fragStore keeps erasure fragments as files DIR/<id>.<index>, written to
// DIR/.tmp/ and renamed into place once every byte arrived and was synced,
// so a fragment that exists is whole.
type fragStore struct{ dir string }

func openFragStore(dir string) (*fragStore, error) {
	if err := os.MkdirAll(filepath.Join(dir, ".tmp"), backend.DirMode); err != nil {
		return nil, err
	}
	return &fragStore{dir: dir}, nil
}

func (f *fragStore) path(name string) (string, error) {
	if _, _, err := levels.ParseFragmentName(name); err != nil {
		return "", err
	}
	return filepath.Join(f.dir, name), nil
}

// PutFragment stores exactly size bytes from r as fragment name.
func (f *fragStore) PutFragment(ctx context.Context, name string, r io.Reader, size int64) error {
	final, err := f.path(name)
	if err != nil {
		return err
	}
	tmp := filepath.Join(f.dir, ".tmp", randomID())
	out, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, backend.FileMode)
	if err != nil {
		return err
	}
	defer os.Remove(tmp) // a no-op after the rename
	n, err := io.Copy(out, io.LimitReader(r, size))
	if err == nil && n != size {
		err = fmt.Errorf("%w: got %d of %d bytes", io.ErrUnexpectedEOF, n, size)
	}
	if err == nil {
		err = out.Sync()
	}
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("fragment %s: %w", name, err)
	}
	if err := os.Rename(tmp, final); err != nil {
		return err
	}
	d, err := os.Open(f.dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// GetFragment opens fragment name.
func (f *fragStore) GetFragment(ctx context.Context, name string) (io.ReadCloser, int64, error) {
	p, err := f.path(name)
	if err != nil {
		return nil, 0, err
	}
	fh, err := os.Open(p)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, 0, fmt.Errorf("fragment %s: %w", name, backend.ErrNotExist)
		}
		return nil, 0, err
	}
	st, err := fh.Stat()
	if err != nil {
		fh.Close()
		return nil, 0, err
	}
	return fh, st.Size(), nil
}

// ListFragments reads the directory in batches (it is never held whole)
// and calls fn for the fragments of id (all when id is "").
func (f *fragStore) ListFragments(ctx context.Context, id string, fn func(name string, size int64) error) error {
	d, err := os.Open(f.dir)
	if err != nil {
		return err
	}
	defer d.Close()
	for {
		ents, err := d.ReadDir(256)
		for _, e := range ents {
			fid, _, perr := levels.ParseFragmentName(e.Name())
			if perr != nil || (id != "" && fid != id) {
				continue
			}
			var size int64
			if fi, err := e.Info(); err == nil {
				size = fi.Size()
			}
			if err := fn(e.Name(), size); err != nil {
				return err
			}
		}
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		if err := ctx.Err(); err != nil {
			return err
		}
	}
}

func (f *fragStore) RemoveFragment(ctx context.Context, name string) error {
	p, err := f.path(name)
	if err != nil {
		return err
	}
	if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	return nil
}

func randomID() string {
	var b [12]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

func (s *Server) fragPut(w http.ResponseWriter, r *http.Request, g *group) {
	name := r.PathValue("name")
	if _, _, err := levels.ParseFragmentName(name); err != nil {
		httpError(w, http.StatusBadRequest, "bad_name", "%v", err)
		return
	}
	if r.ContentLength < 0 {
		httpError(w, http.StatusLengthRequired, "no_length", "fragment %s: Content-Length is required", name)
		return
	}
	cr := &countReader{r: r.Body}
	err := g.frags.PutFragment(r.Context(), name, cr, r.ContentLength)
	s.met.bytesIn.Add(float64(cr.n))
	if err != nil {
		if errors.Is(err, io.ErrUnexpectedEOF) || cr.err != nil {
			httpError(w, http.StatusBadRequest, "truncated", "fragment %s: upload cut short after %d of %d bytes; nothing was stored", name, cr.n, r.ContentLength)
			return
		}
		httpError(w, http.StatusInternalServerError, "io", "%v", err)
		return
	}
	s.met.blobsStored.Inc()
	w.WriteHeader(http.StatusNoContent)
}

type countReader struct {
	r   io.Reader
	n   int64
	err error
}

func (c *countReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	if err != nil && err != io.EOF {
		c.err = err
	}
	return n, err
}

func (s *Server) fragGet(w http.ResponseWriter, r *http.Request, g *group) {
	name := r.PathValue("name")
	rc, size, err := g.frags.GetFragment(r.Context(), name)
	if err != nil {
		if errors.Is(err, backend.ErrNotExist) {
			httpError(w, http.StatusNotFound, "no_blob", "fragment %s does not exist", name)
			return
		}
		httpError(w, http.StatusBadRequest, "bad_name", "%v", err)
		return
	}
	defer rc.Close()
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Header().Set("Content-Length", strconv.FormatInt(size, 10))
	if r.Method == http.MethodHead {
		return
	}
	n, _ := io.Copy(w, rc)
	s.met.bytesOut.Add(float64(n))
}

func (s *Server) fragDelete(w http.ResponseWriter, r *http.Request, g *group) {
	if err := g.frags.RemoveFragment(r.Context(), r.PathValue("name")); err != nil {
		httpError(w, http.StatusBadRequest, "bad_name", "%v", err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (s *Server) fragList(w http.ResponseWriter, r *http.Request, g *group) {
	id := r.URL.Query().Get("checkpoint")
	w.Header().Set("Content-Type", "application/x-ndjson")
	enc := json.NewEncoder(w)
	err := g.frags.ListFragments(r.Context(), id, func(name string, size int64) error {
		return enc.Encode(backend.AgentListEntry{Name: name, Size: size})
	})
	if err != nil {
		return
	}
	io.WriteString(w, "{}\n")
}

var _ = strings.Cut
