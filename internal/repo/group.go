package repo

import (
	"context"
	"errors"
	"fmt"
	"os"

	"github.com/ckpt/ckpt/internal/backend"
)

// GroupObject is a small named object of a group checkpoint (the
// recorded state of a channel: "channel/<from>-<to>").
type GroupObject struct {
	Name string
	Type string
	Data []byte
}

// CommitGroup commits a group checkpoint (kind group): the members' own
// checkpoints and small objects stored as one chunk each. The members must
// be committed already; the group manifest is the commit point of the
// global checkpoint (docs/GROUP.md).
func (r *Repository) CommitGroup(ctx context.Context, name string, meta map[string]string, members []Member, objs []GroupObject) (*Manifest, error) {
	if err := ValidName(name); err != nil {
		return nil, err
	}
	for _, mb := range members {
		if _, err := ParseID(mb.Checkpoint); err != nil {
			return nil, fmt.Errorf("group member rank %d: %w", mb.Rank, err)
		}
	}
	unlock, err := r.be.Lock(ctx, repoLock, false)
	if err != nil {
		return nil, fmt.Errorf("waiting for gc to finish: %w", err)
	}
	defer unlock.Unlock()
	m := &Manifest{Name: name, Kind: KindGroup, Meta: meta, Members: members, Objects: []Object{}}
	m.Host, _ = os.Hostname()
	slot := map[string]uint32{}
	for _, o := range objs {
		obj := Object{Name: o.Name, Type: o.Type, Size: uint64(len(o.Data)), Extents: []Extent{}}
		if len(o.Data) > MaxChunkLen {
			return nil, errors.New("group object larger than a chunk")
		}
		if len(o.Data) > 0 {
			id := r.hashID(o.Data)
			k := id.String()
			if _, ok := slot[k]; !ok {
				if !r.hasChunk(ctx, id) {
					blob, _ := r.encodeChunk(id, o.Data, CodecAuto, nil, nil)
					if err := r.be.Save(ctx, backend.Handle{Kind: backend.Chunk, Name: k}, blob); err != nil {
						return nil, fmt.Errorf("storing chunk %s: %w", short(k), err)
					}
					r.known.Store(id, struct{}{})
				}
				slot[k] = uint32(len(m.Chunks))
				m.Chunks = append(m.Chunks, ChunkRef{ID: k, Len: uint32(len(o.Data))})
			}
			obj.Extents = []Extent{{Off: 0, Len: uint64(len(o.Data)), Chunk: slot[k]}}
		}
		m.Objects = append(m.Objects, obj)
	}
	if m.Chunks == nil {
		m.Chunks = []ChunkRef{}
	}
	if err := m.validate(); err != nil {
		return nil, fmt.Errorf("internal error: built an invalid group manifest: %w", err)
	}
	if err := r.be.Sync(ctx); err != nil {
		return nil, fmt.Errorf("making chunks durable: %w", err)
	}
	if err := r.commitManifest(ctx, m); err != nil {
		return nil, err
	}
	return m, nil
}

// ReadGroupObject returns the bytes of a group checkpoint's object.
func (r *Repository) ReadGroupObject(ctx context.Context, m *Manifest, name string) ([]byte, error) {
	if m.Object(name) == nil {
		return nil, fmt.Errorf("%s: no object %q", m.Ref(), name)
	}
	or, err := r.OpenObject(m, name)
	if err != nil {
		return nil, err
	}
	return or.ReadAll(ctx)
}
