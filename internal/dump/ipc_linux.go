package dump

import (
	"errors"
	"fmt"
	"os"

	"github.com/ckpt/ckpt/internal/image"
	"github.com/ckpt/ckpt/internal/procfs"
	"github.com/ckpt/ckpt/internal/sysvipc"
	"golang.org/x/sys/unix"
)

// maxMsgText bounds one message read from a queue.
const maxMsgText = 16 << 20

// dumpSysvIPC saves the System V semaphore sets and message queues the
// tree uses. They belong to the IPC namespace, not to a process, so "used"
// is what the kernel records: a set in which a process of the tree was the
// last to operate on some semaphore (GETPID), a queue a process of the
// tree was the last to send to or receive from (msg_lspid, msg_lrpid).
// Message queues are read with MSG_COPY, which leaves them as they are.
func dumpSysvIPC(tree *image.Tree, pids map[int]bool) error {
	mine, err1 := os.Readlink("/proc/thread-self/ns/ipc") // this thread's: a container dump runs in the container's
	theirs, err2 := os.Readlink(procfs.Path(tree.Root, "ns/ipc"))
	if err1 != nil || err2 != nil || mine != theirs {
		tree.Warnings = append(tree.Warnings, fmt.Sprintf("the tree is in IPC namespace %s, the dumper in %s: System V semaphores and message queues are not saved", theirs, mine))
		return nil
	}
	gone := func(err error) bool { return errors.Is(err, unix.EINVAL) || errors.Is(err, unix.EIDRM) }
	ids, err := sysvipc.IDs("sem")
	if err != nil && !os.IsNotExist(err) {
		return err
	}
	for _, id := range ids {
		d, err := sysvipc.SemStat(id)
		if gone(err) {
			continue
		}
		if err != nil {
			return fmt.Errorf("semaphore set %d: IPC_STAT: %w", id, err)
		}
		used := false
		for i := 0; i < int(d.NSems) && !used; i++ {
			pid, err := sysvipc.SemGetPID(id, i)
			used = err == nil && pids[pid]
		}
		if !used {
			continue
		}
		vals, err := sysvipc.SemGetAll(id, int(d.NSems))
		if err != nil {
			return fmt.Errorf("semaphore set %d: GETALL: %w", id, err)
		}
		tree.Sem = append(tree.Sem, &image.SemSet{ID: id, Key: d.Perm.Key, UID: d.Perm.UID, GID: d.Perm.GID,
			Mode: d.Perm.Mode & 0o777, Values: vals})
	}
	if ids, err = sysvipc.IDs("msg"); err != nil && !os.IsNotExist(err) {
		return err
	}
	for _, id := range ids {
		d, err := sysvipc.MsgStat(id)
		if gone(err) {
			continue
		}
		if err != nil {
			return fmt.Errorf("message queue %d: IPC_STAT: %w", id, err)
		}
		if !pids[int(d.LSPID)] && !pids[int(d.LRPID)] {
			continue
		}
		q := &image.MsgQueue{ID: id, Key: d.Perm.Key, UID: d.Perm.UID, GID: d.Perm.GID, Mode: d.Perm.Mode & 0o777, QBytes: d.QBytes}
		for i := 0; i < int(d.QNum); i++ {
			typ, text, err := sysvipc.MsgCopy(id, i, int(min(d.QBytes, maxMsgText)))
			if errors.Is(err, unix.ENOSYS) {
				return fmt.Errorf("message queue %d: reading messages needs MSG_COPY (CONFIG_CHECKPOINT_RESTORE): %w", id, ErrUnsupported)
			}
			if err != nil {
				return fmt.Errorf("message queue %d: copying message %d of %d: %w", id, i+1, d.QNum, err)
			}
			q.Messages = append(q.Messages, image.Message{Type: typ, Data: text})
		}
		tree.Msg = append(tree.Msg, q)
	}
	return nil
}
