package migrate

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"time"

	"github.com/ckpt/ckpt/internal/dirty"
	"github.com/ckpt/ckpt/internal/dump"
	"github.com/ckpt/ckpt/internal/image"
	"github.com/ckpt/ckpt/internal/procfs"
	"golang.org/x/sys/unix"
)

// SendOptions control Send.
type SendOptions struct {
	// MaxRounds bounds the pre-copy rounds (default 8; 0 rounds with
	// NoPreCopy).
	MaxRounds int
	// SmallBytes: the pre-copy stops once a round copies at most this
	// much (default 8 MiB): the rest is sent while frozen.
	SmallBytes uint64
	// NoPreCopy sends everything while frozen.
	NoPreCopy bool
	// Log, if set, receives one line per round.
	Log func(format string, a ...any)
}

// SendStats describe a sent stream.
type SendStats struct {
	Rounds    []RoundInfo
	ArmStop   time.Duration // stop that created the write trackers
	PreCopied uint64        // bytes sent while the tree ran
	Final     uint64        // bytes of pages sent while frozen
	Reused    uint64        // bytes the image keeps from the pre-copy
	Frozen    time.Duration // from the freeze to the end of the stream
	Bytes     uint64        // page data in the stream
	// PreCopyNote says why there was no pre-copy, when one was wanted.
	PreCopyNote string
}

// Sent is a tree whose stream was written whole: it is frozen until
// Commit (the destination restored it: kill it here) or Abort (resume it).
type Sent struct {
	Tree  *image.Tree
	Stats SendStats
	h     *dump.Handle
	t0    time.Time
	once  sync.Once
}

// Send streams the tree rooted at pid to w: pre-copy rounds while the
// tree runs (until a round copies at most SmallBytes, stops shrinking, or
// MaxRounds), then a frozen pass with the pages written since, the tree
// and the end frame. On success the tree is left frozen for the caller to
// Commit or Abort once the destination answered; on error it is resumed
// untouched (trackers removed) and, where the stream still works, an
// abort frame tells the receiver why.
func Send(ctx context.Context, pid int, w io.Writer, opts SendOptions) (*Sent, error) {
	if opts.MaxRounds == 0 {
		opts.MaxRounds = 8
	}
	if opts.SmallBytes == 0 {
		opts.SmallBytes = 8 << 20
	}
	logf := opts.Log
	if logf == nil {
		logf = func(string, ...any) {}
	}
	sw := NewWriter(w)
	var uts unix.Utsname
	_ = unix.Uname(&uts)
	host, _ := os.Hostname()
	if err := sw.JSON(FrameHello, Hello{Version: 1, Root: pid, Kernel: unix.ByteSliceToString(uts.Release[:]), Host: host,
		PIDs: treeIDs(pid), Vdso: vdsoHash(pid)}); err != nil {
		return nil, fmt.Errorf("writing the stream: %w", err)
	}
	// The hello goes out now: a receiver that refuses it stops the
	// migration before the pre-copy.
	if err := sw.Flush(); err != nil {
		return nil, fmt.Errorf("writing the stream: %w (the process runs on)", err)
	}
	var st SendStats
	var pc *dump.PreCopy
	if !opts.NoPreCopy {
		var err error
		pc, err = dump.StartPreCopy(ctx, pid)
		switch {
		case err != nil && (ctx.Err() != nil || !errors.Is(err, dirty.ErrUnavailable)):
			sw.Abort(err)
			return nil, err
		case err != nil:
			st.PreCopyNote = err.Error()
			pc = nil
		default:
			defer pc.Close()
			st.ArmStop = pc.ArmStop
		}
	}
	if pc != nil {
		var prev uint64
		for round := 1; round <= opts.MaxRounds; round++ {
			t := time.Now()
			err := sendMaps(sw, pid)
			var rd dump.Round
			if err == nil {
				rd, err = pc.CopyRound(ctx, sw)
			}
			if err == nil {
				ri := RoundInfo{Round: round, Dirty: rd.Dirty, Copied: rd.Copied}
				st.Rounds = append(st.Rounds, ri)
				st.PreCopied += rd.Copied
				err = sw.JSON(FrameRound, ri)
				if err == nil {
					err = sw.Flush()
				}
			}
			if err != nil {
				sw.Abort(err)
				return nil, fmt.Errorf("pre-copy round %d: %w (the process runs on)", round, err)
			}
			logf("round %d: %d KiB written since the previous round, %d KiB sent in %v", round, rd.Dirty>>10, rd.Copied>>10, time.Since(t).Round(time.Millisecond))
			if round > 1 && (rd.Copied <= opts.SmallBytes || rd.Copied*10 > prev*9) {
				break // small enough, or no longer shrinking
			}
			prev = rd.Copied
		}
	}
	t0 := time.Now()
	// 'f' goes first: every page after it belongs to the frozen pass.
	if err := sw.Frame(FrameFrozen); err != nil {
		return nil, fmt.Errorf("writing the stream: %w (the process runs on)", err)
	}
	fw := &finalWriter{sw: sw}
	h, err := dump.Checkpoint(ctx, pid, dump.Options{PreCopy: pc}, fw)
	if err != nil {
		sw.Abort(err)
		return nil, err
	}
	st.Final, st.Reused = fw.final, fw.reused
	b, err := image.Encode(h.Tree)
	if err == nil {
		if err = sw.Frame(FrameTree, b); err == nil {
			err = sw.End()
		}
	}
	if err != nil {
		if rerr := h.Resume(); rerr != nil {
			return nil, errors.Join(fmt.Errorf("writing the stream: %w", err), fmt.Errorf("resuming the process: %w", rerr))
		}
		return nil, fmt.Errorf("writing the stream: %w (the process was resumed)", err)
	}
	st.Bytes = sw.PageBytes()
	st.Frozen = time.Since(t0)
	return &Sent{Tree: h.Tree, Stats: st, h: h, t0: t0}, nil
}

// sendMaps sends the root's private anonymous mappings ('m'): the
// receiver builds them while pages arrive. Only the root: a receiver
// builds memory ahead only for single-process trees.
func sendMaps(sw *Writer, pid int) error {
	b, err := procfs.Read(pid, "maps")
	if err != nil {
		return fmt.Errorf("process %d: %w", pid, err)
	}
	maps, err := procfs.ParseMaps(b)
	if err != nil {
		return err
	}
	m := Maps{PID: pid, Ranges: [][2]uint64{}}
	for _, e := range maps {
		if !e.Shared && (e.Path == "" || e.Path == "[heap]") {
			m.Ranges = append(m.Ranges, [2]uint64{e.Start, e.End})
		}
	}
	return sw.JSON(FrameMaps, m)
}

// finalWriter sends the pages of the frozen pass and counts them.
type finalWriter struct {
	sw            *Writer
	final, reused uint64
}

// WritePages implements image.PageWriter.
func (f *finalWriter) WritePages(pid int, addr uint64, b []byte) error {
	f.final += uint64(len(b))
	return f.sw.WritePages(pid, addr, b)
}

// ReusePages implements dump.ParentReuser.
func (f *finalWriter) ReusePages(pid int, addr, n uint64) error {
	f.reused += n
	return f.sw.ReusePages(pid, addr, n)
}

// Commit kills the source tree: the destination has restored it.
func (s *Sent) Commit() error {
	err := errors.New("migration already finished")
	s.once.Do(func() { err = s.h.Kill() })
	return err
}

// Abort resumes the source tree untouched.
func (s *Sent) Abort() error {
	err := errors.New("migration already finished")
	s.once.Do(func() { err = s.h.Resume() })
	return err
}

// Frozen is how long the source has been frozen so far (or was, once
// committed or aborted).
func (s *Sent) Frozen() time.Duration {
	if f := s.h.Frozen(); f > 0 {
		return f
	}
	return time.Since(s.t0)
}
