// Package repo owns ckpt's checkpoint repository: content-addressed chunks
// (compressed when it pays, sealed with XChaCha20-Poly1305 when the repository
// has a key), manifests that commit checkpoints atomically, and the
// maintenance operations verify, retention, rm and gc. Storage is a
// backend.Backend; this package knows nothing about processes or the CLI.
//
// The on-disk format is specified in docs/FORMAT.md.
package repo
