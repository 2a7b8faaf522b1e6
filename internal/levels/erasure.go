package levels

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/ckpt/ckpt/internal/backend"
	"github.com/ckpt/ckpt/internal/repo"
	"github.com/klauspost/reedsolomon"
	"github.com/zeebo/blake3"
)

// Fragment layout (docs/FORMAT.md, "Levels"):
//
//	"CKPTFRG1"                     magic, 8 bytes
//	u32 LE H                        length of the header JSON
//	H bytes                         header JSON (FragmentHeader)
//	32 bytes                        BLAKE3 of the header JSON
//	Stripes × {
//	  Stripe bytes                  this fragment's shard of the stripe
//	  32 bytes                      BLAKE3(set ‖ u32 LE index ‖ u64 LE stripe ‖ shard)
//	}
//
// The data that is striped (the "pack") is
//
//	u32 LE N                        number of chunk blobs
//	N × { u8 L, L bytes chunk ID, u32 LE blob size }
//	the N chunk blobs, as stored, in that order
//	zeros up to Stripes × K × Stripe bytes
//
// Stripe s of the pack is K consecutive shards of Stripe bytes; fragment i
// < K holds data shard i of every stripe, fragment K+j parity shard j. The
// manifest and config blobs are small and travel whole in every header.
const fragmentMagic = "CKPTFRG1"

// FragmentVersion is the layout version this ckpt writes and reads.
const FragmentVersion = 1

// maxHeader bounds a fragment header (it holds a manifest blob).
const maxHeader = 64 << 20

// maxPackBlob bounds one chunk blob inside a pack.
const maxPackBlob = 80 << 20

// FragmentHeader is the JSON header of a fragment.
type FragmentHeader struct {
	Version    int       `json:"version"`
	Checkpoint string    `json:"checkpoint"`
	Set        string    `json:"set"` // random per encoding: fragments of one encoding share it
	Index      int       `json:"index"`
	K          int       `json:"k"`
	M          int       `json:"m"`
	Stripe     int       `json:"stripe"`
	Stripes    int64     `json:"stripes"`
	PackLen    int64     `json:"pack_len"`
	Seq        uint64    `json:"seq,omitempty"`
	Time       time.Time `json:"time"`
	Manifest   []byte    `json:"manifest"`
	Config     []byte    `json:"config"`
}

// FragmentName is the name of fragment index of checkpoint id.
func FragmentName(id string, index int) string { return id + "." + strconv.Itoa(index) }

// ParseFragmentName splits "<id>.<index>".
func ParseFragmentName(name string) (string, int, error) {
	id, idx, ok := strings.Cut(name, ".")
	i, err := strconv.Atoi(idx)
	if !ok || err != nil || i < 0 || i > 255 || len(id) != 64 || strings.Trim(id, "0123456789abcdef") != "" || strconv.Itoa(i) != idx {
		return "", 0, fmt.Errorf("invalid fragment name %q (want <64 hex digits>.<index>)", name)
	}
	return id, i, nil
}

// FragmentSink stores fragments (an agent, or the agent's own store).
type FragmentSink interface {
	PutFragment(ctx context.Context, name string, r io.Reader, size int64) error
}

// FragmentSource reads fragments.
type FragmentSource interface {
	GetFragment(ctx context.Context, name string) (io.ReadCloser, int64, error)
	ListFragments(ctx context.Context, id string, fn func(name string, size int64) error) error
}

// EncodeInput is what Encode needs about a checkpoint.
type EncodeInput struct {
	Src    backend.Backend // the store that holds it complete
	ID     string
	Chunks []string
	Seq    uint64
	Time   time.Time
	K, M   int
	Stripe int // shard bytes per stripe (upper bound)
	// Stall, when positive, drops a fragment whose sink takes none of a
	// stripe for this long: the fragments are fed in step, so a peer that
	// stalled (cut off, frozen) would otherwise hold every other up.
	Stall time.Duration
}

func shardSum(set string, index int, stripe int64, shard []byte) [32]byte {
	h := blake3.New()
	h.Write([]byte(set))
	var b [12]byte
	binary.LittleEndian.PutUint32(b[:4], uint32(index))
	binary.LittleEndian.PutUint64(b[4:], uint64(stripe))
	h.Write(b[:])
	h.Write(shard)
	var s [32]byte
	h.Sum(s[:0])
	return s
}

// Encode writes the K+M fragments of a checkpoint, fragment i to sinks[i],
// streaming: memory is (K+M) × Stripe plus one chunk blob, whatever the
// checkpoint's size. It returns which fragments were stored; a sink that
// fails (a peer that vanished mid-transfer) loses only its own fragment,
// and the error says which and why.
func Encode(ctx context.Context, in EncodeInput, sinks []FragmentSink) ([]bool, error) {
	n := in.K + in.M
	if len(sinks) != n {
		return nil, fmt.Errorf("erasure: %d sinks for k+m = %d", len(sinks), n)
	}
	enc, err := reedsolomon.New(in.K, in.M)
	if err != nil {
		return nil, fmt.Errorf("erasure: %w", err)
	}
	mb, err := in.Src.Load(ctx, backend.Handle{Kind: backend.Manifest, Name: in.ID})
	if err != nil {
		return nil, fmt.Errorf("erasure: reading manifest: %w", err)
	}
	cb, err := in.Src.Load(ctx, backend.Handle{Kind: backend.Config})
	if err != nil {
		return nil, fmt.Errorf("erasure: reading config: %w", err)
	}
	// The pack's index: chunk sizes as stored.
	var index bytes.Buffer
	binary.Write(&index, binary.LittleEndian, uint32(len(in.Chunks)))
	sizes := make([]uint32, len(in.Chunks))
	packLen := int64(4)
	for i, c := range in.Chunks {
		st, err := in.Src.Stat(ctx, backend.Handle{Kind: backend.Chunk, Name: c})
		if err != nil {
			return nil, fmt.Errorf("erasure: %w", err)
		}
		if len(c) > 255 || st.Size > maxPackBlob {
			return nil, fmt.Errorf("erasure: chunk %s: bad name or size %d", short(c), st.Size)
		}
		sizes[i] = uint32(st.Size)
		index.WriteByte(byte(len(c)))
		index.WriteString(c)
		binary.Write(&index, binary.LittleEndian, sizes[i])
		packLen += int64(1+len(c)+4) + st.Size
	}
	stripe := int64(in.Stripe)
	if per := (packLen + int64(in.K) - 1) / int64(in.K); per < stripe {
		stripe = (per + 63) &^ 63
	}
	stripes := (packLen + int64(in.K)*stripe - 1) / (int64(in.K) * stripe)
	var set [16]byte
	rand.Read(set[:])
	hdr := FragmentHeader{
		Version: FragmentVersion, Checkpoint: in.ID, Set: hex.EncodeToString(set[:]),
		K: in.K, M: in.M, Stripe: int(stripe), Stripes: stripes, PackLen: packLen,
		Seq: in.Seq, Time: in.Time.UTC(), Manifest: mb, Config: cb,
	}

	// One streaming upload per fragment.
	pws := make([]*io.PipeWriter, n)
	heads := make([][]byte, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	for i := range sinks {
		hdr.Index = i
		hj, _ := json.Marshal(hdr)
		if len(hj) > maxHeader {
			return nil, fmt.Errorf("erasure: manifest too large for a fragment header (%d bytes)", len(hj))
		}
		size := int64(8+4+len(hj)+32) + stripes*(stripe+32)
		pr, pw := io.Pipe()
		pws[i] = pw
		wg.Add(1)
		go func() {
			defer wg.Done()
			err := sinks[i].PutFragment(ctx, FragmentName(in.ID, i), pr, size)
			errs[i] = err
			pr.CloseWithError(fmt.Errorf("fragment %d: %w", i, errOr(err, io.ErrClosedPipe)))
		}()
		var pre bytes.Buffer
		pre.WriteString(fragmentMagic)
		binary.Write(&pre, binary.LittleEndian, uint32(len(hj)))
		pre.Write(hj)
		sum := blake3.Sum256(hj)
		pre.Write(sum[:])
		heads[i] = pre.Bytes()
	}
	feed(pws, in.Stall, func(i int) [][]byte { return [][]byte{heads[i]} })
	pack := io.MultiReader(bytes.NewReader(index.Bytes()), &blobReader{ctx: ctx, be: in.Src, names: in.Chunks, sizes: sizes})
	pack = bufio.NewReaderSize(pack, 1<<20)
	buf := make([]byte, int64(n)*stripe)
	shards := make([][]byte, n)
	for i := range shards {
		shards[i] = buf[int64(i)*stripe : int64(i+1)*stripe]
	}
	data := buf[:int64(in.K)*stripe]
	var encErr error
	for s := int64(0); s < stripes; s++ {
		got, err := io.ReadFull(pack, data)
		if err != nil && !(s == stripes-1 && (err == io.ErrUnexpectedEOF || err == io.EOF)) {
			encErr = fmt.Errorf("erasure: reading the checkpoint: %w", err)
			break
		}
		clear(data[got:])
		if err := enc.Encode(shards); err != nil {
			encErr = fmt.Errorf("erasure: %w", err)
			break
		}
		sums := make([][32]byte, n)
		for i, pw := range pws {
			if pw != nil {
				sums[i] = shardSum(hdr.Set, i, s, shards[i])
			}
		}
		alive := feed(pws, in.Stall, func(i int) [][]byte { return [][]byte{shards[i], sums[i][:]} })
		if alive < in.K {
			encErr = fmt.Errorf("erasure: fewer than k=%d fragments can still be stored", in.K)
			break
		}
	}
	for _, pw := range pws {
		if pw != nil {
			if encErr != nil {
				pw.CloseWithError(encErr)
			} else {
				pw.Close()
			}
		}
	}
	if encErr != nil {
		cancel()
	}
	wg.Wait()
	ok := make([]bool, n)
	var failed []string
	for i := range ok {
		ok[i] = errs[i] == nil && encErr == nil
		if errs[i] != nil && (encErr == nil || !errors.Is(errs[i], encErr)) {
			failed = append(failed, fmt.Sprintf("fragment %d: %v", i, errs[i]))
		}
	}
	if encErr != nil {
		if len(failed) > 0 {
			encErr = fmt.Errorf("%w: %s", encErr, strings.Join(failed, "; "))
		}
		return ok, encErr
	}
	if len(failed) > 0 {
		return ok, fmt.Errorf("erasure: %d of %d fragments not stored: %s", len(failed), n, strings.Join(failed, "; "))
	}
	return ok, nil
}

// feed writes parts(i) to every live fragment stream at once and waits
// for all of them. A stream that has not taken its parts within stall (0:
// no limit) is closed with an error and dropped, so that a stalled peer
// holds the others up for one stall timeout at most, whatever the number
// of stalled peers. Dropped streams become nil; it returns how many live.
func feed(pws []*io.PipeWriter, stall time.Duration, parts func(i int) [][]byte) int {
	var (
		mu     sync.Mutex
		done   = make([]bool, len(pws))
		failed = make([]bool, len(pws))
		wg     sync.WaitGroup
	)
	for i, pw := range pws {
		if pw == nil {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			for _, p := range parts(i) {
				if _, err := pw.Write(p); err != nil {
					mu.Lock()
					failed[i] = true
					mu.Unlock()
					return
				}
			}
			mu.Lock()
			done[i] = true
			mu.Unlock()
		}()
	}
	if stall > 0 {
		all := make(chan struct{})
		go func() { wg.Wait(); close(all) }()
		t := time.NewTimer(stall)
		select {
		case <-all:
			t.Stop()
		case <-t.C:
			mu.Lock()
			for i, pw := range pws {
				if pw != nil && !done[i] && !failed[i] {
					failed[i] = true
					pw.CloseWithError(fmt.Errorf("fragment %d: no progress for %v (the peer stalled or the network is cut off)", i, stall))
				}
			}
			mu.Unlock()
			<-all // a closed pipe ends its writer at once
		}
	} else {
		wg.Wait()
	}
	alive := 0
	for i := range pws {
		if pws[i] != nil && failed[i] {
			pws[i] = nil
		}
		if pws[i] != nil {
			alive++
		}
	}
	return alive
}

func errOr(err, def error) error {
	if err != nil {
		return err
	}
	return def
}

// blobReader reads chunk blobs one after another (one in memory at a time).
type blobReader struct {
	ctx   context.Context
	be    backend.Backend
	names []string
	sizes []uint32
	cur   []byte
	i     int
}

func (r *blobReader) Read(p []byte) (int, error) {
	for len(r.cur) == 0 {
		if r.i >= len(r.names) {
			return 0, io.EOF
		}
		b, err := r.be.Load(r.ctx, backend.Handle{Kind: backend.Chunk, Name: r.names[r.i]})
		if err != nil {
			return 0, err
		}
		if len(b) != int(r.sizes[r.i]) {
			return 0, fmt.Errorf("chunk %s changed size while being encoded", short(r.names[r.i]))
		}
		r.cur = b
		r.i++
	}
	n := copy(p, r.cur)
	r.cur = r.cur[n:]
	return n, nil
}

// ErrBadFragment is wrapped by errors for a fragment that fails its checks.
var ErrBadFragment = errors.New("damaged fragment")

// ReadFragmentHeader reads and checks a fragment's header.
func ReadFragmentHeader(r io.Reader) (*FragmentHeader, error) {
	var pre [12]byte
	if _, err := io.ReadFull(r, pre[:]); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadFragment, err)
	}
	if string(pre[:8]) != fragmentMagic {
		return nil, fmt.Errorf("%w: bad magic", ErrBadFragment)
	}
	hl := binary.LittleEndian.Uint32(pre[8:])
	if hl > maxHeader {
		return nil, fmt.Errorf("%w: header of %d bytes", ErrBadFragment, hl)
	}
	hb := make([]byte, int(hl)+32)
	if _, err := io.ReadFull(r, hb); err != nil {
		return nil, fmt.Errorf("%w: header: %v", ErrBadFragment, err)
	}
	if sum := blake3.Sum256(hb[:hl]); !bytes.Equal(sum[:], hb[hl:]) {
		return nil, fmt.Errorf("%w: header checksum mismatch", ErrBadFragment)
	}
	var h FragmentHeader
	if err := json.Unmarshal(hb[:hl], &h); err != nil {
		return nil, fmt.Errorf("%w: header: %v", ErrBadFragment, err)
	}
	if h.Version > FragmentVersion {
		return nil, fmt.Errorf("fragment version %d: newer format than this ckpt reads (%d)", h.Version, FragmentVersion)
	}
	if h.K < 1 || h.M < 0 || h.K+h.M > 256 || h.Index < 0 || h.Index >= h.K+h.M || h.Stripe < 1 || h.Stripe > 64<<20 ||
		h.Stripes < 0 || h.PackLen < 4 || h.PackLen > h.Stripes*int64(h.K)*int64(h.Stripe) {
		return nil, fmt.Errorf("%w: inconsistent header", ErrBadFragment)
	}
	return &h, nil
}

// Holder is a node that may hold fragments.
type Holder struct {
	Node string
	Src  FragmentSource
}

// FragmentRef is one fragment found on a holder, with its checked header.
type FragmentRef struct {
	Node   string
	Name   string
	Header *FragmentHeader
	src    FragmentSource
}

// FindFragments lists the fragments of id (every checkpoint when id is "")
// on every holder and reads their headers. Holders that cannot be reached
// and fragments whose header is damaged are reported in lost, not as an
// error.
func FindFragments(ctx context.Context, holders []Holder, id string) (found []FragmentRef, lost []string) {
	for _, h := range holders {
		var names []string
		err := h.Src.ListFragments(ctx, id, func(name string, size int64) error {
			names = append(names, name)
			return nil
		})
		if err != nil {
			lost = append(lost, fmt.Sprintf("node %s: %v", h.Node, err))
			continue
		}
		for _, name := range names {
			rc, _, err := h.Src.GetFragment(ctx, name)
			if err != nil {
				lost = append(lost, fmt.Sprintf("node %s fragment %s: %v", h.Node, name, err))
				continue
			}
			hdr, err := ReadFragmentHeader(rc)
			rc.Close()
			if err != nil {
				lost = append(lost, fmt.Sprintf("node %s fragment %s: %v", h.Node, name, err))
				continue
			}
			if fid, idx, _ := ParseFragmentName(name); fid != hdr.Checkpoint || idx != hdr.Index {
				lost = append(lost, fmt.Sprintf("node %s fragment %s: header names %s.%d", h.Node, name, short(hdr.Checkpoint), hdr.Index))
				continue
			}
			found = append(found, FragmentRef{Node: h.Node, Name: name, Header: hdr, src: h.Src})
		}
	}
	return found, lost
}

// DecodeStats says what Decode used and what it found damaged.
type DecodeStats struct {
	Fragments     int      // fragments read
	Nodes         []string // where they were
	DamagedShards int      // shards that failed their checksum (treated as lost)
	LostFragments []string // fragments dropped, and why
}

// bestSet picks the encoding (set) of checkpoint id with the most distinct
// fragment indexes, one fragment per index.
func bestSet(refs []FragmentRef, id string) []FragmentRef {
	bySet := map[string]map[int]FragmentRef{}
	for _, r := range refs {
		if r.Header.Checkpoint != id {
			continue
		}
		m := bySet[r.Header.Set]
		if m == nil {
			m = map[int]FragmentRef{}
			bySet[r.Header.Set] = m
		}
		m[r.Header.Index] = r
	}
	var best []FragmentRef
	for _, m := range bySet {
		if len(m) > len(best) {
			best = best[:0]
			for _, r := range m {
				best = append(best, r)
			}
		}
	}
	return best
}

// Decode rebuilds checkpoint id from any K intact fragments among refs and
// stores it in dst (config, chunks, Sync, manifest, Sync). A shard whose
// checksum fails is treated as lost for its stripe; a fragment that cannot
// be read any further is dropped. Memory is (K+M) × Stripe plus one chunk.
func Decode(ctx context.Context, refs []FragmentRef, id string, dst backend.Backend) (*FragmentHeader, DecodeStats, error) {
	var st DecodeStats
	set := bestSet(refs, id)
	if len(set) == 0 {
		return nil, st, fmt.Errorf("erasure: no fragments of %s: %w", short(id), backend.ErrNotExist)
	}
	h0 := set[0].Header
	if len(set) < h0.K {
		return nil, st, fmt.Errorf("erasure: only %d of the k=%d fragments needed for %s are left", len(set), h0.K, short(id))
	}
	n := h0.K + h0.M
	streams := make([]*bufio.Reader, n)
	var closers []io.Closer
	defer func() {
		for _, c := range closers {
			c.Close()
		}
	}()
	for _, r := range set {
		h := r.Header
		if h.K != h0.K || h.M != h0.M || h.Stripe != h0.Stripe || h.Stripes != h0.Stripes || h.PackLen != h0.PackLen {
			st.LostFragments = append(st.LostFragments, r.Name+" on "+r.Node+": header disagrees with the others")
			continue
		}
		rc, _, err := r.src.GetFragment(ctx, r.Name)
		if err != nil {
			st.LostFragments = append(st.LostFragments, r.Name+" on "+r.Node+": "+err.Error())
			continue
		}
		closers = append(closers, rc)
		br := bufio.NewReaderSize(rc, 256<<10)
		if _, err := ReadFragmentHeader(br); err != nil {
			st.LostFragments = append(st.LostFragments, r.Name+" on "+r.Node+": "+err.Error())
			continue
		}
		streams[h.Index] = br
		st.Fragments++
		st.Nodes = append(st.Nodes, r.Node)
	}
	enc, err := reedsolomon.New(h0.K, h0.M)
	if err != nil {
		return nil, st, err
	}
	if err := ensureConfig(ctx, dst, h0.Config); err != nil {
		return nil, st, err
	}
	unlock, err := dst.Lock(ctx, repo.RepositoryLock, false) // gc must not take the chunks before the manifest lands
	if err != nil {
		return nil, st, fmt.Errorf("waiting for gc on %s: %w", dst.Location(), err)
	}
	defer unlock.Unlock()
	pr, pw := io.Pipe()
	parseErr := make(chan error, 1)
	go func() {
		err := unpack(ctx, pr, dst)
		pr.CloseWithError(errOr(err, io.ErrClosedPipe))
		parseErr <- err
	}()
	stripe := int64(h0.Stripe)
	buf := make([]byte, int64(n)*stripe)
	bufs := make([][]byte, n)
	for i := range bufs {
		bufs[i] = buf[int64(i)*stripe : int64(i+1)*stripe]
	}
	shards := make([][]byte, n)
	var sum [32]byte
	left := h0.PackLen
	var decErr error
	for s := int64(0); s < h0.Stripes && left > 0; s++ {
		valid := 0
		for i := range shards {
			shards[i] = nil
			if streams[i] == nil {
				shards[i] = bufs[i][:0]
				continue
			}
			_, err := io.ReadFull(streams[i], bufs[i])
			if err == nil {
				_, err = io.ReadFull(streams[i], sum[:])
			}
			if err != nil {
				st.LostFragments = append(st.LostFragments, fmt.Sprintf("fragment %d: read failed at stripe %d: %v", i, s, err))
				streams[i] = nil
				shards[i] = bufs[i][:0]
				continue
			}
			if shardSum(h0.Set, i, s, bufs[i]) != sum {
				st.DamagedShards++
				shards[i] = bufs[i][:0]
				continue
			}
			shards[i] = bufs[i]
			valid++
		}
		if valid < h0.K {
			decErr = fmt.Errorf("erasure: stripe %d of %s: only %d intact fragments, %d needed", s, short(id), valid, h0.K)
			break
		}
		if err := enc.ReconstructData(shards); err != nil {
			decErr = fmt.Errorf("erasure: stripe %d: %w", s, err)
			break
		}
		for i := 0; i < h0.K && left > 0; i++ {
			d := shards[i]
			if int64(len(d)) > left {
				d = d[:left]
			}
			if _, err := pw.Write(d); err != nil {
				decErr = err
				break
			}
			left -= int64(len(d))
		}
		if decErr != nil {
			break
		}
	}
	if decErr != nil {
		pw.CloseWithError(decErr)
		<-parseErr
		return nil, st, decErr
	}
	pw.Close()
	if err := <-parseErr; err != nil {
		return nil, st, fmt.Errorf("erasure: unpacking %s: %w", short(id), err)
	}
	if err := dst.Sync(ctx); err != nil {
		return nil, st, err
	}
	if err := dst.Save(ctx, backend.Handle{Kind: backend.Manifest, Name: id}, h0.Manifest); err != nil {
		return nil, st, err
	}
	if err := dst.Sync(ctx); err != nil {
		return nil, st, err
	}
	return h0, st, nil
}

// unpack reads a pack and stores its chunk blobs in dst (those it lacks).
func unpack(ctx context.Context, r io.Reader, dst backend.Backend) error {
	br := bufio.NewReaderSize(r, 1<<20)
	var n uint32
	if err := binary.Read(br, binary.LittleEndian, &n); err != nil {
		return err
	}
	type ent struct {
		name string
		size uint32
	}
	ents := make([]ent, 0, min(n, 1<<20))
	for i := uint32(0); i < n; i++ {
		l, err := br.ReadByte()
		if err != nil {
			return err
		}
		name := make([]byte, l)
		if _, err := io.ReadFull(br, name); err != nil {
			return err
		}
		var size uint32
		if err := binary.Read(br, binary.LittleEndian, &size); err != nil {
			return err
		}
		if size > maxPackBlob {
			return fmt.Errorf("chunk %s of %d bytes in the pack", short(string(name)), size)
		}
		ents = append(ents, ent{string(name), size})
	}
	for _, e := range ents {
		b := make([]byte, e.size)
		if _, err := io.ReadFull(br, b); err != nil {
			return err
		}
		h := backend.Handle{Kind: backend.Chunk, Name: e.name}
		if _, err := dst.Stat(ctx, h); err == nil {
			continue
		}
		if err := dst.Save(ctx, h, b); err != nil {
			return err
		}
	}
	return nil
}
