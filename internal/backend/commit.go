package backend

// ManifestDecoder reads a manifest blob as stored (it may be sealed: the
// repository that supplies the decoder holds the key) and returns what a
// backend may be told of the checkpoint.
type ManifestDecoder func(id string, blob []byte) (CommitInfo, error)

// CommitInfo is what a CommitWatcher learns of a committed checkpoint:
// nothing secret (an encrypted repository's names stay inside it).
type CommitInfo struct {
	Seq uint64
	// Series stands for the checkpoint's name: equal names give equal
	// series (a keyed hash in an encrypted repository), so retention can
	// keep the newest N of a name without knowing it.
	Series string
	Chunks []string // the IDs of the chunks it references
}

// CommitWatcher is an optional interface of a Backend that acts on every
// committed checkpoint. The repository package hands such a backend a
// ManifestDecoder when it opens or creates a repository on it; the backend
// then calls the decoder for each manifest blob it saved once a Sync has
// made that blob durable (the commit point), and does what it must with
// the result.
//
// The agent backend (Agent) implements it: it tells the agent, with
// POST …/checkpoints/ID/committed, the sequence number and chunk list of
// each checkpoint a client committed, which the agent needs to move an
// encrypted checkpoint (whose manifest it cannot read) up the levels. So
// every writer (the library, ckpt run and dump, ckpt cp) notifies the
// agent, without knowing it.
type CommitWatcher interface {
	WatchCommits(ManifestDecoder)
}
