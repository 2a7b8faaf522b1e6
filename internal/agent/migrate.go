package agent

import (
	"context"
	"io"
	"net/http"
	"os"
	"regexp"
	"sync"
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

// MigrationHeader carries the source's ID of a migration; the outcome is
// kept under it for GET /v1/groups/G/migrations/ID.
const MigrationHeader = "X-Ckpt-Migration"

// MigrationStatus is the outcome of a migration as the agent keeps it.
type MigrationStatus struct {
	State  string `json:"state"` // receiving, restored, failed
	Answer any    `json:"answer,omitempty"`
	Error  string `json:"error,omitempty"`
}

var migrationID = regexp.MustCompile(`^[0-9a-f]{16,64}$`)

// migrations remembers the outcome of the last migrations, so that a
// source whose answer was lost (connection cut after the restore) can ask
// instead of guessing.
type migrations struct {
	mu    sync.Mutex
	byID  map[string]*MigrationStatus
	order []string
}

const keepMigrations = 64

func (m *migrations) set(group, id string, st *MigrationStatus) {
	if id == "" {
		return
	}
	key := group + "/" + id
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.byID == nil {
		m.byID = map[string]*MigrationStatus{}
	}
	if _, ok := m.byID[key]; !ok {
		m.order = append(m.order, key)
		if len(m.order) > keepMigrations {
			delete(m.byID, m.order[0])
			m.order = m.order[1:]
		}
	}
	m.byID[key] = st
}

func (m *migrations) get(group, id string) *MigrationStatus {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.byID[group+"/"+id]
}

// migrateHandler receives one migration: the request body is the stream;
// the answer comes once the process is restored (200 with the receiver's
// JSON) or refused (422 migration_failed with the reason). The source
// kills its process only on a 200 (or, when that answer was lost, on the
// status saying restored). One migration runs at a time: a second gets
// 409 busy.
func (s *Server) migrateHandler(w http.ResponseWriter, r *http.Request, g *group) {
	if s.migrate == nil {
		httpError(w, http.StatusNotImplemented, "not_supported", "node %s cannot receive migrations (no process support on this platform)", s.cfg.Node)
		return
	}
	id := r.Header.Get(MigrationHeader)
	if id != "" && !migrationID.MatchString(id) {
		httpError(w, http.StatusBadRequest, "bad_name", "migration ID %q: want 16 to 64 lowercase hex digits", id)
		return
	}
	if id != "" && s.migs.get(g.name, id) != nil {
		httpError(w, http.StatusConflict, "busy", "migration %s was already received", id)
		return
	}
	if !s.migrating.TryLock() {
		httpError(w, http.StatusConflict, "busy", "node %s is already receiving a migration", s.cfg.Node)
		return
	}
	defer s.migrating.Unlock()
	s.migs.set(g.name, id, &MigrationStatus{State: "receiving"})
	res, err := s.migrate(r.Context(), r.Body)
	if err != nil {
		s.migs.set(g.name, id, &MigrationStatus{State: "failed", Error: err.Error()})
		s.log.Warn("migration refused", "group", g.name, "id", id, "error", err)
		httpError(w, http.StatusUnprocessableEntity, "migration_failed", "node %s: %v", s.cfg.Node, err)
		return
	}
	s.migs.set(g.name, id, &MigrationStatus{State: "restored", Answer: res})
	s.log.Info("migration restored", "group", g.name, "id", id)
	if os.Getenv("CKPT_TEST_LOSE_MIGRATION_ANSWER") == "1" {
		// Tests: the connection breaks after the restore, before the answer.
		if c, _, err := http.NewResponseController(w).Hijack(); err == nil {
			c.Close()
			return
		}
	}
	writeJSON(w, res)
}

// migrationStatus answers GET /v1/groups/G/migrations/ID.
func (s *Server) migrationStatus(w http.ResponseWriter, r *http.Request, g *group) {
	st := s.migs.get(g.name, r.PathValue("id"))
	if st == nil {
		httpError(w, http.StatusNotFound, "no_blob", "no migration %q on node %s (never received, or forgotten: the agent keeps the last %d)", r.PathValue("id"), s.cfg.Node, keepMigrations)
		return
	}
	writeJSON(w, st)
}

// Unwrap lets http.ResponseController reach the connection (Hijack).
func (r *statusRecorder) Unwrap() http.ResponseWriter { return r.ResponseWriter }
