// Package levels moves checkpoints between storage levels and back: L1
// local (the node's agent store), L2 a partner copy on another agent, L3
// Reed-Solomon k+m fragments spread over k+m agents, L4 durable storage (a
// directory or S3). It works on repository blobs as they are stored, so it
// needs no key: an encrypted checkpoint moves sealed.
//
// Level records (levels/<id>.<level>, plain JSON) say where a checkpoint is
// complete; the fragment layout is specified in docs/FORMAT.md ("Levels").
package levels

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/ckpt/ckpt/internal/backend"
	"github.com/ckpt/ckpt/internal/repo"
)

// Level names, fastest first.
const (
	Local   = "local"
	Partner = "partner"
	Erasure = "erasure"
	Durable = "durable"
)

// Order lists the levels fastest first.
var Order = []string{Local, Partner, Erasure, Durable}

// Record is the JSON of a levels/<id>.<level> blob.
type Record struct {
	Level    string    `json:"level"`
	Complete bool      `json:"complete"`
	Time     time.Time `json:"time"`
	Where    string    `json:"where,omitempty"`
	Seq      uint64    `json:"seq,omitempty"`
	Bytes    int64     `json:"bytes,omitempty"` // stored bytes moved to this level
	// Chunks (local records, and the partner record a holder keeps) lists
	// the chunk IDs of the checkpoint, so the agent can move an encrypted
	// checkpoint whose manifest it cannot read, and gc knows what it holds.
	Chunks []string `json:"chunks,omitempty"`
	// Series stands for the checkpoint's name (repo.SeriesTag): retention
	// per level keeps the newest of a series.
	Series string `json:"series,omitempty"`
	// Dropped: the checkpoint was complete at this level and its copy
	// there was removed by retention; it is not flushed there again.
	Dropped bool `json:"dropped,omitempty"`
	// Erasure only: the code and where each fragment went.
	K         int             `json:"k,omitempty"`
	M         int             `json:"m,omitempty"`
	Fragments []FragmentPlace `json:"fragments,omitempty"`
	// Error says why an attempt did not complete.
	Error string `json:"error,omitempty"`
	// Attempts counts the tries that failed in a row; Retry is when the
	// next one is due (absent: none is scheduled, the agent gave up until
	// it restarts or the checkpoint is noticed again).
	Attempts int        `json:"attempts,omitempty"`
	Retry    *time.Time `json:"retry,omitempty"`
}

// FragmentPlace is where fragment Index of a checkpoint went.
type FragmentPlace struct {
	Index int    `json:"index"`
	Node  string `json:"node"`
	OK    bool   `json:"ok"`
}

// RecordHandle names the record of checkpoint id at level.
func RecordHandle(id, level string) backend.Handle {
	return backend.Handle{Kind: backend.Level, Name: id + "." + level}
}

// SaveRecord stores rec for checkpoint id (replacing an older one) and
// makes it durable.
func SaveRecord(ctx context.Context, be backend.Backend, id string, rec *Record) error {
	b, err := json.Marshal(rec)
	if err != nil {
		return err
	}
	if err := be.Save(ctx, RecordHandle(id, rec.Level), b); err != nil {
		return fmt.Errorf("saving level record: %w", err)
	}
	return be.Sync(ctx)
}

// LoadRecord reads the record of checkpoint id at level; a missing one
// wraps backend.ErrNotExist.
func LoadRecord(ctx context.Context, be backend.Backend, id, level string) (*Record, error) {
	b, err := be.Load(ctx, RecordHandle(id, level))
	if err != nil {
		return nil, err
	}
	var r Record
	if err := json.Unmarshal(b, &r); err != nil {
		return nil, fmt.Errorf("level record %s.%s: %w", id, level, err)
	}
	return &r, nil
}

// ChunkIDs lists the chunk IDs a manifest references, in table order.
func ChunkIDs(m *repo.Manifest) []string {
	out := make([]string, len(m.Chunks))
	for i, c := range m.Chunks {
		out[i] = c.ID
	}
	return out
}
