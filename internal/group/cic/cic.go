// Package cic is communication-induced checkpointing with the index-based
// protocol of Briatico, Ciuffoletti and Simoncini (BCS), as a pure state
// machine. Processes checkpoint on their own (basic checkpoints); every
// message carries its sender's checkpoint index; a process that receives a
// message with a higher index than its own takes a forced checkpoint with
// that index before it delivers the message. Then, for every index i, the
// checkpoints made of each process's first checkpoint with an index of at
// least i form a consistent global checkpoint (no orphan message; messages
// in transit across it are logged by their senders): no checkpoint is useless
// (on a Z-cycle), and recovery needs no rollback search and has no domino
// effect.
package cic

// Process is one process's index state.
type Process struct {
	sn uint64
}

// Index is the index of the process's last checkpoint (0: the start).
func (p *Process) Index() uint64 { return p.sn }

// Checkpoint records a basic checkpoint and returns its index.
func (p *Process) Checkpoint() uint64 {
	p.sn++
	return p.sn
}

// Send returns the index to piggyback on a message.
func (p *Process) Send() uint64 { return p.sn }

// Receive takes a message's piggybacked index. When it returns true the
// process must take a forced checkpoint, with index Index(), before it
// delivers the message.
func (p *Process) Receive(sn uint64) (forced bool) {
	if sn > p.sn {
		p.sn = sn
		return true
	}
	return false
}

// Line returns, for index i, each process's checkpoint in the consistent
// global checkpoint of index i: the position in indexes[p] (the indexes of
// p's checkpoints, in order) of its first checkpoint with an index of at
// least i, or -1 when it has none (its current state belongs to the line).
func Line(indexes [][]uint64, i uint64) []int {
	out := make([]int, len(indexes))
	for p, ix := range indexes {
		out[p] = -1
		for k, x := range ix {
			if x >= i {
				out[p] = k
				break
			}
		}
	}
	return out
}
