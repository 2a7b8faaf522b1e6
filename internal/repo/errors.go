package repo

import (
	"errors"
	"fmt"
)

// Sentinel errors. Match them with errors.Is.
var (
	// ErrNotRepository: the location holds no ckpt repository.
	ErrNotRepository = errors.New("not a ckpt repository")
	// ErrNewerFormat: the repository was written by a newer ckpt.
	ErrNewerFormat = errors.New("repository format is newer than this ckpt supports")
	// ErrKeyRequired: the repository is encrypted and no key was given.
	ErrKeyRequired = errors.New("repository is encrypted: a key is required (--key-file or CKPT_KEY_FILE)")
	// ErrWrongKey: the key does not open this repository.
	ErrWrongKey = errors.New("wrong key for this repository")
	// ErrNotEncrypted: a key was given for a repository that has none.
	ErrNotEncrypted = errors.New("repository is not encrypted, but a key was given")
	// ErrExists: Init found a repository already there.
	ErrExists = errors.New("a ckpt repository already exists here")
	// ErrNotFound: no checkpoint matches a reference.
	ErrNotFound = errors.New("no such checkpoint")
	// ErrAmbiguous: an ID prefix matches more than one checkpoint.
	ErrAmbiguous = errors.New("ambiguous checkpoint ID prefix")
	// ErrCorrupt is wrapped by every CorruptError.
	ErrCorrupt = errors.New("damaged data")
)

// CorruptError says exactly what is damaged: which checkpoint, object and
// chunk, and how.
type CorruptError struct {
	Checkpoint string // checkpoint ID (may be empty for a lone chunk)
	Name       string // checkpoint name@seq, when known
	Object     string // object name, when known
	Chunk      string // chunk ID, when the damage is in a chunk
	Reason     string
}

func (e *CorruptError) Error() string {
	s := "damaged"
	if e.Checkpoint != "" {
		s += " checkpoint " + short(e.Checkpoint)
		if e.Name != "" {
			s += " (" + e.Name + ")"
		}
	}
	if e.Object != "" {
		s += fmt.Sprintf(" object %q", e.Object)
	}
	if e.Chunk != "" {
		s += " chunk " + short(e.Chunk)
	}
	return s + ": " + e.Reason
}

func (e *CorruptError) Unwrap() error { return ErrCorrupt }

func short(id string) string {
	if len(id) > 12 {
		return id[:12]
	}
	return id
}
