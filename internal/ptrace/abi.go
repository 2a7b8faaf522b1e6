package ptrace

import "encoding/binary"

// CloneArgs is struct clone_args of clone3(2) (version 2, 88 bytes).
type CloneArgs struct {
	Flags, Pidfd, ChildTID, ParentTID, ExitSignal, Stack, StackSize, TLS, SetTID, SetTIDSize, Cgroup uint64
}

// Bytes encodes the structure as the kernel expects it.
func (c *CloneArgs) Bytes() []byte {
	return le64(c.Flags, c.Pidfd, c.ChildTID, c.ParentTID, c.ExitSignal, c.Stack, c.StackSize, c.TLS, c.SetTID, c.SetTIDSize, c.Cgroup)
}

// MMMap is struct prctl_mm_map for prctl(PR_SET_MM, PR_SET_MM_MAP).
type MMMap struct {
	StartCode, EndCode, StartData, EndData, StartBrk, Brk, StartStack uint64
	ArgStart, ArgEnd, EnvStart, EnvEnd                                uint64
	Auxv                                                              uint64 // address in the tracee
	AuxvSize                                                          uint32
	ExeFD                                                             uint32
}

// MMMapSize is sizeof(struct prctl_mm_map).
const MMMapSize = 104

// Bytes encodes the structure.
func (m *MMMap) Bytes() []byte {
	b := le64(m.StartCode, m.EndCode, m.StartData, m.EndData, m.StartBrk, m.Brk, m.StartStack,
		m.ArgStart, m.ArgEnd, m.EnvStart, m.EnvEnd, m.Auxv)
	b = binary.LittleEndian.AppendUint32(b, m.AuxvSize)
	b = binary.LittleEndian.AppendUint32(b, m.ExeFD)
	return b
}

func le64(v ...uint64) []byte {
	b := make([]byte, 0, 8*len(v))
	for _, x := range v {
		b = binary.LittleEndian.AppendUint64(b, x)
	}
	return b
}
