package vfs

import (
	"errors"
	"io/fs"
	"testing"
)

func write(t *testing.T, m *MemFS, name, data string, sync bool) {
	t.Helper()
	f, err := m.Create(name, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	f.Write([]byte(data))
	if sync {
		f.Sync()
	}
	f.Close()
}

// TestCrashKeepsOnlyWhatWasSynced checks the model the repository's crash
// tests rely on: file contents need File.Sync, directory entries SyncDir.
func TestCrashKeepsOnlyWhatWasSynced(t *testing.T) {
	m := NewCrashableMem()
	m.MkdirAll("/d", 0o700)
	m.SyncDir("/")
	write(t, m, "/d/synced", "a", true)
	write(t, m, "/d/unsynced", "b", false)
	m.SyncDir("/d")
	write(t, m, "/d/noentry", "c", true) // contents synced, entry not
	m.Crash()
	if b, err := m.ReadFile("/d/synced"); err != nil || string(b) != "a" {
		t.Fatalf("synced file: %q %v", b, err)
	}
	if b, err := m.ReadFile("/d/unsynced"); err != nil || len(b) != 0 {
		t.Fatalf("unsynced contents survived: %q %v", b, err)
	}
	if _, err := m.ReadFile("/d/noentry"); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("entry without SyncDir survived: %v", err)
	}
	// Rename is durable only with SyncDir.
	m.Rename("/d/synced", "/d/renamed")
	m.Crash()
	if _, err := m.ReadFile("/d/synced"); err != nil {
		t.Fatalf("rename without SyncDir became durable: %v", err)
	}
	m.Rename("/d/synced", "/d/renamed")
	m.SyncDir("/d")
	m.Crash()
	if _, err := m.ReadFile("/d/renamed"); err != nil {
		t.Fatalf("synced rename lost: %v", err)
	}
}

func TestCrashAfterBudget(t *testing.T) {
	m := NewCrashableMem()
	m.SetCrashAfter(1)
	if err := m.MkdirAll("/a", 0o700); err != nil {
		t.Fatal(err)
	}
	if err := m.MkdirAll("/b", 0o700); !errors.Is(err, ErrCrashed) {
		t.Fatalf("operation past the budget: %v", err)
	}
	if _, err := m.ReadFile("/a"); !errors.Is(err, ErrCrashed) {
		t.Fatalf("reads after the crash point must fail too: %v", err)
	}
	m.Crash()
	if err := m.MkdirAll("/b", 0o700); err != nil {
		t.Fatalf("after Crash the budget is lifted: %v", err)
	}
}
