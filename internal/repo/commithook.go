package repo

import "github.com/ckpt/ckpt/internal/backend"

// watchCommits hands a backend that acts on committed checkpoints
// (backend.CommitWatcher: the agent backend) a decoder for this
// repository's manifests, so every commit through this repository — by
// Writer.Commit or CopyTo — is told to it once its manifest is durable,
// encrypted or not. Other backends are left alone.
func (r *Repository) watchCommits() {
	w, ok := r.be.(backend.CommitWatcher)
	if !ok {
		return
	}
	w.WatchCommits(func(id string, blob []byte) (uint64, []string, error) {
		pid, err := ParseID(id)
		if err != nil {
			return 0, nil, err
		}
		m, err := r.decodeManifest(pid, blob)
		if err != nil {
			return 0, nil, err
		}
		chunks := make([]string, len(m.Chunks))
		for i, c := range m.Chunks {
			chunks[i] = c.ID
		}
		return m.Seq, chunks, nil
	})
}
