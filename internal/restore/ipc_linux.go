package restore

import (
	"fmt"
	"slices"

	"github.com/ckpt/ckpt/internal/image"
	"github.com/ckpt/ckpt/internal/sysvipc"
	"golang.org/x/sys/unix"
)

// restoreIPC brings back the tree's System V semaphore sets and message
// queues, in the restorer's IPC namespace, before any process exists. A
// set or queue that still exists under its id (the usual case: they
// outlive the killed processes) must have the same key; a semaphore set
// gets its saved values back (the kernel applied the killed processes'
// SEM_UNDO adjustments when they died), a queue is taken as it is now.
// Otherwise the object is created with its id (/proc/sys/kernel/
// {sem,msg}_next_id), key, owner and mode, and filled.
func (r *restorer) restoreIPC() error {
	if len(r.tree.Sem)+len(r.tree.Msg) == 0 {
		return nil
	}
	// A container's objects are recreated in its new IPC namespace: this
	// runs on a thread that joined it (container.go, openFilesIn).
	for _, s := range r.tree.Sem {
		if err := r.restoreSem(s); err != nil {
			return fmt.Errorf("semaphore set %d key %#x: %w", s.ID, uint32(s.Key), err)
		}
	}
	for _, q := range r.tree.Msg {
		if err := r.restoreMsg(q); err != nil {
			return fmt.Errorf("message queue %d key %#x: %w", q.ID, uint32(q.Key), err)
		}
	}
	return nil
}

func (r *restorer) restoreSem(s *image.SemSet) error {
	if d, err := sysvipc.SemStat(s.ID); err == nil {
		if d.Perm.Key != s.Key || int(d.NSems) != len(s.Values) {
			return fmt.Errorf("id %d now has key %#x and %d semaphores, the image has %#x and %d: %w",
				s.ID, uint32(d.Perm.Key), d.NSems, uint32(s.Key), len(s.Values), ErrMismatch)
		}
		now, err := sysvipc.SemGetAll(s.ID, len(s.Values))
		if err != nil {
			return fmt.Errorf("GETALL: %w", err)
		}
		if !slices.Equal(now, s.Values) {
			if err := sysvipc.SemSetAll(s.ID, s.Values); err != nil {
				return fmt.Errorf("SETALL: %w", err)
			}
			r.warn("System V semaphore set %d: values %v reset to the dumped %v", s.ID, now, s.Values)
		}
		return nil
	}
	if err := sysvipc.SetNextID("sem", s.ID); err != nil {
		return fmt.Errorf("setting sem_next_id: %w", err)
	}
	id, err := sysvipc.SemGet(s.Key, len(s.Values), unix.IPC_CREAT|unix.IPC_EXCL|int(s.Mode&0o777))
	_ = sysvipc.SetNextID("sem", -1)
	if err != nil {
		return fmt.Errorf("semget: %w", err)
	}
	r.ipcCreated = append(r.ipcCreated, ipcObject{sem: true, id: id})
	if id != s.ID {
		return fmt.Errorf("semget gave id %d, want %d", id, s.ID)
	}
	if err := sysvipc.SemSetAll(id, s.Values); err != nil {
		return fmt.Errorf("SETALL: %w", err)
	}
	d, err := sysvipc.SemStat(id)
	if err != nil {
		return err
	}
	d.Perm.UID, d.Perm.GID, d.Perm.Mode = s.UID, s.GID, s.Mode
	if err := sysvipc.SemSet(id, &d); err != nil {
		return fmt.Errorf("IPC_SET: %w", err)
	}
	return nil
}

func (r *restorer) restoreMsg(q *image.MsgQueue) error {
	if d, err := sysvipc.MsgStat(q.ID); err == nil {
		if d.Perm.Key != q.Key {
			return fmt.Errorf("id %d now has key %#x, the image has %#x: %w", q.ID, uint32(d.Perm.Key), uint32(q.Key), ErrMismatch)
		}
		var bytes uint64
		for _, m := range q.Messages {
			bytes += uint64(len(m.Data))
		}
		if int(d.QNum) != len(q.Messages) || d.CBytes != bytes {
			r.warn("System V message queue %d: %d messages (%d bytes) now, %d (%d bytes) at the dump; taken as it is", q.ID, d.QNum, d.CBytes, len(q.Messages), bytes)
		}
		return nil
	}
	if err := sysvipc.SetNextID("msg", q.ID); err != nil {
		return fmt.Errorf("setting msg_next_id: %w", err)
	}
	id, err := sysvipc.MsgGet(q.Key, unix.IPC_CREAT|unix.IPC_EXCL|int(q.Mode&0o777))
	_ = sysvipc.SetNextID("msg", -1)
	if err != nil {
		return fmt.Errorf("msgget: %w", err)
	}
	r.ipcCreated = append(r.ipcCreated, ipcObject{id: id})
	if id != q.ID {
		return fmt.Errorf("msgget gave id %d, want %d", id, q.ID)
	}
	d, err := sysvipc.MsgStat(id)
	if err != nil {
		return err
	}
	d.Perm.UID, d.Perm.GID, d.Perm.Mode, d.QBytes = q.UID, q.GID, q.Mode, q.QBytes
	if err := sysvipc.MsgSet(id, &d); err != nil {
		return fmt.Errorf("IPC_SET (msg_qbytes %d): %w", q.QBytes, err)
	}
	for i, m := range q.Messages {
		if err := sysvipc.MsgSend(id, m.Type, m.Data); err != nil {
			return fmt.Errorf("msgsnd of message %d of %d (%d bytes): %w", i+1, len(q.Messages), len(m.Data), err)
		}
	}
	return nil
}

// ipcObject is a semaphore set or message queue this restore created.
type ipcObject struct {
	sem bool
	id  int
}

// finishIPC removes, when the restore failed, what restoreIPC created.
func (r *restorer) finishIPC(failed bool) {
	if !failed {
		return
	}
	for _, o := range r.ipcCreated {
		if o.sem {
			_ = sysvipc.SemRemove(o.id)
		} else {
			_ = sysvipc.MsgRemove(o.id)
		}
	}
}
