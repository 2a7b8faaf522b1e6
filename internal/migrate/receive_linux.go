package migrate

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"time"

	"github.com/ckpt/ckpt/internal/image"
	"github.com/ckpt/ckpt/internal/restore"
)

// ReceiveStats describe a received stream.
type ReceiveStats struct {
	Hello    Hello
	Rounds   int
	Staged   uint64        // distinct pages staged (bytes)
	Received uint64        // page data received (bytes)
	Image    uint64        // bytes of memory in the restored image
	FinalAt  time.Time     // when the frozen pass began to arrive
	Restore  time.Duration // restore.Restore alone
}

// Receive reads a whole stream from r, staging pages as they arrive, and
// restores the tree once the stream is complete and consistent. A stream
// that is cut short, damaged or aborted by the sender restores nothing; a
// restore that fails leaves nothing behind (restore.Restore kills what it
// created). ctx ending before the restore starts restores nothing either.
func Receive(ctx context.Context, r io.Reader, opts restore.Options) (*restore.Result, *ReceiveStats, error) {
	st := &ReceiveStats{}
	tree, stage, err := receive(ctx, r, st)
	if err != nil {
		return nil, st, err
	}
	if err := ctx.Err(); err != nil {
		return nil, st, fmt.Errorf("the migration was cancelled before the restore: %w", err)
	}
	for _, p := range tree.Processes {
		rs, _ := stage.Ranges(p.PID)
		for _, rg := range rs {
			st.Image += rg.Len
		}
	}
	t := time.Now()
	res, err := restore.Restore(ctx, tree, stage, opts)
	st.Restore = time.Since(t)
	if err != nil {
		return nil, st, fmt.Errorf("restoring the migrated process %d: %w", tree.Root, err)
	}
	return res, st, nil
}

// receive reads and checks the stream; it returns the tree and the sealed
// stage.
func receive(ctx context.Context, r io.Reader, st *ReceiveStats) (*image.Tree, *Stage, error) {
	sr, err := NewReader(r)
	if err != nil {
		return nil, nil, err
	}
	stage := NewStage()
	var (
		tree   *image.Tree
		frozen bool
		pages  uint64
	)
	where := func() string {
		switch {
		case tree != nil:
			return "after the process image"
		case frozen:
			return "during the frozen pass"
		case st.Hello.Version == 0:
			return "before the hello"
		}
		return fmt.Sprintf("in pre-copy round %d", st.Rounds+1)
	}
	for {
		if err := ctx.Err(); err != nil {
			return nil, nil, err
		}
		typ, p, err := sr.Next()
		if err != nil {
			return nil, nil, fmt.Errorf("%s (%d MiB of pages received): %w", where(), pages>>20, err)
		}
		bad := func(format string, a ...any) error {
			return fmt.Errorf("%w: frame %d (%q) %s: %s", ErrStream, sr.Frames()-1, typ, where(), fmt.Sprintf(format, a...))
		}
		if st.Hello.Version == 0 && typ != FrameHello {
			return nil, nil, bad("the stream must start with a hello")
		}
		switch typ {
		case FrameHello:
			if st.Hello.Version != 0 {
				return nil, nil, bad("second hello")
			}
			if err := json.Unmarshal(p, &st.Hello); err != nil || st.Hello.Version == 0 {
				return nil, nil, bad("undecodable hello: %v", err)
			}
			if st.Hello.Version != 1 {
				return nil, nil, bad("stream version %d (this ckpt reads version 1)", st.Hello.Version)
			}
		case FramePages:
			if tree != nil {
				return nil, nil, bad("pages after the tree")
			}
			pid, addr, data, err := pageFrame(p)
			if err != nil {
				return nil, nil, err
			}
			stage.put(pid, addr, data, frozen)
			pages += uint64(len(data))
		case FrameRound:
			if frozen {
				return nil, nil, bad("pre-copy round after the freeze")
			}
			var ri RoundInfo
			if err := json.Unmarshal(p, &ri); err != nil {
				return nil, nil, bad("undecodable round: %v", err)
			}
			st.Rounds++
		case FrameFrozen:
			if frozen {
				return nil, nil, bad("second freeze")
			}
			frozen = true
			st.FinalAt = time.Now()
		case FrameReuse:
			if !frozen || tree != nil {
				return nil, nil, bad("reuse outside the frozen pass")
			}
			pid, addr, n, err := reuseFrame(p)
			if err != nil {
				return nil, nil, err
			}
			if err := stage.reuse(pid, addr, n); err != nil {
				return nil, nil, err
			}
		case FrameTree:
			if !frozen || tree != nil {
				return nil, nil, bad("tree outside the frozen pass")
			}
			t, err := image.Decode(p)
			if err != nil {
				return nil, nil, bad("%v", err)
			}
			tree = t
		case FrameAbort:
			var a struct{ Error string }
			_ = json.Unmarshal(p, &a)
			return nil, nil, fmt.Errorf("the source gave up %s: %s", where(), a.Error)
		case FrameEnd:
			if tree == nil {
				return nil, nil, bad("end without a tree")
			}
			var e End
			if err := json.Unmarshal(p, &e); err != nil {
				return nil, nil, bad("undecodable end: %v", err)
			}
			if e.Frames != sr.Frames()-1 || e.PageBytes != pages {
				return nil, nil, bad("the source sent %d frames and %d bytes of pages, %d frames and %d bytes arrived", e.Frames, e.PageBytes, sr.Frames()-1, pages)
			}
			if err := stage.seal(); err != nil {
				return nil, nil, err
			}
			st.Staged, st.Received = stage.Bytes(), pages
			return tree, stage, nil
		default:
			return nil, nil, bad("unknown frame type")
		}
	}
}
