package repo

import (
	"crypto/rand"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"time"
)

// Manifest kinds.
const (
	KindLibrary = "library" // values protected by the Go library
	KindProcess = "process" // a process tree image
	KindGroup   = "group"   // a global checkpoint of a group of ranks
	KindRecords = "records" // a record-stream job's position and output
)

// Manifest describes one checkpoint. It is immutable once committed; its ID
// is the (keyed) BLAKE3 of its JSON body.
type Manifest struct {
	Name   string            `json:"name"`
	Seq    uint64            `json:"seq"`
	Time   time.Time         `json:"time"`
	Kind   string            `json:"kind"`
	Parent string            `json:"parent,omitempty"`
	Host   string            `json:"host,omitempty"`
	Meta   map[string]string `json:"meta,omitempty"`
	// Chunks is the table of chunks the extents refer to by index.
	Chunks []ChunkRef `json:"chunks"`
	// Objects are the named contents, in the order they were written.
	Objects []Object `json:"objects"`
	// Members of a group checkpoint: the ranks' own checkpoints.
	Members []Member `json:"members,omitempty"`

	id string // set when committed or loaded
}

// ChunkRef is one entry of a manifest's chunk table.
type ChunkRef struct {
	ID  string `json:"id"`
	Len uint32 `json:"len"` // plain length
}

// Object is a named, possibly sparse byte space. Extents map ranges of it to
// ranges of chunks; ranges not covered are holes (read as zeros).
type Object struct {
	Name string            `json:"name"`
	Type string            `json:"type,omitempty"`
	Size uint64            `json:"size"`
	Attr map[string]string `json:"attr,omitempty"`
	// Extents: [object offset, length, chunk index, chunk offset], ascending
	// and non-overlapping in object offset.
	Extents []Extent `json:"extents"`
	// Blocks is the per-block change-detection table: (offset, xxh3) pairs
	// for every BlockSize block written, stored as its own byte space.
	Blocks *BlockTable `json:"blocks,omitempty"`
}

// Extent maps Len bytes at object offset Off to chunk Chunk at ChunkOff.
type Extent struct {
	Off, Len uint64
	Chunk    uint32
	ChunkOff uint32
}

// MarshalJSON writes an extent as a compact 4-element array.
func (e Extent) MarshalJSON() ([]byte, error) {
	return json.Marshal([4]uint64{e.Off, e.Len, uint64(e.Chunk), uint64(e.ChunkOff)})
}

func (e *Extent) UnmarshalJSON(b []byte) error {
	var a [4]uint64
	if err := json.Unmarshal(b, &a); err != nil {
		return err
	}
	if a[2] > 1<<32-1 || a[3] > 1<<32-1 {
		return errors.New("extent chunk index or offset out of range")
	}
	*e = Extent{Off: a[0], Len: a[1], Chunk: uint32(a[2]), ChunkOff: uint32(a[3])}
	return nil
}

// BlockTable locates an object's block hashes: a byte space of 16-byte
// records (little-endian offset, xxh3-64), in ascending offset order.
type BlockTable struct {
	BlockSize uint32   `json:"block_size"`
	Count     uint64   `json:"count"`
	Extents   []Extent `json:"extents"`
}

// Member is one rank's checkpoint within a group checkpoint.
type Member struct {
	Rank       int    `json:"rank"`
	Node       string `json:"node,omitempty"`
	Checkpoint string `json:"checkpoint"`
}

// ID is the checkpoint's ID (64 hex digits); empty before commit.
func (m *Manifest) ID() string { return m.id }

// Ref is "name@seq".
func (m *Manifest) Ref() string { return fmt.Sprintf("%s@%d", m.Name, m.Seq) }

// Object returns the named object, or nil.
func (m *Manifest) Object(name string) *Object {
	for i := range m.Objects {
		if m.Objects[i].Name == name {
			return &m.Objects[i]
		}
	}
	return nil
}

// StoredBytes sums the plain lengths of the chunk table.
func (m *Manifest) StoredBytes() uint64 {
	var n uint64
	for _, c := range m.Chunks {
		n += uint64(c.Len)
	}
	return n
}

// validate checks the invariants every reader relies on, so a decoded
// manifest can be walked without bounds surprises.
func (m *Manifest) validate() error {
	if m.Name == "" {
		return errors.New("empty name")
	}
	if err := ValidName(m.Name); err != nil {
		return err
	}
	for i, c := range m.Chunks {
		if _, err := ParseID(c.ID); err != nil {
			return fmt.Errorf("chunk %d: %w", i, err)
		}
		if c.Len == 0 || c.Len > MaxChunkLen {
			return fmt.Errorf("chunk %d: length %d out of range", i, c.Len)
		}
	}
	seen := map[string]bool{}
	for _, o := range m.Objects {
		if seen[o.Name] {
			return fmt.Errorf("object %q appears twice", o.Name)
		}
		seen[o.Name] = true
		if err := m.checkExtents(o.Extents, o.Size); err != nil {
			return fmt.Errorf("object %q: %w", o.Name, err)
		}
		if b := o.Blocks; b != nil {
			if b.BlockSize == 0 || b.Count > 1<<40 {
				return fmt.Errorf("object %q: bad block table", o.Name)
			}
			if err := m.checkExtents(b.Extents, b.Count*blockRecordLen); err != nil {
				return fmt.Errorf("object %q block table: %w", o.Name, err)
			}
		}
	}
	return nil
}

func (m *Manifest) checkExtents(exts []Extent, size uint64) error {
	var end uint64
	for i, e := range exts {
		if e.Len == 0 {
			return fmt.Errorf("extent %d is empty", i)
		}
		if i > 0 && e.Off < end {
			return fmt.Errorf("extent %d overlaps or is out of order", i)
		}
		if e.Off+e.Len < e.Off || e.Off+e.Len > size {
			return fmt.Errorf("extent %d ends past the object size %d", i, size)
		}
		if int(e.Chunk) >= len(m.Chunks) {
			return fmt.Errorf("extent %d refers to chunk %d of %d", i, e.Chunk, len(m.Chunks))
		}
		if uint64(e.ChunkOff)+e.Len > uint64(m.Chunks[e.Chunk].Len) {
			return fmt.Errorf("extent %d reads past the end of chunk %d", i, e.Chunk)
		}
		end = e.Off + e.Len
	}
	return nil
}

// ValidName reports whether s can name checkpoints: 1–128 characters, no
// '@' (it separates the sequence number), '/', whitespace or control
// characters.
func ValidName(s string) error {
	if s == "" || len(s) > 128 {
		return fmt.Errorf("invalid name %q: must be 1 to 128 characters", s)
	}
	for _, r := range s {
		if r == '@' || r == '/' || r <= ' ' || r == 0x7f {
			return fmt.Errorf("invalid name %q: %q is not allowed", s, r)
		}
	}
	return nil
}

// Manifest blob layout (little-endian):
//
//	0  4  magic "CKMF"
//	4  2  format version (1)
//	6  2  flags (bit 0: sealed)
//	8  4  body length
//	12 -  body: zstd(JSON); sealed: 24-byte nonce ‖ AEAD(zstd(JSON)), AD = header
const (
	manifestMagic     = "CKMF"
	manifestVersion   = 1
	manifestHeaderLen = 12
	// MaxManifestLen bounds what a reader will decode.
	MaxManifestLen = 256 << 20
)

func (r *Repository) encodeManifest(m *Manifest) (ID, []byte, error) {
	js, err := json.Marshal(m)
	if err != nil {
		return ID{}, nil, err
	}
	id := r.hashID(js)
	enc, _ := zstdCodecs()
	body := enc.EncodeAll(js, nil)
	hdr := make([]byte, manifestHeaderLen)
	copy(hdr, manifestMagic)
	binary.LittleEndian.PutUint16(hdr[4:], manifestVersion)
	if r.aead != nil {
		binary.LittleEndian.PutUint16(hdr[6:], flagSealed)
		nonce := make([]byte, r.aead.NonceSize())
		if _, err := rand.Read(nonce); err != nil {
			return ID{}, nil, err
		}
		binary.LittleEndian.PutUint32(hdr[8:], uint32(len(nonce)+len(body)+r.aead.Overhead()))
		sealed := r.aead.Seal(nil, nonce, body, hdr)
		body = append(nonce, sealed...)
	} else {
		binary.LittleEndian.PutUint32(hdr[8:], uint32(len(body)))
	}
	return id, append(hdr, body...), nil
}

// decodeManifest parses a manifest blob and checks it matches id.
func (r *Repository) decodeManifest(id ID, blob []byte) (*Manifest, error) {
	if len(blob) < manifestHeaderLen || string(blob[:4]) != manifestMagic {
		return nil, errors.New("not a manifest (bad magic)")
	}
	if v := binary.LittleEndian.Uint16(blob[4:]); v != manifestVersion {
		if v > manifestVersion {
			return nil, fmt.Errorf("manifest format version %d: %w", v, ErrNewerFormat)
		}
		return nil, fmt.Errorf("manifest format version %d unknown", v)
	}
	flags := binary.LittleEndian.Uint16(blob[6:])
	n := binary.LittleEndian.Uint32(blob[8:])
	body := blob[manifestHeaderLen:]
	if uint64(n) != uint64(len(body)) {
		return nil, fmt.Errorf("body is %d bytes, header says %d (truncated?)", len(body), n)
	}
	sealed := flags&flagSealed != 0
	switch {
	case sealed && r.aead == nil:
		return nil, errors.New("manifest is sealed but the repository has no key")
	case !sealed && r.aead != nil:
		return nil, errors.New("manifest is not sealed in an encrypted repository")
	case sealed:
		ns := r.aead.NonceSize()
		if len(body) < ns+r.aead.Overhead() {
			return nil, errors.New("sealed manifest truncated")
		}
		var err error
		if body, err = r.aead.Open(nil, body[:ns], body[ns:], blob[:manifestHeaderLen]); err != nil {
			return nil, errors.New("authentication failed (tampered, truncated or wrong key)")
		}
	}
	_, dec := zstdCodecs()
	js, err := dec.DecodeAll(body, nil)
	if err != nil {
		return nil, fmt.Errorf("decompressing: %w", err)
	}
	if len(js) > MaxManifestLen {
		return nil, errors.New("manifest too large")
	}
	if r.hashID(js) != id {
		return nil, errors.New("content does not match its ID (hash mismatch)")
	}
	var m Manifest
	if err := json.Unmarshal(js, &m); err != nil {
		return nil, fmt.Errorf("decoding: %w", err)
	}
	if err := m.validate(); err != nil {
		return nil, err
	}
	m.id = id.String()
	return &m, nil
}

// sortManifests orders newest first: by time, then sequence.
func sortManifests(ms []*Manifest) {
	sort.SliceStable(ms, func(i, j int) bool {
		if !ms[i].Time.Equal(ms[j].Time) {
			return ms[i].Time.After(ms[j].Time)
		}
		return ms[i].Seq > ms[j].Seq
	})
}
