// Package heat owns the 2-D heat diffusion kernel that ckpt's example
// program and 'ckpt demo' checkpoint with the library: an explicit
// five-point stencil on an N×M grid of float64 with fixed (Dirichlet)
// edges, advanced a fixed number of steps. It is deterministic: the final
// grid, and so its hash, is bit-identical however often the run is killed
// and resumed from a checkpoint, and on any platform (no fused
// multiply-adds, no reductions whose order depends on scheduling).
package heat

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"math"
	"runtime"
	"sync"

	"github.com/ckpt/ckpt"
)

// Alpha is the diffusion number (α·Δt/Δx²); explicit schemes are stable
// up to 1/4 in two dimensions.
const Alpha = 0.2

// Config describes a run.
type Config struct {
	N, M  int   // grid rows and columns, at least 3 each
	Steps int64 // steps to reach
	// Every checkpoints after every Every steps, and after the last one;
	// 0 never checkpoints.
	Every int64
	// Progress, when set, is called after each step with the step number.
	Progress func(step int64)
}

// Result describes a finished run.
type Result struct {
	// Hash is the SHA-256 (hex) of the final grid: each cell's float64
	// bits, little-endian, row after row.
	Hash string
	// ResumedFrom is the step of the checkpoint the run resumed from; 0
	// for a fresh start.
	ResumedFrom int64
	Steps       int64 // the step reached (Config.Steps)
	Checkpoints int   // checkpoints this run took
	Restore     ckpt.RestoreInfo
}

// The names the run protects on the job.
const (
	gridName  = "heat.grid"
	stepName  = "heat.step"
	shapeName = "heat.shape"
)

// Run advances the simulation to cfg.Steps, resuming from job's newest
// checkpoint when there is one, and checkpointing on job every cfg.Every
// steps. job may be nil: then nothing is saved or restored (a reference
// run). Run waits for the last checkpoint's commit before it returns. When
// ctx ends, Run returns its error at the next step; the last checkpoint
// stays the point to resume from.
func Run(ctx context.Context, job *ckpt.Job, cfg Config) (Result, error) {
	var res Result
	if cfg.N < 3 || cfg.M < 3 {
		return res, fmt.Errorf("heat: grid %dx%d: both sides must be at least 3", cfg.N, cfg.M)
	}
	if cfg.Steps < 0 || cfg.Every < 0 {
		return res, errors.New("heat: negative steps or interval")
	}
	n, m := cfg.N, cfg.M
	grid := make([]float64, n*m)
	var step int64
	shape := [2]int64{int64(n), int64(m)}
	if job != nil {
		for name, v := range map[string]any{gridName: &grid, stepName: &step, shapeName: &shape} {
			if err := job.Protect(name, v); err != nil {
				return res, err
			}
		}
		info, err := job.Restore(ctx)
		switch {
		case errors.Is(err, ckpt.ErrNoCheckpoint):
			initial(grid, n, m)
		case err != nil:
			return res, fmt.Errorf("heat: %w", err)
		default:
			if shape != [2]int64{int64(n), int64(m)} || len(grid) != n*m {
				return res, fmt.Errorf("heat: the checkpoint is of a %dx%d grid, this run is %dx%d", shape[0], shape[1], n, m)
			}
			if step > cfg.Steps {
				return res, fmt.Errorf("heat: the checkpoint is at step %d, beyond the %d steps of this run", step, cfg.Steps)
			}
			res.ResumedFrom, res.Restore = step, info
		}
	} else {
		initial(grid, n, m)
	}
	next := make([]float64, n*m)
	for step < cfg.Steps {
		if err := ctx.Err(); err != nil {
			return res, err
		}
		advance(next, grid, n, m)
		grid, next = next, grid
		step++
		if cfg.Progress != nil {
			cfg.Progress(step)
		}
		if job != nil && cfg.Every > 0 && (step%cfg.Every == 0 || step == cfg.Steps) {
			if err := job.Checkpoint(ctx); err != nil {
				return res, fmt.Errorf("heat: checkpoint at step %d: %w", step, err)
			}
			res.Checkpoints++
		}
	}
	if job != nil {
		if err := job.Wait(); err != nil {
			return res, fmt.Errorf("heat: %w", err)
		}
	}
	res.Hash, res.Steps = Hash(grid), step
	return res, nil
}

// initial sets the starting temperatures: a hot top edge, a cold bottom
// one, and a few hot spots placed by a fixed pattern.
func initial(g []float64, n, m int) {
	clear(g)
	for j := range m {
		g[j] = 100
	}
	for k := range 7 {
		ci, cj := 1+(k*37+11)%(n-2), 1+(k*53+5)%(m-2)
		r := max(1, min(n, m)/16)
		for i := max(1, ci-r); i <= min(n-2, ci+r); i++ {
			for j := max(1, cj-r); j <= min(m-2, cj+r); j++ {
				g[i*m+j] = 50 + float64(k)*10
			}
		}
	}
}

// advance computes one step from src into dst. Rows are split across
// CPUs; every cell depends on src only, so the split does not change the
// result.
func advance(dst, src []float64, n, m int) {
	workers := min(runtime.GOMAXPROCS(0), n*m/(64<<10)+1)
	if workers <= 1 {
		rows(dst, src, n, m, 0, n)
		return
	}
	var wg sync.WaitGroup
	per := (n + workers - 1) / workers
	for lo := 0; lo < n; lo += per {
		hi := min(lo+per, n)
		wg.Go(func() { rows(dst, src, n, m, lo, hi) })
	}
	wg.Wait()
}

func rows(dst, src []float64, n, m, lo, hi int) {
	for i := lo; i < hi; i++ {
		r := i * m
		if i == 0 || i == n-1 {
			copy(dst[r:r+m], src[r:r+m])
			continue
		}
		dst[r], dst[r+m-1] = src[r], src[r+m-1]
		up, row, down := src[r-m:r], src[r:r+m], src[r+m:r+2*m]
		out := dst[r : r+m]
		for j := 1; j < m-1; j++ {
			c := row[j]
			// The explicit conversions forbid fused multiply-adds, which
			// would make results differ between platforms.
			lap := float64(float64(up[j]+down[j])+float64(row[j-1]+row[j+1])) - float64(4*c)
			out[j] = c + float64(Alpha*lap)
		}
	}
}

// Hash is the SHA-256 (hex) of a grid's float64 bits, little-endian.
func Hash(g []float64) string {
	h := sha256.New()
	var buf [8 << 10]byte
	for len(g) > 0 {
		k := min(len(g), len(buf)/8)
		for i, v := range g[:k] {
			binary.LittleEndian.PutUint64(buf[i*8:], math.Float64bits(v))
		}
		h.Write(buf[:k*8])
		g = g[k:]
	}
	return hex.EncodeToString(h.Sum(nil))
}
