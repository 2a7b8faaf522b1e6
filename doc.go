// Package ckpt is ckpt's application-level checkpoint library: a Go program
// names the data that matters (Protect), saves it cheaply and often
// (Checkpoint, Maybe) and gets it back after a crash, preemption or migration
// (Restore). It owns the mapping between Go values and the objects of a
// library checkpoint in a ckpt repository (internal/repo); the repository
// owns chunking, deduplication, compression, encryption and atomic commit.
//
// A minimal loop:
//
//	job, err := ckpt.Open("simulation", ckpt.WithDir("/scratch/ckpt"))
//	if err != nil { ... }
//	defer job.Close()
//	grid := make([]float64, n)
//	var step int64
//	job.Protect("grid", &grid) // a *[]float64: Restore may resize it
//	job.Protect("step", &step)
//	if _, err := job.Restore(ctx); err != nil && !errors.Is(err, ckpt.ErrNoCheckpoint) { ... }
//	for ; step < steps; step++ {
//		advance(grid)
//		if step%100 == 0 {
//			if err := job.Checkpoint(ctx); err != nil { ... }
//		}
//	}
//
// # What can be protected
//
// Slices of fixed-size numbers ([]byte, []float64, []int32, []complex128, …,
// and slices of arrays or unpadded structs of them) are saved from their own
// memory without encoding. A slice value has a fixed length: Restore fills
// it in place and refuses a checkpoint of another length. A pointer to a
// slice (*[]float64) lets Restore allocate or resize it. A pointer to a
// fixed-size value (*int64, *[3]float64, a *struct of fixed-size fields) is
// saved as its little-endian encoding/binary form. Any value implementing
// both encoding.BinaryMarshaler and encoding.BinaryUnmarshaler uses them;
// any other pointer is saved with encoding/gob.
//
// # Asynchronous checkpoints
//
// By default Checkpoint copies the protected data into a staging buffer the
// Job keeps between checkpoints (the only extra copy) and returns; the
// checkpoint is committed to the repository in the background while the
// program computes. The error of a background commit is returned by the
// next Checkpoint, Maybe, Wait or Close. WithAsync(false) commits before
// Checkpoint returns and then needs no staging copy at all. Each checkpoint
// is incremental: 4 KiB blocks unchanged since the previous checkpoint are
// not stored again.
//
// docs/LIBRARY.md is the user guide; docs/FORMAT.md specifies the objects.
package ckpt
