package image

// SemSet is a System V semaphore set used by the tree.
type SemSet struct {
	ID     int      `json:"id"`
	Key    int32    `json:"key"`
	UID    uint32   `json:"uid"`
	GID    uint32   `json:"gid"`
	Mode   uint32   `json:"mode"`
	Values []uint16 `json:"values"`
}

// MsgQueue is a System V message queue used by the tree, with its queued
// messages, oldest first.
type MsgQueue struct {
	ID       int       `json:"id"`
	Key      int32     `json:"key"`
	UID      uint32    `json:"uid"`
	GID      uint32    `json:"gid"`
	Mode     uint32    `json:"mode"`
	QBytes   uint64    `json:"qbytes"` // msg_qbytes: the queue's byte limit
	Messages []Message `json:"messages,omitempty"`
}

// Message is one queued System V message.
type Message struct {
	Type int64  `json:"type"`
	Data []byte `json:"data,omitempty"`
}
