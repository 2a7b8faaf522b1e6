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
	w.WatchCommits(func(id string, blob []byte) (backend.CommitInfo, error) {
		pid, err := ParseID(id)
		if err != nil {
			return backend.CommitInfo{}, err
		}
		m, err := r.decodeManifest(pid, blob)
		if err != nil {
			return backend.CommitInfo{}, err
		}
		chunks := make([]string, len(m.Chunks))
		for i, c := range m.Chunks {
			chunks[i] = c.ID
		}
		return backend.CommitInfo{Seq: m.Seq, Series: r.SeriesTag(m.Name), Chunks: chunks}, nil
	})
}

// SeriesTag stands for a checkpoint name where the name itself must not be
// shown (to an agent that holds no key): 32 hex digits of the
// repository's (keyed, when encrypted) hash of the name.
func (r *Repository) SeriesTag(name string) string {
	id := r.hashID([]byte("ckpt series\x00" + name))
	return id.String()[:32]
}
