package sysvipc

import (
	"encoding/binary"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Perm is struct ipc64_perm (x86-64).
type Perm struct {
	Key  int32
	UID  uint32
	GID  uint32
	CUID uint32
	CGID uint32
	Mode uint32
	Seq  uint16
	_    uint16
	_    [2]uint64
}

// SemDS is struct semid64_ds (x86-64).
type SemDS struct {
	Perm  Perm
	Otime int64
	_     uint64
	Ctime int64
	_     uint64
	NSems uint64
	_     [2]uint64
}

// MsgDS is struct msqid64_ds (x86-64).
type MsgDS struct {
	Perm   Perm
	Stime  int64
	Rtime  int64
	Ctime  int64
	CBytes uint64
	QNum   uint64
	QBytes uint64
	LSPID  int32
	LRPID  int32
	_      [2]uint64
}

func semctl(id, num, cmd int, arg uintptr) (int, error) {
	r, _, e := unix.Syscall6(unix.SYS_SEMCTL, uintptr(id), uintptr(num), uintptr(cmd), arg, 0, 0)
	if e != 0 {
		return 0, e
	}
	return int(r), nil
}

// SemStat is semctl(IPC_STAT).
func SemStat(id int) (SemDS, error) {
	var d SemDS
	_, err := semctl(id, 0, unix.IPC_STAT, uintptr(unsafe.Pointer(&d)))
	return d, err
}

// SemSet is semctl(IPC_SET) of the owner and mode in d.
func SemSet(id int, d *SemDS) error {
	_, err := semctl(id, 0, unix.IPC_SET, uintptr(unsafe.Pointer(d)))
	return err
}

// SemGetAll is semctl(GETALL).
func SemGetAll(id, n int) ([]uint16, error) {
	v := make([]uint16, max(n, 1))
	_, err := semctl(id, 0, semGetAll, uintptr(unsafe.Pointer(&v[0])))
	return v[:n], err
}

// SemSetAll is semctl(SETALL).
func SemSetAll(id int, v []uint16) error {
	if len(v) == 0 {
		return nil
	}
	_, err := semctl(id, 0, semSetAll, uintptr(unsafe.Pointer(&v[0])))
	return err
}

// SemGetPID is semctl(GETPID): the last process to operate on semaphore num.
func SemGetPID(id, num int) (int, error) { return semctl(id, num, semGetPID, 0) }

// SemRemove is semctl(IPC_RMID).
func SemRemove(id int) error {
	_, err := semctl(id, 0, unix.IPC_RMID, 0)
	return err
}

// SemGet is semget(2).
func SemGet(key int32, n, flags int) (int, error) {
	r, _, e := unix.Syscall(unix.SYS_SEMGET, uintptr(key), uintptr(n), uintptr(flags))
	if e != 0 {
		return 0, e
	}
	return int(r), nil
}

// MsgStat is msgctl(IPC_STAT).
func MsgStat(id int) (MsgDS, error) {
	var d MsgDS
	_, _, e := unix.Syscall(unix.SYS_MSGCTL, uintptr(id), unix.IPC_STAT, uintptr(unsafe.Pointer(&d)))
	if e != 0 {
		return d, e
	}
	return d, nil
}

// MsgSet is msgctl(IPC_SET): owner, mode and msg_qbytes from d.
func MsgSet(id int, d *MsgDS) error {
	_, _, e := unix.Syscall(unix.SYS_MSGCTL, uintptr(id), unix.IPC_SET, uintptr(unsafe.Pointer(d)))
	if e != 0 {
		return e
	}
	return nil
}

// MsgRemove is msgctl(IPC_RMID).
func MsgRemove(id int) error {
	_, _, e := unix.Syscall(unix.SYS_MSGCTL, uintptr(id), unix.IPC_RMID, 0)
	if e != 0 {
		return e
	}
	return nil
}

// MsgGet is msgget(2).
func MsgGet(key int32, flags int) (int, error) {
	r, _, e := unix.Syscall(unix.SYS_MSGGET, uintptr(key), uintptr(flags), 0)
	if e != 0 {
		return 0, e
	}
	return int(r), nil
}

// MsgCopy reads message number i (0 = oldest) of the queue without
// removing it (msgrcv with MSG_COPY | IPC_NOWAIT; unix.ENOMSG past the
// last). max bounds the text.
func MsgCopy(id, i, max int) (typ int64, text []byte, err error) {
	buf := make([]byte, 8+max)
	n, _, e := unix.Syscall6(unix.SYS_MSGRCV, uintptr(id), uintptr(unsafe.Pointer(&buf[0])), uintptr(max), uintptr(i),
		msgCopy|unix.IPC_NOWAIT, 0)
	if e != 0 {
		return 0, nil, e
	}
	return int64(binary.LittleEndian.Uint64(buf)), buf[8 : 8+n], nil
}

// MsgSend is msgsnd(2) with IPC_NOWAIT.
func MsgSend(id int, typ int64, text []byte) error {
	buf := binary.LittleEndian.AppendUint64(make([]byte, 0, 8+len(text)), uint64(typ))
	buf = append(buf, text...)
	_, _, e := unix.Syscall6(unix.SYS_MSGSND, uintptr(id), uintptr(unsafe.Pointer(&buf[0])), uintptr(len(text)), unix.IPC_NOWAIT, 0, 0)
	if e != 0 {
		return e
	}
	return nil
}

const (
	semGetPID = 11
	semGetAll = 13
	semSetAll = 17
	msgCopy   = 0o40000
)
