// Package records owns the record-stream helper of the ckpt library: a
// batch job that reads input records (lines of a file, or any
// bufio.SplitFunc tokens) and appends output records to a file survives
// crashes with exactly-once output. Every checkpoint stores, in one atomic
// ckpt checkpoint, the input offset after the last completed record, the
// output file's length at that point (after an fsync) and whatever state the
// program protected on the same ckpt.Job. On restart the output is truncated
// to the committed length and the input resumes at the first record not
// committed, so no output record is lost or written twice.
//
//	job, _ := ckpt.Open("wordcount", ckpt.WithDir(dir))
//	defer job.Close()
//	var total int64
//	job.Protect("total", &total) // the program's own state, before records.Open
//	s, err := records.Open(ctx, job, records.Config{Input: "in.txt", Output: "out.txt"})
//	if err != nil { ... }
//	for s.Scan() {
//		total += int64(len(s.Record()))
//		fmt.Fprintf(s, "%d\n", total)
//	}
//	if err := s.Close(); err != nil { ... }
//
// A record is complete when the next Scan (or Checkpoint) is called: its
// output and state changes must be done by then. The output must be written only
// through the Stream, and only the Stream may write the output file.
package records

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/ckpt/ckpt"
)

// DefaultEvery is Config.Every's default.
const DefaultEvery = 10000

// positionName is the protected variable that holds the stream's position.
const positionName = "records.position"

// Config describes a record stream.
type Config struct {
	Input  string // input file; read from the committed offset
	Output string // output file; created, or truncated to the committed length
	// Split cuts the input into records (default bufio.ScanLines).
	// Offsets are counted from what it consumes, so records keep their
	// positions across restarts.
	Split bufio.SplitFunc
	// MaxRecord bounds one record's size (default 1 MiB).
	MaxRecord int
	// Every checkpoints after this many completed records (default
	// DefaultEvery); Interval also checkpoints when this much time has
	// passed since the last checkpoint (0: no time trigger).
	Every    int
	Interval time.Duration
}

// Position is how far a stream got.
type Position struct {
	Records   int64 // records completed
	InOffset  int64 // input offset after the last completed record
	OutLength int64 // output length after it
	Done      bool  // the whole input was processed
}

// position is the protected form of Position (fixed size, no padding).
type position struct {
	Records, InOffset, OutLength, Done int64
}

// Stream reads input records and writes output records with checkpoints
// that commit both together. It is not safe for concurrent use.
type Stream struct {
	ctx context.Context
	job *ckpt.Job
	cfg Config

	in      *os.File
	sc      *bufio.Scanner
	out     *os.File
	w       *bufio.Writer
	outLen  int64 // bytes written through the stream
	inBase  int64 // input offset where the scanner started
	scanned int64 // bytes the split function consumed
	recEnd  int64 // input offset after the current record
	pending bool  // a record was returned by Scan and is not complete yet

	pos       position // completed and protected
	committed position // of the last checkpoint
	resumed   Position
	isResumed bool
	since     int // records completed since the last checkpoint
	last      time.Time
	err       error
	closed    bool
}

// Open starts or resumes the stream. It protects the stream's position on
// job and restores job's newest checkpoint, so the program's own state must
// be protected on job before Open. With no checkpoint the output file is
// created empty.
func Open(ctx context.Context, job *ckpt.Job, cfg Config) (*Stream, error) {
	if cfg.Input == "" || cfg.Output == "" {
		return nil, errors.New("records: Input and Output are required")
	}
	if cfg.Split == nil {
		cfg.Split = bufio.ScanLines
	}
	if cfg.MaxRecord <= 0 {
		cfg.MaxRecord = 1 << 20
	}
	if cfg.Every <= 0 {
		cfg.Every = DefaultEvery
	}
	s := &Stream{ctx: ctx, job: job, cfg: cfg, last: time.Now()}
	if err := job.Protect(positionName, &s.pos); err != nil {
		return nil, err
	}
	fresh := false
	if _, err := job.Restore(ctx); errors.Is(err, ckpt.ErrNoCheckpoint) {
		fresh = true
	} else if err != nil {
		return nil, fmt.Errorf("records: %w", err)
	}
	if err := s.openFiles(fresh); err != nil {
		return nil, err
	}
	s.committed = s.pos
	if !fresh {
		s.resumed, s.isResumed = s.Position(), true
	}
	return s, nil
}

func (s *Stream) openFiles(fresh bool) error {
	flags := os.O_WRONLY | os.O_CREATE
	if fresh {
		flags |= os.O_TRUNC
	}
	out, err := os.OpenFile(s.cfg.Output, flags, 0o666)
	if err != nil {
		return fmt.Errorf("records: %w", err)
	}
	if !fresh {
		st, err := out.Stat()
		if err != nil {
			out.Close()
			return fmt.Errorf("records: %w", err)
		}
		if st.Size() < s.pos.OutLength {
			out.Close()
			return fmt.Errorf("records: output %s is %d bytes, but the checkpoint committed %d: it was changed or replaced since", s.cfg.Output, st.Size(), s.pos.OutLength)
		}
		// Drop what was written after the checkpoint: those records are
		// processed again.
		if err := out.Truncate(s.pos.OutLength); err != nil {
			out.Close()
			return fmt.Errorf("records: truncating output to the committed length: %w", err)
		}
	}
	if _, err := out.Seek(s.pos.OutLength, io.SeekStart); err != nil {
		out.Close()
		return fmt.Errorf("records: %w", err)
	}
	in, err := os.Open(s.cfg.Input)
	if err != nil {
		out.Close()
		return fmt.Errorf("records: %w", err)
	}
	if st, err := in.Stat(); err == nil && st.Mode().IsRegular() && st.Size() < s.pos.InOffset {
		in.Close()
		out.Close()
		return fmt.Errorf("records: input %s is %d bytes, but the checkpoint is at offset %d: it was changed or replaced since", s.cfg.Input, st.Size(), s.pos.InOffset)
	}
	if _, err := in.Seek(s.pos.InOffset, io.SeekStart); err != nil {
		in.Close()
		out.Close()
		return fmt.Errorf("records: seeking input: %w", err)
	}
	s.in, s.out = in, out
	s.w = bufio.NewWriterSize(out, 256<<10)
	s.outLen = s.pos.OutLength
	s.inBase, s.recEnd = s.pos.InOffset, s.pos.InOffset
	s.sc = bufio.NewScanner(in)
	s.sc.Buffer(make([]byte, 0, min(64<<10, s.cfg.MaxRecord)), s.cfg.MaxRecord)
	s.sc.Split(func(data []byte, atEOF bool) (int, []byte, error) {
		adv, tok, err := s.cfg.Split(data, atEOF)
		if adv > 0 {
			s.scanned += int64(adv)
		}
		return adv, tok, err
	})
	return nil
}

// Resumed reports where the stream resumed, and false for a fresh start.
func (s *Stream) Resumed() (Position, bool) { return s.resumed, s.isResumed }

// Position reports the completed position (what the next checkpoint
// commits).
func (s *Stream) Position() Position { return s.pos.public() }

func (p position) public() Position {
	return Position{Records: p.Records, InOffset: p.InOffset, OutLength: p.OutLength, Done: p.Done != 0}
}

// complete marks the record returned by the last Scan as done.
func (s *Stream) complete() {
	if !s.pending {
		return
	}
	s.pending = false
	s.pos.Records++
	s.pos.InOffset = s.recEnd
	s.pos.OutLength = s.outLen
	s.since++
}

// Scan completes the previous record, advances to the next one and
// checkpoints when due. It returns false at the end of the input (after a
// final checkpoint that marks the stream done) or on an error (see Err).
func (s *Stream) Scan() bool {
	if s.err != nil || s.closed || s.pos.Done != 0 {
		return false
	}
	s.complete()
	if !s.sc.Scan() {
		if err := s.sc.Err(); err != nil {
			s.err = fmt.Errorf("records: reading %s at offset %d: %w", s.cfg.Input, s.recEnd, err)
			return false
		}
		s.pos.Done = 1
		if s.err = s.checkpoint(); s.err == nil {
			s.err = s.job.Wait()
		}
		return false
	}
	// Reading ahead changes nothing a checkpoint holds: it commits the
	// completed position, output and state only.
	if s.since >= s.cfg.Every || s.cfg.Interval > 0 && s.since > 0 && time.Since(s.last) >= s.cfg.Interval {
		if s.err = s.checkpoint(); s.err != nil {
			return false
		}
	}
	s.pending = true
	s.recEnd = s.inBase + s.scanned
	return true
}

// Record is the current record (valid until the next Scan).
func (s *Stream) Record() []byte { return s.sc.Bytes() }

// Text is the current record as a string.
func (s *Stream) Text() string { return s.sc.Text() }

// Err is the error that stopped Scan, if any.
func (s *Stream) Err() error { return s.err }

// Write appends output for the current record.
func (s *Stream) Write(p []byte) (int, error) {
	if s.closed {
		return 0, errors.New("records: write after Close")
	}
	n, err := s.w.Write(p)
	s.outLen += int64(n)
	return n, err
}

// WriteString appends output for the current record.
func (s *Stream) WriteString(str string) (int, error) {
	if s.closed {
		return 0, errors.New("records: write after Close")
	}
	n, err := s.w.WriteString(str)
	s.outLen += int64(n)
	return n, err
}

// Checkpoint completes the current record (its output and state changes
// must be done) and checkpoints now. Scan checkpoints by itself every Every
// records or Interval; call Checkpoint before leaving the loop early to keep
// the progress made since.
func (s *Stream) Checkpoint() error {
	if s.err != nil {
		return s.err
	}
	if s.closed {
		return errors.New("records: checkpoint after Close")
	}
	s.complete()
	return s.checkpoint()
}

// checkpoint makes the output durable up to the completed length, then
// checkpoints the job: the output a checkpoint refers to is on disk before
// the checkpoint can exist.
func (s *Stream) checkpoint() error {
	if err := s.w.Flush(); err != nil {
		return fmt.Errorf("records: writing %s: %w", s.cfg.Output, err)
	}
	if err := s.out.Sync(); err != nil {
		return fmt.Errorf("records: syncing %s: %w", s.cfg.Output, err)
	}
	if err := s.job.Checkpoint(s.ctx); err != nil {
		return err
	}
	s.committed = s.pos
	s.since, s.last = 0, time.Now()
	return nil
}

// Committed reports the position of the last checkpoint: where the next
// run resumes.
func (s *Stream) Committed() Position { return s.committed.public() }

// Close waits for the last checkpoint's commit and closes the files. It
// commits nothing new: a record returned by Scan and not followed by
// another Scan or by Checkpoint is not complete (the program's state may
// hold part of it), so it and every record after the last checkpoint are
// processed again by the next run. The output file is cut back to what the
// last checkpoint committed. Close does not close the job.
func (s *Stream) Close() error {
	if s.closed {
		return nil
	}
	s.closed = true
	err := s.job.Wait()
	if s.pos.Done == 0 {
		if terr := s.out.Truncate(s.committed.OutLength); err == nil && terr != nil {
			err = fmt.Errorf("records: %w", terr)
		}
	}
	if cerr := s.out.Close(); err == nil && cerr != nil {
		err = fmt.Errorf("records: %w", cerr)
	}
	s.in.Close()
	s.job.Unprotect(positionName)
	if err == nil {
		err = s.err
	}
	return err
}
