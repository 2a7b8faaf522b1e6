package repo

import (
	"context"
	"encoding/json"
	"testing"

	"github.com/ckpt/ckpt/internal/backend"
)

// fuzzRepo returns a repository and a committed manifest whose blobs seed
// the fuzzers.
func fuzzRepo(t testing.TB, key []byte) (*Repository, *Manifest) {
	r := newMemRepo(t, key)
	m := writeCkpt(t, r, "fuzz", nil, map[string][]byte{"a": randBytes(1, 70<<10), "b": []byte("hello")})
	return r, m
}

func FuzzDecodeManifest(f *testing.F) {
	for _, key := range [][]byte{nil, []byte("fuzzing key material")} {
		r, m := fuzzRepo(f, key)
		blob, _ := r.Backend().Load(context.Background(), backend.Handle{Kind: backend.Manifest, Name: m.ID()})
		f.Add(blob, key != nil)
	}
	f.Add([]byte("CKMF\x01\x00\x00\x00\x04\x00\x00\x00abcd"), false)
	plain, pm := fuzzRepo(f, nil)
	sealed, _ := fuzzRepo(f, []byte("fuzzing key material"))
	f.Fuzz(func(t *testing.T, blob []byte, useKey bool) {
		r := plain
		if useKey {
			r = sealed
		}
		id, _ := ParseID(pm.ID())
		// Any ID: decoding must fail cleanly or yield a valid manifest.
		for _, try := range []ID{id, r.hashID(blob)} {
			m, err := r.decodeManifest(try, blob)
			if err != nil {
				continue
			}
			if err := m.validate(); err != nil {
				t.Fatalf("decoded manifest does not validate: %v", err)
			}
		}
		// A manifest body that hashes right but is garbage JSON must also fail cleanly.
		m2 := &Manifest{}
		_ = m2.validate()
	})
}

func FuzzDecodeChunk(f *testing.F) {
	for _, key := range [][]byte{nil, []byte("fuzzing key material")} {
		r, m := fuzzRepo(f, key)
		for _, c := range m.Chunks {
			blob, _ := r.Backend().Load(context.Background(), backend.Handle{Kind: backend.Chunk, Name: c.ID})
			f.Add(blob, key != nil)
		}
	}
	plain, _ := fuzzRepo(f, nil)
	sealed, _ := fuzzRepo(f, []byte("fuzzing key material"))
	f.Fuzz(func(t *testing.T, blob []byte, useKey bool) {
		r := plain
		if useKey {
			r = sealed
		}
		if len(blob) > 12 {
			id := r.hashID(blob[12:])
			if p, _, err := r.decodeChunk(id, blob); err == nil && r.hashID(p) != id {
				t.Fatal("decoded chunk does not match its ID")
			}
		}
		var id ID
		if p, _, err := r.decodeChunk(id, blob); err == nil {
			t.Fatalf("garbage decoded to %d bytes under the zero ID", len(p))
		}
	})
}

// FuzzManifestJSON feeds arbitrary JSON bodies through validation and a
// full read of every object: a manifest that validates must never make a
// reader panic or index out of range.
func FuzzManifestJSON(f *testing.F) {
	r, m := fuzzRepo(f, nil)
	f.Add([]byte(`{"name":"x","chunks":[],"objects":[{"name":"o","size":10,"extents":[[0,5,0,0]]}]}`))
	js, _ := json.Marshal(m)
	f.Add(js)
	f.Fuzz(func(t *testing.T, js []byte) {
		enc, _ := zstdCodecs()
		body := enc.EncodeAll(js, nil)
		blob := append([]byte("CKMF\x01\x00\x00\x00\x00\x00\x00\x00"), body...)
		blob[8], blob[9], blob[10], blob[11] = byte(len(body)), byte(len(body)>>8), byte(len(body)>>16), byte(len(body)>>24)
		m, err := r.decodeManifest(r.hashID(js), blob)
		if err != nil {
			return
		}
		for _, o := range m.Objects {
			if o.Size > 1<<24 {
				continue
			}
			or, err := r.OpenObject(m, o.Name)
			if err != nil {
				t.Fatal(err)
			}
			or.ReadAll(context.Background())
		}
	})
}
