package backend

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"path"
	"strings"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
)

// S3 stores blobs as objects of an S3-compatible store under a prefix:
//
//	<prefix>/config
//	<prefix>/chunks/<id>
//	<prefix>/manifests/<id>
//	<prefix>/levels/<id>.<level>
//	<prefix>/locks/<name>/<holder>   lease objects (see Lock)
//
// A PUT is atomic and durable when it returns, so Sync has nothing to do.
type S3 struct {
	c      *minio.Client
	bucket string
	prefix string // "" or "dir/" (with the slash)
	loc    string
}

// S3Config locates a bucket.
type S3Config struct {
	Endpoint  string // host:port
	Secure    bool   // https
	Bucket    string
	Prefix    string
	AccessKey string
	SecretKey string
	Region    string
}

// ParseS3 parses "s3:http://host:port/bucket/prefix" or
// "s3:https://host/bucket/prefix". Credentials come from
// AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY.
func ParseS3(loc string) (S3Config, error) {
	rest, ok := strings.CutPrefix(loc, "s3:")
	if !ok {
		return S3Config{}, fmt.Errorf("%q is not an s3: location", loc)
	}
	u, err := url.Parse(rest)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return S3Config{}, fmt.Errorf("s3 location %q: want s3:http://HOST:PORT/BUCKET[/PREFIX] or s3:https://…", loc)
	}
	bucket, prefix, _ := strings.Cut(strings.Trim(u.Path, "/"), "/")
	if bucket == "" {
		return S3Config{}, fmt.Errorf("s3 location %q names no bucket", loc)
	}
	return S3Config{
		Endpoint: u.Host, Secure: u.Scheme == "https", Bucket: bucket, Prefix: prefix,
		AccessKey: os.Getenv("AWS_ACCESS_KEY_ID"), SecretKey: os.Getenv("AWS_SECRET_ACCESS_KEY"),
		Region: os.Getenv("AWS_DEFAULT_REGION"),
	}, nil
}

// OpenS3 connects to the bucket, creating it when create is set.
func OpenS3(ctx context.Context, cfg S3Config, create bool) (*S3, error) {
	c, err := minio.New(cfg.Endpoint, &minio.Options{
		Creds:  credentials.NewStaticV4(cfg.AccessKey, cfg.SecretKey, ""),
		Secure: cfg.Secure,
		Region: cfg.Region,
	})
	if err != nil {
		return nil, err
	}
	scheme := "http"
	if cfg.Secure {
		scheme = "https"
	}
	s := &S3{c: c, bucket: cfg.Bucket, loc: fmt.Sprintf("s3:%s://%s/%s", scheme, cfg.Endpoint, path.Join(cfg.Bucket, cfg.Prefix))}
	if p := strings.Trim(cfg.Prefix, "/"); p != "" {
		s.prefix = p + "/"
	}
	ok, err := c.BucketExists(ctx, cfg.Bucket)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", s.loc, err)
	}
	if !ok {
		if !create {
			return nil, fmt.Errorf("%s: bucket %q: %w", s.loc, cfg.Bucket, ErrNotExist)
		}
		if err := c.MakeBucket(ctx, cfg.Bucket, minio.MakeBucketOptions{Region: cfg.Region}); err != nil {
			return nil, fmt.Errorf("%s: creating bucket: %w", s.loc, err)
		}
	}
	return s, nil
}

func (s *S3) Location() string { return s.loc }

func (s *S3) key(h Handle) (string, error) {
	if err := checkName(h); err != nil {
		return "", err
	}
	switch h.Kind {
	case Config:
		return s.prefix + "config", nil
	case Chunk, Manifest, Level:
		return s.prefix + string(h.Kind) + "/" + h.Name, nil
	}
	return "", fmt.Errorf("unknown blob kind %q", h.Kind)
}

func isNoSuchKey(err error) bool {
	code := minio.ToErrorResponse(err).Code
	return code == "NoSuchKey" || code == "NotFound"
}

func (s *S3) Save(ctx context.Context, h Handle, data []byte) error {
	k, err := s.key(h)
	if err != nil {
		return err
	}
	opts := minio.PutObjectOptions{ContentType: "application/octet-stream", DisableMultipart: true}
	if h.Kind == Manifest {
		// Create-only (If-None-Match: *): a commit never overwrites another.
		// Manifests are content-addressed, so one already there under this
		// name holds these very bytes.
		opts.SetMatchETagExcept("*")
	}
	_, err = s.c.PutObject(ctx, s.bucket, k, bytes.NewReader(data), int64(len(data)), opts)
	if err != nil {
		if h.Kind == Manifest && minio.ToErrorResponse(err).StatusCode == 412 {
			return nil
		}
		return fmt.Errorf("saving %s to %s: %w", h, s.loc, err)
	}
	return nil
}

// Sync has nothing to do: a PUT that returned is durable and visible.
func (s *S3) Sync(ctx context.Context) error { return ctx.Err() }

func (s *S3) Load(ctx context.Context, h Handle) ([]byte, error) {
	k, err := s.key(h)
	if err != nil {
		return nil, err
	}
	obj, err := s.c.GetObject(ctx, s.bucket, k, minio.GetObjectOptions{})
	if err != nil {
		return nil, fmt.Errorf("loading %s from %s: %w", h, s.loc, err)
	}
	defer obj.Close()
	st, err := obj.Stat()
	if err != nil {
		if isNoSuchKey(err) {
			return nil, NotExist(s.loc, h)
		}
		return nil, fmt.Errorf("loading %s from %s: %w", h, s.loc, err)
	}
	b := make([]byte, st.Size)
	if _, err := io.ReadFull(obj, b); err != nil {
		return nil, fmt.Errorf("loading %s from %s: %w (short read)", h, s.loc, err)
	}
	return b, nil
}

func (s *S3) Stat(ctx context.Context, h Handle) (Info, error) {
	k, err := s.key(h)
	if err != nil {
		return Info{}, err
	}
	st, err := s.c.StatObject(ctx, s.bucket, k, minio.StatObjectOptions{})
	if err != nil {
		if isNoSuchKey(err) {
			return Info{}, NotExist(s.loc, h)
		}
		return Info{}, fmt.Errorf("stat %s on %s: %w", h, s.loc, err)
	}
	return Info{Handle: h, Size: st.Size, ModTime: st.LastModified}, nil
}

func (s *S3) Remove(ctx context.Context, h Handle) error {
	k, err := s.key(h)
	if err != nil {
		return err
	}
	if err := s.c.RemoveObject(ctx, s.bucket, k, minio.RemoveObjectOptions{}); err != nil && !isNoSuchKey(err) {
		return fmt.Errorf("removing %s from %s: %w", h, s.loc, err)
	}
	return nil
}

func (s *S3) List(ctx context.Context, k Kind, fn func(Info) error) error {
	prefix := s.prefix + string(k) + "/"
	if k == Config {
		in, err := s.Stat(ctx, Handle{Kind: Config})
		if errors.Is(err, ErrNotExist) {
			return nil
		} else if err != nil {
			return err
		}
		return fn(in)
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel() // stops the listing goroutine when fn fails
	for obj := range s.c.ListObjects(ctx, s.bucket, minio.ListObjectsOptions{Prefix: prefix, Recursive: true}) {
		if obj.Err != nil {
			return fmt.Errorf("listing %s on %s: %w", k, s.loc, obj.Err)
		}
		name := strings.TrimPrefix(obj.Key, prefix)
		if name == "" || strings.Contains(name, "/") {
			continue
		}
		if err := fn(Info{Handle: Handle{Kind: k, Name: name}, Size: obj.Size, ModTime: obj.LastModified}); err != nil {
			return err
		}
	}
	return nil
}

// lockLease is how long a lock object stays valid without a refresh: a
// holder that dies without unlocking blocks others at most this long.
var lockLease = 2 * time.Minute

type lockRecord struct {
	Exclusive bool      `json:"exclusive"`
	Host      string    `json:"host"`
	PID       int       `json:"pid"`
	Expires   time.Time `json:"expires"`
}

// Lock implements advisory locks with lease objects, as object stores have
// no flock: the holder writes locks/NAME/HOLDER and refreshes it; a taker
// writes its own, lists the others, and backs off when one that has not
// expired conflicts (exclusive against anything). Both sides of a race may
// back off; random jitter makes one win the next round.
func (s *S3) Lock(ctx context.Context, name string, exclusive bool) (Unlocker, error) {
	if name == "" || strings.ContainsAny(name, "/\\\x00") {
		return nil, fmt.Errorf("invalid lock name %q", name)
	}
	var rnd [8]byte
	rand.Read(rnd[:])
	dir := s.prefix + "locks/" + name + "/"
	mine := dir + hex.EncodeToString(rnd[:])
	host, _ := os.Hostname()
	put := func(ctx context.Context) error {
		b, _ := json.Marshal(lockRecord{Exclusive: exclusive, Host: host, PID: os.Getpid(), Expires: time.Now().Add(lockLease)})
		_, err := s.c.PutObject(ctx, s.bucket, mine, bytes.NewReader(b), int64(len(b)), minio.PutObjectOptions{DisableMultipart: true})
		return err
	}
	delay := 20 * time.Millisecond
	for {
		if err := put(ctx); err != nil {
			if ctx.Err() != nil { // the wait ended mid-request: the contract's ErrLocked
				s.c.RemoveObject(context.WithoutCancel(ctx), s.bucket, mine, minio.RemoveObjectOptions{})
				return nil, ErrLocked
			}
			return nil, fmt.Errorf("taking lock %s on %s: %w", name, s.loc, err)
		}
		conflict, err := s.conflicts(ctx, dir, mine, exclusive)
		if err != nil {
			if ctx.Err() != nil {
				s.c.RemoveObject(context.WithoutCancel(ctx), s.bucket, mine, minio.RemoveObjectOptions{})
				return nil, ErrLocked
			}
			return nil, err
		}
		if !conflict {
			break
		}
		s.c.RemoveObject(context.WithoutCancel(ctx), s.bucket, mine, minio.RemoveObjectOptions{})
		var j [1]byte
		rand.Read(j[:])
		select {
		case <-ctx.Done():
			return nil, ErrLocked
		case <-time.After(delay + time.Duration(j[0])*delay/256):
		}
		delay = min(2*delay, time.Second)
	}
	return holdLease(lockLease/3, func(ctx context.Context) { put(ctx) }, func() error {
		return s.c.RemoveObject(context.Background(), s.bucket, mine, minio.RemoveObjectOptions{})
	}), nil
}

func (s *S3) conflicts(ctx context.Context, dir, mine string, exclusive bool) (bool, error) {
	for obj := range s.c.ListObjects(ctx, s.bucket, minio.ListObjectsOptions{Prefix: dir, Recursive: true}) {
		if obj.Err != nil {
			return false, fmt.Errorf("listing locks on %s: %w", s.loc, obj.Err)
		}
		if obj.Key == mine {
			continue
		}
		o, err := s.c.GetObject(ctx, s.bucket, obj.Key, minio.GetObjectOptions{})
		if err != nil {
			continue
		}
		b, err := io.ReadAll(o)
		o.Close()
		var rec lockRecord
		if err != nil || json.Unmarshal(b, &rec) != nil {
			continue // vanished or being written: look again next round
		}
		if time.Now().After(rec.Expires) {
			continue // a dead holder's lease
		}
		if exclusive || rec.Exclusive {
			return true, nil
		}
	}
	return false, nil
}

func (s *S3) Close() error { return nil }
