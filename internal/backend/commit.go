package backend

// ManifestDecoder reads a manifest blob as stored (it may be sealed: the
// repository that supplies the decoder holds the key) and returns the
// checkpoint's sequence number and the IDs of the chunks it references.
type ManifestDecoder func(id string, blob []byte) (seq uint64, chunks []string, err error)

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
