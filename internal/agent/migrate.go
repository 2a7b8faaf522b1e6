package agent

import (
	"context"
	"io"
	"net/http"
)

// MigrationReceiver rebuilds a process tree migrated to this node from a
// migration stream (docs/MIGRATE.md) and returns what to answer the
// source (JSON). It must restore nothing when it returns an error. The
// agent package has no process code: the platform sets it with
// SetMigrationReceiver.
type MigrationReceiver func(ctx context.Context, stream io.Reader) (any, error)

// SetMigrationReceiver enables POST /v1/groups/G/migrate. Without one the
// endpoint answers 501 not_supported.
func (s *Server) SetMigrationReceiver(f MigrationReceiver) { s.migrate = f }

// migrateHandler receives one migration: the request body is the stream;
// the answer comes once the process is restored (200 with the receiver's
// JSON) or refused (422 migration_failed with the reason). The source
// kills its process only on a 200. One migration runs at a time: a second
// gets 409 busy.
func (s *Server) migrateHandler(w http.ResponseWriter, r *http.Request, g *group) {
	if s.migrate == nil {
		httpError(w, http.StatusNotImplemented, "not_supported", "node %s cannot receive migrations (no process support on this platform)", s.cfg.Node)
		return
	}
	if !s.migrating.TryLock() {
		httpError(w, http.StatusConflict, "busy", "node %s is already receiving a migration", s.cfg.Node)
		return
	}
	defer s.migrating.Unlock()
	res, err := s.migrate(r.Context(), r.Body)
	if err != nil {
		s.log.Warn("migration refused", "group", g.name, "error", err)
		httpError(w, http.StatusUnprocessableEntity, "migration_failed", "node %s: %v", s.cfg.Node, err)
		return
	}
	s.log.Info("migration restored", "group", g.name)
	writeJSON(w, res)
}
