package repo

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"runtime"
	"sort"
	"sync"
	"sync/atomic"

	"github.com/ckpt/ckpt/internal/backend"
	"github.com/zeebo/xxh3"
)

// BlockSize is the granularity of change detection: one page.
const BlockSize = 4096

// blockRecordLen is the size of one block-table record: offset and xxh3.
const blockRecordLen = 16

// WriterOptions describe a checkpoint being written.
type WriterOptions struct {
	Name string
	Kind string
	// Parent, when set, makes the checkpoint incremental: blocks whose
	// hash equals the parent's at the same offset are not stored again.
	Parent *Manifest
	Codec  Codec // CodecAuto (the zero value): s2 where it pays
	Meta   map[string]string
	// Workers bounds concurrent chunk sealing; 0 means GOMAXPROCS.
	Workers int
	// Rewrite stores every new chunk even when a chunk with its ID is
	// already stored, replacing that copy. Callers set it after finding
	// damage: otherwise deduplication would make the new checkpoint refer
	// to the damaged copy of identical content.
	Rewrite bool
}

// WriteStats counts what a writer did.
type WriteStats struct {
	Bytes       int64 // object bytes written by the caller
	ReusedBytes int64 // bytes unchanged since the parent, not stored again
	NewChunks   int   // chunks stored
	NewBytes    int64 // plain bytes of the chunks stored
	StoredBytes int64 // their size on the backend (after compression)
	DedupChunks int   // chunks that were already stored
}

// Writer writes one checkpoint. Objects are written one at a time or
// concurrently (each ObjectWriter by one goroutine); Commit makes the
// checkpoint exist, atomically.
type Writer struct {
	r      *Repository
	opts   WriterOptions
	ctx    context.Context
	cancel context.CancelFunc
	unlock backend.Unlocker
	group  *byte // the backend sync group of its Saves (backend.WithSyncGroup)

	mu      sync.Mutex
	saved   []ID        // chunks it stored
	cached  map[ID]bool // chunks it reused because this process stored them
	table   []ChunkRef  // slots; filled by workers
	objects []*ObjectWriter
	reused  map[uint32]bool // table slots taken from the parent
	done    bool

	jobs chan chunkJob
	wg   sync.WaitGroup
	err  atomic.Pointer[error]

	// bufs are free chunk buffers, most recently freed last: reusing that
	// one first finds it in the CPU caches.
	bufMu   sync.Mutex
	bufs    [][]byte
	maxBufs int

	bytes, reusedBytes, newBytes, storedBytes atomic.Int64
	newChunks, dedupChunks                    atomic.Int64
}

type chunkJob struct {
	slot uint32
	data []byte
	// full is the pooled buffer data was filled in: chunkHeaderLen spare
	// bytes, then data (unless an append outgrew it).
	full []byte
	// work, when not nil, is what the worker does before sealing: fill
	// parts of data and compute block hashes (ObjectWriter.WriteFrom).
	work *chunkWork
}

// chunkWork is the part of a chunk's bytes and block hashes that
// WriteFrom left to the worker: the worker calls fills in order, then
// hashes the blocks of runs into sums, then signals done (also when the
// job is dropped).
type chunkWork struct {
	fills []fillReq
	runs  []hashRun
	sums  []uint64
	done  *sync.WaitGroup
}

// fillReq asks for n bytes of the object at off to be filled in at byte
// bufOff of the chunk.
type fillReq struct {
	bufOff, n int
	off       uint64
	fn        func(off uint64, b []byte) error
}

// hashRun is a run of n blocks starting at byte bufOff of a chunk, whose
// records start at index rec of the object's block table.
type hashRun struct {
	bufOff, n uint32
	rec       int
}

// run fills and hashes data.
func (cw *chunkWork) run(data []byte) error {
	for _, f := range cw.fills {
		if err := f.fn(f.off, data[f.bufOff:f.bufOff+f.n]); err != nil {
			return err
		}
	}
	k := 0
	for _, r := range cw.runs {
		for i := range r.n {
			o := int(r.bufOff) + int(i)*BlockSize
			cw.sums[k] = xxh3.Hash(data[o : o+BlockSize])
			k++
		}
	}
	return nil
}

// release reports the job done, whether or not its work was done.
func (j *chunkJob) release() {
	if j.work != nil {
		j.work.done.Done()
		j.work = nil
	}
}

// NewWriter starts a checkpoint. It holds the repository lock shared until
// Commit or Abort, so GC cannot remove chunks it is about to reference.
func (r *Repository) NewWriter(ctx context.Context, opts WriterOptions) (*Writer, error) {
	if err := ValidName(opts.Name); err != nil {
		return nil, err
	}
	if opts.Kind == "" {
		return nil, errors.New("writer: kind is required")
	}
	if opts.Workers <= 0 {
		opts.Workers = runtime.GOMAXPROCS(0)
	}
	unlock, err := r.be.Lock(ctx, repoLock, false)
	if err != nil {
		return nil, fmt.Errorf("waiting for gc to finish: %w", err)
	}
	wctx, cancel := context.WithCancel(ctx)
	group := new(byte)
	wctx = backend.WithSyncGroup(wctx, group)
	w := &Writer{
		group: group,
		r:     r, opts: opts, ctx: wctx, cancel: cancel, unlock: unlock,
		reused: map[uint32]bool{}, cached: map[ID]bool{},
		// A queue of a few chunks per worker: the reader (process memory,
		// a file) fills the next chunks while the workers seal, and the
		// workers do not run dry while it reads.
		jobs:    make(chan chunkJob, 2*opts.Workers+2),
		maxBufs: 3*opts.Workers + 6,
	}
	for i := 0; i < opts.Workers; i++ {
		w.wg.Add(1)
		go w.worker()
	}
	return w, nil
}

func (w *Writer) fail(err error) {
	w.err.CompareAndSwap(nil, &err)
	w.cancel()
}

func (w *Writer) firstErr() error {
	if p := w.err.Load(); p != nil {
		return *p
	}
	return nil
}

// getBuf returns a chunk buffer: chunkHeaderLen spare bytes (so a chunk
// stored as-is becomes its blob without a copy) and room for a chunk.
// Buffers are recycled, not bounded: memory is bounded by the jobs channel
// (backpressure on submit) plus one buffer per open ObjectWriter.
func (w *Writer) getBuf() ([]byte, error) {
	if err := w.firstErr(); err != nil {
		return nil, err
	}
	w.bufMu.Lock()
	if k := len(w.bufs); k > 0 {
		b := w.bufs[k-1]
		w.bufs = w.bufs[:k-1]
		w.bufMu.Unlock()
		return b, nil
	}
	w.bufMu.Unlock()
	// The data starts 64 bytes into the allocation (page-aligned for one
	// this large), the header right before it. Both kernel copies of a
	// chunk are then fast on x86: reading process memory into the buffer
	// (source page-aligned) and writing the blob to a file (destination
	// page-aligned). With the data at byte 12 instead, the first one ran 3×
	// slower: each load hit the 4 KiB alias of the store just before it.
	raw := make([]byte, bufAlign+w.r.cfg.ChunkSize)
	return raw[bufAlign-chunkHeaderLen:], nil
}

// bufAlign is the offset of a chunk buffer's data in its allocation.
const bufAlign = 64

func (w *Writer) putBuf(b []byte) {
	if cap(b) < chunkHeaderLen+w.r.cfg.ChunkSize {
		return
	}
	w.bufMu.Lock()
	if len(w.bufs) < w.maxBufs {
		w.bufs = append(w.bufs, b[:cap(b)])
	}
	w.bufMu.Unlock()
}

func (w *Writer) worker() {
	defer w.wg.Done()
	var sc chunkScratch
	for j := range w.jobs {
		if w.ctx.Err() == nil {
			var err error
			if j.work != nil {
				err = j.work.run(j.data)
			}
			if err == nil {
				err = w.store(j, &sc)
			}
			if err != nil {
				w.fail(err)
			}
		}
		j.release()
		w.putBuf(j.full)
	}
}

// store hashes, seals and saves one chunk unless it is already stored.
// Backends do not keep the data passed to Save (the local one writes it to
// a file, memory copies it), so the blob's buffers are reused at once.
func (w *Writer) store(j chunkJob, sc *chunkScratch) error {
	id := w.r.hashID(j.data)
	w.mu.Lock()
	w.table[j.slot] = ChunkRef{ID: id.String(), Len: uint32(len(j.data))}
	w.mu.Unlock()
	w.newBytes.Add(int64(len(j.data)))
	if !w.opts.Rewrite {
		if found, cached := w.r.lookupChunk(w.ctx, id); found {
			if cached {
				w.mu.Lock()
				w.cached[id] = true
				w.mu.Unlock()
			}
			w.dedupChunks.Add(1)
			return nil
		}
	}
	var head []byte
	if len(j.full) >= chunkHeaderLen+len(j.data) {
		head = j.full[:chunkHeaderLen+len(j.data)]
	}
	blob, _ := w.r.encodeChunk(id, j.data, w.opts.Codec, sc, head)
	if err := w.r.be.Save(w.ctx, backend.Handle{Kind: backend.Chunk, Name: id.String()}, blob); err != nil {
		return fmt.Errorf("storing chunk %s: %w", short(id.String()), err)
	}
	w.r.known.Store(id, struct{}{})
	w.mu.Lock()
	w.saved = append(w.saved, id)
	w.mu.Unlock()
	w.newChunks.Add(1)
	w.storedBytes.Add(int64(len(blob)))
	return nil
}

// hasChunk reports whether the chunk is stored (or being stored by this
// process).
func (r *Repository) hasChunk(ctx context.Context, id ID) bool {
	found, _ := r.lookupChunk(ctx, id)
	return found
}

// lookupChunk reports whether the chunk is stored, and whether that is
// known only from this process's cache of chunks it stored (cached): such
// a chunk may still be on its way to durable storage for another writer,
// which Commit checks after its Sync.
func (r *Repository) lookupChunk(ctx context.Context, id ID) (found, cached bool) {
	if _, ok := r.known.Load(id); ok {
		return true, true
	}
	h := backend.Handle{Kind: backend.Chunk, Name: id.String()}
	stat := r.be.Stat
	if rs, ok := r.be.(backend.ReuseStater); ok {
		stat = rs.StatReuse
	}
	if _, err := stat(ctx, h); err == nil {
		r.known.Store(id, struct{}{})
		return true, false
	}
	return false, false
}

// submit hands a filled buffer to the workers and returns its table slot.
// work, when not nil, is released in every case.
func (w *Writer) submit(data, full []byte, work *chunkWork) (uint32, error) {
	w.mu.Lock()
	slot := uint32(len(w.table))
	w.table = append(w.table, ChunkRef{})
	w.mu.Unlock()
	j := chunkJob{slot: slot, data: data, full: full, work: work}
	select {
	case w.jobs <- j:
		return slot, nil
	case <-w.ctx.Done():
		j.release()
		w.putBuf(full)
		if err := w.firstErr(); err != nil {
			return 0, err
		}
		return 0, w.ctx.Err()
	}
}

// parentSlot returns the table slot of a parent chunk, adding it if needed.
func (w *Writer) parentSlot(ref ChunkRef, cache map[uint32]uint32, pidx uint32) uint32 {
	if s, ok := cache[pidx]; ok {
		return s
	}
	w.mu.Lock()
	s := uint32(len(w.table))
	w.table = append(w.table, ref)
	w.reused[s] = true
	w.mu.Unlock()
	cache[pidx] = s
	return s
}

// ObjectWriter writes one object. Writes must come in ascending,
// non-overlapping offset order; gaps are holes.
type ObjectWriter struct {
	w      *Writer
	obj    Object
	end    uint64 // offset after the last write
	buf    []byte // chunk being filled
	full   []byte // the pooled buffer buf lives in
	bufExt []int  // indexes in obj.Extents waiting for buf's slot
	closed bool

	parent     *Object
	parentTab  []blockRec // parent's block table
	pcursor    int
	pslotCache map[uint32]uint32
	blocks     []byte // this object's block table records
	hashBlocks bool

	// Bytes written by WriteFrom are filled and block-hashed by the
	// workers: their records in blocks hold a zero hash until Close copies
	// the sums in.
	fills    []fillReq      // unfilled parts of the chunk being filled
	runs     []hashRun      // unhashed runs of the chunk being filled
	pending  []*chunkWork   // submitted, sums to be copied into blocks
	working  sync.WaitGroup // jobs of pending not done yet
	scratch  []byte         // WriteFrom's buffer where it cannot defer
	pscratch []parScratch   // writeFromParallel's buffers, one per CPU
}

type blockRec struct{ off, hash uint64 }

// Create starts an object. Objects of one checkpoint have unique names.
func (w *Writer) Create(name, typ string, attr map[string]string) (*ObjectWriter, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.done {
		return nil, errors.New("writer already committed")
	}
	for _, o := range w.objects {
		if o.obj.Name == name {
			return nil, fmt.Errorf("object %q written twice", name)
		}
	}
	ow := &ObjectWriter{w: w, obj: Object{Name: name, Type: typ, Attr: attr}, pslotCache: map[uint32]uint32{}, hashBlocks: true}
	if p := w.opts.Parent; p != nil {
		if po := p.Object(name); po != nil && po.Blocks != nil && po.Blocks.BlockSize == BlockSize {
			tab, err := w.r.readBlockTable(w.ctx, p, po)
			if err != nil {
				return nil, err
			}
			ow.parent, ow.parentTab = po, tab
		}
	}
	w.objects = append(w.objects, ow)
	return ow, nil
}

// Write appends p at the current end of the object.
func (ow *ObjectWriter) Write(p []byte) (int, error) {
	if err := ow.WriteAt(p, ow.end); err != nil {
		return 0, err
	}
	return len(p), nil
}

// WriteAt writes p at object offset off, which must not be below the end of
// the previous write. Incremental detection works on BlockSize blocks at
// offsets that are multiples of BlockSize.
func (ow *ObjectWriter) WriteAt(p []byte, off uint64) error {
	return ow.writeAt(p, off, nil)
}

// writeAt is WriteAt; sums, when not nil, holds the block hashes of p
// (off and len(p) block-aligned), computed by the caller.
func (ow *ObjectWriter) writeAt(p []byte, off uint64, sums []uint64) error {
	if ow.closed {
		return fmt.Errorf("object %q: write after close", ow.obj.Name)
	}
	if off < ow.end {
		return fmt.Errorf("object %q: write at %#x is below the previous end %#x", ow.obj.Name, off, ow.end)
	}
	if err := ow.w.firstErr(); err != nil {
		return err
	}
	ow.w.bytes.Add(int64(len(p)))
	for len(p) > 0 {
		n := BlockSize - int(off%BlockSize)
		if n > len(p) {
			n = len(p)
		}
		blk := p[:n]
		var h uint64
		aligned := off%BlockSize == 0
		if aligned && ow.hashBlocks {
			if sums != nil {
				h, sums = sums[0], sums[1:]
			} else {
				h = xxh3.Hash(blk)
			}
			ow.blocks = binary.LittleEndian.AppendUint64(ow.blocks, off)
			ow.blocks = binary.LittleEndian.AppendUint64(ow.blocks, h)
		}
		if aligned && ow.parent != nil {
			if ext, ok := ow.parentBlock(off, h, uint64(n)); ok {
				ow.addExtent(ext)
				ow.w.reusedBytes.Add(int64(n))
				p, off = p[n:], off+uint64(n)
				continue
			}
		}
		if err := ow.appendNew(blk, off); err != nil {
			return err
		}
		p, off = p[n:], off+uint64(n)
	}
	ow.end = off
	return nil
}

// ReuseParent declares the blocks of [off, off+n) unchanged since the
// parent checkpoint without passing their data: the object refers to the
// parent's stored bytes for them and keeps the parent's block hashes, so a
// caller that knows what changed (a dirty-page tracker) need not read the
// rest. off and n must be multiples of BlockSize, off must not be below the
// end of the previous write (the ascending order of WriteAt), and the
// parent's object must hold every block of the range. The bytes count as
// written and as reused in Stats.
func (ow *ObjectWriter) ReuseParent(off, n uint64) error {
	if ow.closed {
		return fmt.Errorf("object %q: reuse after close", ow.obj.Name)
	}
	if off%BlockSize != 0 || n%BlockSize != 0 {
		return fmt.Errorf("object %q: reused range %#x+%#x is not block-aligned", ow.obj.Name, off, n)
	}
	if off < ow.end {
		return fmt.Errorf("object %q: reuse at %#x is below the previous end %#x", ow.obj.Name, off, ow.end)
	}
	if ow.parent == nil {
		return fmt.Errorf("object %q: no parent object with block hashes to reuse", ow.obj.Name)
	}
	if err := ow.w.firstErr(); err != nil {
		return err
	}
	if n == 0 {
		return nil
	}
	t := ow.parentTab
	i := ow.pcursor
	if i >= len(t) || t[i].off > off {
		i = sort.Search(len(t), func(k int) bool { return t[k].off >= off })
	}
	for i < len(t) && t[i].off < off {
		i++
	}
	exts := ow.parent.Extents
	j := sort.Search(len(exts), func(k int) bool { return exts[k].Off+exts[k].Len > off })
	end := off + n
	for b := off; b < end; {
		if i >= len(t) || t[i].off != b {
			return fmt.Errorf("object %q: block %#x is not in the parent", ow.obj.Name, b)
		}
		for j < len(exts) && exts[j].Off+exts[j].Len <= b {
			j++
		}
		if j >= len(exts) || exts[j].Off > b || exts[j].Off+exts[j].Len < b+BlockSize {
			return fmt.Errorf("object %q: block %#x is not stored in the parent", ow.obj.Name, b)
		}
		// The run of blocks in this parent extent that the table lists.
		e := exts[j]
		runEnd := min(end, e.Off+e.Len) &^ (BlockSize - 1)
		run := b
		for run < runEnd && i < len(t) && t[i].off == run {
			if ow.hashBlocks {
				ow.blocks = binary.LittleEndian.AppendUint64(ow.blocks, run)
				ow.blocks = binary.LittleEndian.AppendUint64(ow.blocks, t[i].hash)
			}
			i++
			run += BlockSize
		}
		slot := ow.w.parentSlot(ow.w.opts.Parent.Chunks[e.Chunk], ow.pslotCache, e.Chunk)
		ow.addExtent(Extent{Off: b, Len: run - b, Chunk: slot, ChunkOff: e.ChunkOff + uint32(b-e.Off)})
		b = run
	}
	ow.pcursor = i
	ow.w.bytes.Add(int64(n))
	ow.w.reusedBytes.Add(int64(n))
	ow.end = end
	return nil
}

// parentBlock finds the parent's extent for an unchanged block.
func (ow *ObjectWriter) parentBlock(off, h, n uint64) (Extent, bool) {
	t := ow.parentTab
	i := ow.pcursor
	if i >= len(t) || t[i].off > off {
		i = sort.Search(len(t), func(k int) bool { return t[k].off >= off })
	}
	for i < len(t) && t[i].off < off {
		i++
	}
	ow.pcursor = i
	if i >= len(t) || t[i].off != off || t[i].hash != h {
		return Extent{}, false
	}
	exts := ow.parent.Extents
	j := sort.Search(len(exts), func(k int) bool { return exts[k].Off+exts[k].Len > off })
	if j >= len(exts) || exts[j].Off > off || exts[j].Off+exts[j].Len < off+n {
		return Extent{}, false
	}
	e := exts[j]
	pchunk := ow.w.opts.Parent.Chunks[e.Chunk]
	slot := ow.w.parentSlot(pchunk, ow.pslotCache, e.Chunk)
	return Extent{Off: off, Len: n, Chunk: slot, ChunkOff: e.ChunkOff + uint32(off-e.Off)}, true
}

// addExtent appends e, merging it into the previous extent when contiguous.
func (ow *ObjectWriter) addExtent(e Extent) {
	ex := ow.obj.Extents
	if k := len(ex) - 1; k >= 0 && ex[k].Chunk == e.Chunk && ex[k].Off+ex[k].Len == e.Off &&
		uint64(ex[k].ChunkOff)+ex[k].Len == uint64(e.ChunkOff) && !ow.pendingExt(k) {
		ex[k].Len += e.Len
		return
	}
	ow.obj.Extents = append(ex, e)
}

func (ow *ObjectWriter) pendingExt(k int) bool {
	return len(ow.bufExt) > 0 && ow.bufExt[len(ow.bufExt)-1] == k
}

// appendNew adds new bytes to the chunk being filled.
func (ow *ObjectWriter) appendNew(b []byte, off uint64) error {
	if ow.buf == nil {
		full, err := ow.w.getBuf()
		if err != nil {
			return err
		}
		ow.full, ow.buf = full, full[chunkHeaderLen:chunkHeaderLen]
	}
	coff := uint32(len(ow.buf))
	ow.buf = append(ow.buf, b...)
	ow.newExtent(off, uint64(len(b)), coff)
	if len(ow.buf) >= ow.w.r.cfg.ChunkSize {
		return ow.flush()
	}
	return nil
}

// newExtent records that object bytes [off, off+n) are at coff in the
// chunk being filled.
func (ow *ObjectWriter) newExtent(off, n uint64, coff uint32) {
	ex := ow.obj.Extents
	if k := len(ex) - 1; k >= 0 && ow.pendingExt(k) && ex[k].Off+ex[k].Len == off {
		ex[k].Len += n
	} else {
		ow.obj.Extents = append(ex, Extent{Off: off, Len: n, ChunkOff: coff})
		ow.bufExt = append(ow.bufExt, len(ow.obj.Extents)-1)
	}
}

// WriteFrom writes n bytes at object offset off (not below the end of the
// previous write, as WriteAt) that fill puts straight into the writer's
// chunk buffers, saving WriteAt's copy: fill is called with consecutive
// pieces of [off, off+n), each within one chunk, and must fill all of b or
// fail. fill must not keep b.
//
// Without a parent, for block-aligned off and n, fill is called later, by
// the worker that seals the chunk (so reading, hashing and storing one
// chunk happen on one CPU, the chunk in its cache, and several chunks are
// read at once), and the block hashes are computed there too. The caller
// must keep the source unchanged and fill callable until WaitFills or
// Close returns; an error of fill fails the writer and is returned by
// them. Otherwise (a parent to compare blocks with) fill is called before
// WriteFrom returns.
func (ow *ObjectWriter) WriteFrom(off uint64, n int, fill func(off uint64, b []byte) error) error {
	if ow.closed {
		return fmt.Errorf("object %q: write after close", ow.obj.Name)
	}
	if off < ow.end {
		return fmt.Errorf("object %q: write at %#x is below the previous end %#x", ow.obj.Name, off, ow.end)
	}
	if n < 0 {
		return fmt.Errorf("object %q: negative write length %d", ow.obj.Name, n)
	}
	cs := ow.w.r.cfg.ChunkSize
	if ow.parent != nil && ow.hashBlocks && off%BlockSize == 0 && n%BlockSize == 0 && n > pieceSpan {
		return ow.writeFromParallel(off, n, fill)
	}
	if ow.parent != nil || off%BlockSize != 0 || n%BlockSize != 0 {
		if ow.scratch == nil {
			ow.scratch = make([]byte, cs)
		}
		for n > 0 {
			k := min(n, cs)
			b := ow.scratch[:k]
			if err := fill(off, b); err != nil {
				return err
			}
			if err := ow.WriteAt(b, off); err != nil {
				return err
			}
			off, n = off+uint64(k), n-k
		}
		return nil
	}
	if err := ow.w.firstErr(); err != nil {
		return err
	}
	if len(ow.buf)%BlockSize != 0 {
		// Unaligned bytes from WriteAt: start a new chunk, so that the
		// workers hash whole blocks.
		if err := ow.flush(); err != nil {
			return err
		}
	}
	for n > 0 {
		if ow.buf == nil {
			full, err := ow.w.getBuf()
			if err != nil {
				return err
			}
			ow.full, ow.buf = full, full[chunkHeaderLen:chunkHeaderLen]
		}
		coff := len(ow.buf)
		k := min(n, cs-coff)
		ow.buf = ow.buf[:coff+k]
		ow.fills = append(ow.fills, fillReq{bufOff: coff, n: k, off: off, fn: fill})
		ow.newExtent(off, uint64(k), uint32(coff))
		if ow.hashBlocks {
			rec := len(ow.blocks) / blockRecordLen
			for a := off; a < off+uint64(k); a += BlockSize {
				ow.blocks = binary.LittleEndian.AppendUint64(ow.blocks, a)
				ow.blocks = binary.LittleEndian.AppendUint64(ow.blocks, 0)
			}
			nb := uint32(k / BlockSize)
			if r := len(ow.runs) - 1; r >= 0 && int(ow.runs[r].bufOff+ow.runs[r].n*BlockSize) == coff {
				ow.runs[r].n += nb
			} else {
				ow.runs = append(ow.runs, hashRun{bufOff: uint32(coff), n: nb, rec: rec})
			}
		}
		ow.w.bytes.Add(int64(k))
		off, n = off+uint64(k), n-k
		ow.end = off
		if len(ow.buf) >= cs {
			if err := ow.flush(); err != nil {
				return err
			}
		}
	}
	return nil
}

// writeFromParallel is WriteFrom with a parent to compare with: pieces of
// the range are read and their blocks hashed by one goroutine per CPU,
// then compared with the parent's block table in order, so that an
// incremental dump of a process that changed little (which is all reading
// and hashing) runs on every CPU, as a first dump does.
func (ow *ObjectWriter) writeFromParallel(off uint64, n int, fill func(off uint64, b []byte) error) error {
	par := min(runtime.GOMAXPROCS(0), (n+pieceSpan-1)/pieceSpan+1)
	for len(ow.pscratch) < par {
		ow.pscratch = append(ow.pscratch, parScratch{buf: make([]byte, pieceSpan), sums: make([]uint64, pieceSpan/BlockSize)})
	}
	errs := make([]error, par)
	end := off + uint64(n)
	for off < end {
		// Pieces end at multiples of pieceSpan: two goroutines reading
		// memory mapped by one page-table page contend for its lock on
		// every page (process_vm_readv pins page by page).
		pieces := 0
		for a := off; a < end && pieces < par; pieces++ {
			b := min(end, (a/pieceSpan+1)*pieceSpan)
			ps := &ow.pscratch[pieces]
			ps.off, ps.b = a, ps.buf[:b-a]
			a = b
		}
		var wg sync.WaitGroup
		for i := 0; i < pieces; i++ {
			ps := &ow.pscratch[i]
			work := func() {
				if errs[i] = fill(ps.off, ps.b); errs[i] != nil {
					return
				}
				for j := range len(ps.b) / BlockSize {
					ps.sums[j] = xxh3.Hash(ps.b[j*BlockSize : (j+1)*BlockSize])
				}
			}
			if i == pieces-1 {
				work() // this goroutine takes the last piece
				continue
			}
			wg.Add(1)
			go func() { defer wg.Done(); work() }()
		}
		wg.Wait()
		for i := 0; i < pieces; i++ {
			if errs[i] != nil {
				return errs[i]
			}
		}
		for i := 0; i < pieces; i++ {
			ps := &ow.pscratch[i]
			if err := ow.writeAt(ps.b, ps.off, ps.sums[:len(ps.b)/BlockSize]); err != nil {
				return err
			}
			off = ps.off + uint64(len(ps.b))
		}
	}
	return nil
}

// pieceSpan is the most writeFromParallel reads at once per goroutine: the
// memory one x86-64 page-table page maps.
const pieceSpan = 2 << 20

// parScratch is one piece's buffer and block hashes in writeFromParallel.
type parScratch struct {
	buf, b []byte
	off    uint64
	sums   []uint64
}

// WaitFills returns once every fill that WriteFrom deferred has been
// called (those of the chunk being filled are called here), with the
// first error of the writer.
func (ow *ObjectWriter) WaitFills() error {
	if len(ow.fills) > 0 {
		fills := ow.fills
		ow.fills = nil
		for _, f := range fills {
			if err := f.fn(f.off, ow.buf[f.bufOff:f.bufOff+f.n]); err != nil {
				ow.w.fail(err)
				return err
			}
		}
	}
	ow.working.Wait()
	return ow.w.firstErr()
}

// flush submits the chunk being filled.
func (ow *ObjectWriter) flush() error {
	if len(ow.buf) == 0 {
		return nil
	}
	var cw *chunkWork
	if len(ow.runs) > 0 || len(ow.fills) > 0 {
		nb := 0
		for _, r := range ow.runs {
			nb += int(r.n)
		}
		cw = &chunkWork{fills: ow.fills, runs: ow.runs, sums: make([]uint64, nb), done: &ow.working}
		ow.fills, ow.runs = nil, nil
		ow.working.Add(1)
		ow.pending = append(ow.pending, cw)
	}
	slot, err := ow.w.submit(ow.buf, ow.full, cw)
	ow.buf, ow.full = nil, nil
	if err != nil {
		return err
	}
	for _, k := range ow.bufExt {
		ow.obj.Extents[k].Chunk = slot
	}
	ow.bufExt = ow.bufExt[:0]
	return nil
}

// Close finishes the object: its last chunk and its block table.
func (ow *ObjectWriter) Close() error {
	if ow.closed {
		return nil
	}
	ow.closed = true
	if err := ow.flush(); err != nil {
		return err
	}
	if len(ow.pending) > 0 {
		if err := ow.WaitFills(); err != nil {
			return err
		}
		for _, cw := range ow.pending {
			k := 0
			for _, r := range cw.runs {
				for i := range int(r.n) {
					binary.LittleEndian.PutUint64(ow.blocks[(r.rec+i)*blockRecordLen+8:], cw.sums[k])
					k++
				}
			}
		}
		ow.pending = nil
	}
	ow.scratch = nil
	ow.pscratch = nil
	ow.obj.Size = ow.end
	if ow.hashBlocks && len(ow.blocks) > 0 {
		tab := &ObjectWriter{w: ow.w, pslotCache: map[uint32]uint32{}}
		if _, err := tab.Write(ow.blocks); err != nil {
			return err
		}
		ow.w.bytes.Add(-int64(len(ow.blocks))) // Stats.Bytes counts the caller's bytes only
		if err := tab.flush(); err != nil {
			return err
		}
		ow.obj.Blocks = &BlockTable{BlockSize: BlockSize, Count: uint64(len(ow.blocks) / blockRecordLen), Extents: tab.obj.Extents}
	}
	ow.blocks = nil
	ow.parentTab = nil
	return nil
}

// Stats reports progress so far.
func (w *Writer) Stats() WriteStats {
	return WriteStats{
		Bytes: w.bytes.Load(), ReusedBytes: w.reusedBytes.Load(),
		NewChunks: int(w.newChunks.Load()), NewBytes: w.newBytes.Load(),
		StoredBytes: w.storedBytes.Load(), DedupChunks: int(w.dedupChunks.Load()),
	}
}

// Abort abandons the checkpoint. Chunks already stored stay until GC.
func (w *Writer) Abort() {
	w.mu.Lock()
	if w.done {
		w.mu.Unlock()
		return
	}
	w.done = true
	w.mu.Unlock()
	w.fail(errors.New("aborted"))
	close(w.jobs)
	w.wg.Wait()
	w.forgetSaved()
	w.unlock.Unlock()
}

// forgetSaved drops the chunks this writer stored from the repository's
// cache of stored chunks: after a failed Sync or an abort they may not be
// durable (or may be gone), and a later writer must look for them instead
// of referring to them.
func (w *Writer) forgetSaved() {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, id := range w.saved {
		w.r.known.Delete(id)
	}
}

// Commit stores the manifest after every chunk is durable. The checkpoint
// exists once Commit returns nil; a crash before leaves the repository as it
// was (plus unreferenced chunks that GC removes).
func (w *Writer) Commit(ctx context.Context) (*Manifest, error) {
	w.mu.Lock()
	if w.done {
		w.mu.Unlock()
		return nil, errors.New("writer already committed or aborted")
	}
	objs := w.objects
	w.mu.Unlock()
	for _, ow := range objs {
		if err := ow.Close(); err != nil {
			w.Abort()
			return nil, err
		}
	}
	w.mu.Lock()
	w.done = true
	w.mu.Unlock()
	close(w.jobs)
	w.wg.Wait()
	defer w.unlock.Unlock()
	defer w.cancel()
	if err := w.firstErr(); err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	m := &Manifest{Name: w.opts.Name, Kind: w.opts.Kind, Meta: w.opts.Meta}
	if w.opts.Parent != nil {
		m.Parent = w.opts.Parent.ID()
	}
	m.Host, _ = os.Hostname()
	// Deduplicate the chunk table and check reused chunks still exist.
	remap := make([]uint32, len(w.table))
	first := map[string]uint32{}
	for i, c := range w.table {
		if c.ID == "" {
			return nil, fmt.Errorf("internal error: chunk slot %d never stored", i)
		}
		if j, ok := first[c.ID]; ok {
			remap[i] = j
			continue
		}
		if w.reused[uint32(i)] {
			id, _ := ParseID(c.ID)
			// A committed checkpoint's chunk is durable: a plain Stat.
			if _, known := w.r.known.Load(id); !known {
				if _, err := w.r.be.Stat(ctx, backend.Handle{Kind: backend.Chunk, Name: c.ID}); err != nil {
					return nil, &CorruptError{Checkpoint: w.opts.Parent.ID(), Name: w.opts.Parent.Ref(), Chunk: c.ID, Reason: "chunk of the parent checkpoint is missing"}
				}
				w.r.known.Store(id, struct{}{})
			}
		}
		first[c.ID] = uint32(len(m.Chunks))
		remap[i] = uint32(len(m.Chunks))
		m.Chunks = append(m.Chunks, c)
	}
	for _, ow := range objs {
		o := ow.obj
		for i := range o.Extents {
			o.Extents[i].Chunk = remap[o.Extents[i].Chunk]
		}
		if o.Blocks != nil {
			for i := range o.Blocks.Extents {
				o.Blocks.Extents[i].Chunk = remap[o.Blocks.Extents[i].Chunk]
			}
		}
		m.Objects = append(m.Objects, o)
	}
	if err := m.validate(); err != nil {
		return nil, fmt.Errorf("internal error: built an invalid manifest: %w", err)
	}
	if err := w.r.be.Sync(backend.WithSyncGroup(ctx, w.group)); err != nil {
		w.forgetSaved()
		return nil, fmt.Errorf("making chunks durable: %w", err)
	}
	// Chunks reused because another writer of this process stored them:
	// their Sync may have failed after this writer found them.
	for id := range w.cached {
		if _, err := w.r.be.Stat(ctx, backend.Handle{Kind: backend.Chunk, Name: id.String()}); err != nil {
			w.r.known.Delete(id)
			return nil, fmt.Errorf("chunk %s, stored by another checkpoint being written, is not in the repository: %w", short(id.String()), err)
		}
	}
	return m, w.r.commitManifest(ctx, m)
}

// commitManifest assigns the sequence number and stores the manifest.
func (r *Repository) commitManifest(ctx context.Context, m *Manifest) error {
	unlock, err := r.be.Lock(ctx, nameLock(m.Name), true)
	if err != nil {
		return fmt.Errorf("waiting for another checkpoint of %q: %w", m.Name, err)
	}
	defer unlock.Unlock()
	latest, err := r.newestOfName(ctx, m.Name)
	if err != nil {
		return err
	}
	m.Seq = 1
	m.Time = now()
	if latest != nil {
		m.Seq = latest.Seq + 1
		if latest.Meta[MetaIncomplete] != "" && m.Meta[MetaIncomplete] == "" && m.Parent == latest.ID() {
			// The checkpoint a pre-copy pass was a step towards takes
			// its number: NAME@SEQ counts checkpoints, not passes.
			m.Seq = latest.Seq
		}
		if !m.Time.After(latest.Time) {
			m.Time = latest.Time.Add(1) // keep time order equal to sequence order
		}
	}
	id, blob, err := r.encodeManifest(m)
	if err != nil {
		return err
	}
	if err := r.be.Save(ctx, backend.Handle{Kind: backend.Manifest, Name: id.String()}, blob); err != nil {
		return err
	}
	if err := r.be.Sync(ctx); err != nil {
		return fmt.Errorf("committing manifest: %w", err)
	}
	m.id = id.String()
	r.mu.Lock()
	r.manifests[m.id] = m
	r.mu.Unlock()
	return nil
}

// readBlockTable loads an object's block hashes.
func (r *Repository) readBlockTable(ctx context.Context, m *Manifest, o *Object) ([]blockRec, error) {
	rd := &ObjectReader{r: r, m: m, name: o.Name + " (block table)", exts: o.Blocks.Extents, size: o.Blocks.Count * blockRecordLen}
	buf := make([]byte, rd.size)
	if _, err := rd.ReadAt(ctx, buf, 0); err != nil {
		return nil, err
	}
	tab := make([]blockRec, o.Blocks.Count)
	for i := range tab {
		tab[i] = blockRec{binary.LittleEndian.Uint64(buf[i*16:]), binary.LittleEndian.Uint64(buf[i*16+8:])}
	}
	return tab, nil
}

// newestOfName is the checkpoint of name with the highest sequence number,
// incomplete ones included (they hold their sequence numbers too).
func (r *Repository) newestOfName(ctx context.Context, name string) (*Manifest, error) {
	ms, _, err := r.List(ctx)
	if err != nil {
		return nil, err
	}
	var newest *Manifest
	for _, m := range ms {
		if m.Name == name && (newest == nil || m.Seq > newest.Seq) {
			newest = m
		}
	}
	return newest, nil
}
