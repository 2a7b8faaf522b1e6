package repo

import (
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"sync"

	"github.com/klauspost/compress/s2"
	"github.com/klauspost/compress/zstd"
	"github.com/zeebo/blake3"
)

// ID is a chunk's or manifest's address: BLAKE3-256 of its plain bytes,
// keyed in an encrypted repository.
type ID [32]byte

func (id ID) String() string { return hex.EncodeToString(id[:]) }

// ParseID parses a full 64-digit hex ID.
func ParseID(s string) (ID, error) {
	var id ID
	if len(s) != 64 {
		return id, fmt.Errorf("invalid ID %q: want 64 hex digits", s)
	}
	if _, err := hex.Decode(id[:], []byte(s)); err != nil {
		return id, fmt.Errorf("invalid ID %q: %w", s, err)
	}
	return id, nil
}

// Codec is how a chunk's payload is compressed.
type Codec uint8

const (
	// CodecAuto, the zero value, asks the writer to use s2 where it pays and
	// no compression elsewhere. It is never stored.
	CodecAuto Codec = 0
	CodecNone Codec = 1
	CodecS2   Codec = 2
	CodecZstd Codec = 3
)

func (c Codec) String() string {
	switch c {
	case CodecNone:
		return "none"
	case CodecS2:
		return "s2"
	case CodecZstd:
		return "zstd"
	case CodecAuto:
		return "auto"
	}
	return fmt.Sprintf("codec(%d)", uint8(c))
}

// ParseCodec parses "auto", "none", "s2" or "zstd".
func ParseCodec(s string) (Codec, error) {
	for _, c := range []Codec{CodecAuto, CodecNone, CodecS2, CodecZstd} {
		if c.String() == s {
			return c, nil
		}
	}
	return 0, fmt.Errorf("unknown codec %q (want auto, none, s2 or zstd)", s)
}

// Chunk blob layout (all integers little-endian):
//
//	0  4  magic "CKCH"
//	4  1  format version (1)
//	5  1  codec (1 none, 2 s2, 3 zstd)
//	6  1  flags (bit 0: sealed)
//	7  1  reserved, 0
//	8  4  plain length
//	12 -  sealed: 24-byte nonce, then AEAD(payload) with AD = header ‖ ID
//	      plain:  payload
const (
	chunkMagic     = "CKCH"
	chunkVersion   = 1
	chunkHeaderLen = 12
	flagSealed     = 1
	// MaxChunkLen bounds a chunk's plain length, so a corrupt header cannot
	// make a reader allocate without limit.
	MaxChunkLen = 64 << 20
)

// compressionPays is the largest stored/plain ratio for which a compressed
// payload is kept: below 7/8 the saved I/O outweighs the decode cost.
func compressionPays(stored, plain int) bool { return stored < plain-plain/8 }

var (
	zenc     *zstd.Encoder
	zdec     *zstd.Decoder
	zoneInit sync.Once
)

func zstdCodecs() (*zstd.Encoder, *zstd.Decoder) {
	zoneInit.Do(func() {
		var err error
		zenc, err = zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.SpeedFastest), zstd.WithEncoderConcurrency(1), zstd.WithLowerEncoderMem(true))
		if err != nil {
			panic(err) // only on invalid options
		}
		zdec, err = zstd.NewReader(nil, zstd.WithDecoderConcurrency(0), zstd.WithDecoderMaxMemory(MaxChunkLen))
		if err != nil {
			panic(err)
		}
	})
	return zenc, zdec
}

// hashID computes the address of plain bytes.
func (r *Repository) hashID(plain []byte) ID {
	if r.keys == nil {
		return blake3.Sum256(plain)
	}
	h, _ := blake3.NewKeyed(r.keys.id[:])
	h.Write(plain)
	var id ID
	h.Sum(id[:0])
	return id
}

// chunkScratch holds one writer worker's reusable buffers, so that
// encoding a chunk allocates nothing in the steady state: a checkpoint of
// gigabytes would otherwise make as much garbage, and the heap (and RSS)
// would grow by that much before the collector caught up.
type chunkScratch struct {
	blob   []byte
	sample []byte
}

// sampleLen and samples: how much of a large chunk auto mode compresses
// to decide whether compressing all of it pays.
const (
	sampleLen = 8 << 10
	samples   = 4
)

// worthCompressing guesses from evenly spread samples whether s2 pays on
// plain. Trying s2 on a whole incompressible chunk costs about as much as
// hashing it (random or already compressed data, the common case for
// numeric state); the samples cost a few percent.
func worthCompressing(plain []byte, sc *chunkScratch) bool {
	if len(plain) < 8*sampleLen {
		return true
	}
	if n := s2.MaxEncodedLen(sampleLen); cap(sc.sample) < n {
		sc.sample = make([]byte, n)
	}
	total, comp := 0, 0
	for k := range samples {
		off := (len(plain) - sampleLen) * k / (samples - 1)
		comp += len(s2.Encode(sc.sample, plain[off:off+sampleLen]))
		total += sampleLen
	}
	return compressionPays(comp, total)
}

// encodeChunk builds the chunk blob for plain bytes whose ID is id. The
// blob may live in sc (valid until the next call with sc) or, when head is
// not nil, in head: head[:chunkHeaderLen] are spare bytes right before
// plain (head[chunkHeaderLen:] is plain), so a stored-as-is chunk needs no
// copy. sc may be nil.
func (r *Repository) encodeChunk(id ID, plain []byte, codec Codec, sc *chunkScratch, head []byte) ([]byte, Codec) {
	if sc == nil {
		sc = &chunkScratch{}
	}
	overhead := 0
	if r.aead != nil {
		overhead = r.aead.NonceSize() + r.aead.Overhead()
	}
	payload := plain
	used := CodecNone
	switch codec {
	case CodecAuto, CodecS2:
		if codec == CodecS2 || worthCompressing(plain, sc) {
			// Compress straight into the blob buffer, after the header
			// (and the nonce: sealing needs the payload elsewhere, so it
			// goes at the end, past the room the sealed form needs).
			need := chunkHeaderLen + overhead + len(plain) + s2.MaxEncodedLen(len(plain))
			if cap(sc.blob) < need {
				sc.blob = make([]byte, need)
			}
			at := chunkHeaderLen
			if r.aead != nil {
				at = chunkHeaderLen + overhead + len(plain)
			}
			c := s2.Encode(sc.blob[at:at:cap(sc.blob)], plain)
			if compressionPays(len(c), len(plain)) {
				payload, used = c, CodecS2
			}
		}
	case CodecZstd:
		enc, _ := zstdCodecs()
		c := enc.EncodeAll(plain, nil)
		if compressionPays(len(c), len(plain)) {
			payload, used = c, CodecZstd
		}
	}
	var hdr [chunkHeaderLen]byte
	copy(hdr[:], chunkMagic)
	hdr[4] = chunkVersion
	hdr[5] = byte(used)
	binary.LittleEndian.PutUint32(hdr[8:], uint32(len(plain)))
	if r.aead == nil {
		if used == CodecNone && len(head) == chunkHeaderLen+len(plain) && len(plain) > 0 && &head[chunkHeaderLen] == &plain[0] {
			copy(head, hdr[:])
			return head, used
		}
		size := chunkHeaderLen + len(payload)
		if used == CodecS2 {
			// payload already sits at sc.blob[chunkHeaderLen:].
			copy(sc.blob, hdr[:])
			return sc.blob[:size], used
		}
		if cap(sc.blob) < size {
			sc.blob = make([]byte, size)
		}
		out := sc.blob[:size]
		copy(out, hdr[:])
		copy(out[chunkHeaderLen:], payload)
		return out, used
	}
	hdr[6] = flagSealed
	ns := r.aead.NonceSize()
	size := chunkHeaderLen + len(payload) + overhead
	if cap(sc.blob) < size {
		sc.blob = make([]byte, size) // not when payload is in sc.blob: room was made above
	}
	out := sc.blob[:chunkHeaderLen+ns]
	copy(out, hdr[:])
	nonce := out[chunkHeaderLen:]
	if _, err := rand.Read(nonce); err != nil {
		panic(err) // crypto/rand never fails on Linux
	}
	var ad [chunkHeaderLen + len(ID{})]byte
	copy(ad[:], hdr[:])
	copy(ad[chunkHeaderLen:], id[:])
	return r.aead.Seal(out, nonce, payload, ad[:]), used
}

var errChunkFormat = errors.New("not a chunk")

// decodeChunk checks and decodes a chunk blob, returning its plain bytes. The
// plain bytes are re-hashed: a chunk whose content does not match its address
// is an error.
func (r *Repository) decodeChunk(id ID, blob []byte) ([]byte, Codec, error) {
	return r.decodeChunkInto(id, blob, nil)
}

// decodeChunkInto is decodeChunk decompressing into dst when it has room
// (a reader's reused buffer); plain bytes stored uncompressed are returned
// as a slice of blob.
func (r *Repository) decodeChunkInto(id ID, blob, dst []byte) ([]byte, Codec, error) {
	if len(blob) < chunkHeaderLen || string(blob[:4]) != chunkMagic {
		return nil, 0, errChunkFormat
	}
	if blob[4] != chunkVersion {
		return nil, 0, fmt.Errorf("chunk format version %d unknown", blob[4])
	}
	codec := Codec(blob[5])
	flags := blob[6]
	plainLen := int(binary.LittleEndian.Uint32(blob[8:]))
	if plainLen > MaxChunkLen {
		return nil, codec, fmt.Errorf("plain length %d exceeds %d", plainLen, MaxChunkLen)
	}
	payload := blob[chunkHeaderLen:]
	sealed := flags&flagSealed != 0
	switch {
	case sealed && r.aead == nil:
		return nil, codec, errors.New("chunk is sealed but the repository has no key")
	case !sealed && r.aead != nil:
		return nil, codec, errors.New("chunk is not sealed in an encrypted repository")
	case sealed:
		ns := r.aead.NonceSize()
		if len(payload) < ns+r.aead.Overhead() {
			return nil, codec, errors.New("sealed chunk truncated")
		}
		ad := append(append([]byte(nil), blob[:chunkHeaderLen]...), id[:]...)
		var err error
		payload, err = r.aead.Open(nil, payload[:ns], payload[ns:], ad)
		if err != nil {
			return nil, codec, errors.New("authentication failed (tampered, truncated or wrong key)")
		}
	}
	var plain []byte
	switch codec {
	case CodecNone:
		plain = payload
	case CodecS2:
		n, err := s2.DecodedLen(payload)
		if err != nil || n != plainLen {
			return nil, codec, fmt.Errorf("s2 payload: decoded length %d, header says %d (%v)", n, plainLen, err)
		}
		if cap(dst) < n {
			dst = make([]byte, n)
		}
		if plain, err = s2.Decode(dst[:n], payload); err != nil {
			return nil, codec, fmt.Errorf("s2 payload: %w", err)
		}
	case CodecZstd:
		_, dec := zstdCodecs()
		var err error
		if cap(dst) < plainLen {
			dst = make([]byte, 0, plainLen)
		}
		if plain, err = dec.DecodeAll(payload, dst[:0]); err != nil {
			return nil, codec, fmt.Errorf("zstd payload: %w", err)
		}
	default:
		return nil, codec, fmt.Errorf("unknown codec %d", codec)
	}
	if len(plain) != plainLen {
		return nil, codec, fmt.Errorf("plain length %d, header says %d", len(plain), plainLen)
	}
	if r.hashID(plain) != id {
		return nil, codec, errors.New("content does not match its address (hash mismatch)")
	}
	return plain, codec, nil
}
