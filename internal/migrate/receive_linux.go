package migrate

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/ckpt/ckpt/internal/image"
	"github.com/ckpt/ckpt/internal/restore"
)

// ReceiveStats describe a received stream.
type ReceiveStats struct {
	Hello   Hello
	Rounds  int
	Staged  uint64        // distinct pages staged (bytes)
	Image   uint64        // bytes of memory in the restored image
	Restore time.Duration // restore.Restore alone
	// Prestaged says whether the root's memory was built while it arrived
	// (restore.Prestage); PrestageNote why not.
	Prestaged    bool
	PrestageNote string
}

// Receive reads a whole stream from r, staging pages as they arrive, and
// restores the tree once the stream is complete and consistent. A stream
// that is cut short, damaged or aborted by the sender restores nothing; a
// restore that fails leaves nothing behind (restore.Restore kills what it
// created). ctx ending before the restore starts restores nothing either.
func Receive(ctx context.Context, r io.Reader, opts restore.Options) (*restore.Result, *ReceiveStats, error) {
	st := &ReceiveStats{}
	pre := &prestager{helper: opts.Helper}
	tree, stage, err := receive(ctx, r, st, pre)
	if err != nil {
		pre.ps.Close()
		return nil, st, err
	}
	if pre.ps != nil {
		if err := pre.ps.Err(); err != nil {
			st.PrestageNote = err.Error()
		}
		opts.Prestage = pre.ps
	} else {
		st.PrestageNote = pre.note
	}
	if err := ctx.Err(); err != nil {
		return nil, st, fmt.Errorf("the migration was cancelled before the restore: %w", err)
	}
	st.Image = stage.ImageBytes()
	t := time.Now()
	res, err := restore.Restore(ctx, tree, stage, opts)
	st.Restore = time.Since(t)
	if err != nil {
		return nil, st, fmt.Errorf("restoring the migrated process %d: %w", tree.Root, err)
	}
	st.Prestaged = pre.ps != nil && st.PrestageNote == ""
	for _, w := range res.Warnings {
		if strings.HasPrefix(w, "memory staged during the transfer not used") {
			st.Prestaged, st.PrestageNote = false, w
		}
	}
	return res, st, nil
}

// prestager builds the root's memory in a restore helper while the
// stream arrives. Without one (tests of the stream alone) receive neither
// checks the hello against this machine nor builds anything.
type prestager struct {
	helper string
	ps     *restore.Prestage
	note   string
}

func (p *prestager) start(root int) {
	ps, err := restore.StartPrestage(p.helper, root)
	if err != nil {
		p.note = err.Error()
		return
	}
	p.ps = ps
}

// receive reads and checks the stream; it returns the tree and the sealed
// stage.
func receive(ctx context.Context, r io.Reader, st *ReceiveStats, pre *prestager) (*image.Tree, *Stage, error) {
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
			if pre != nil {
				// A receiver that will restore refuses at once what the
				// restore would refuse after the transfer.
				if err := checkHello(st.Hello); err != nil {
					return nil, nil, fmt.Errorf("refused before the transfer: %w", err)
				}
				pre.start(st.Hello.Root)
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
			if pre != nil && pre.ps != nil && pid == st.Hello.Root {
				pre.ps.Write(addr, data)
			}
		case FrameMaps:
			var m Maps
			if err := json.Unmarshal(p, &m); err != nil {
				return nil, nil, bad("undecodable maps: %v", err)
			}
			if pre != nil && pre.ps != nil && m.PID == st.Hello.Root {
				rs := make([]image.Range, 0, len(m.Ranges))
				for _, r := range m.Ranges {
					if r[1] <= r[0] || r[0]%image.PageSize != 0 || r[1]%image.PageSize != 0 {
						return nil, nil, bad("mapping %#x-%#x", r[0], r[1])
					}
					rs = append(rs, image.Range{Addr: r[0], Len: r[1] - r[0]})
				}
				pre.ps.Map(rs)
			}
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
		case FrameReuse:
			if !frozen || tree != nil {
				return nil, nil, bad("reuse outside the frozen pass")
			}
			pid, addr, n, err := reuseFrame(p)
			if err != nil {
				return nil, nil, err
			}
			stage.reuse(pid, addr, n)
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
			st.Staged = stage.Bytes()
			return tree, stage, nil
		default:
			return nil, nil, bad("unknown frame type")
		}
	}
}
