package image

// InFlight is a set of descriptors passed with SCM_RIGHTS and not yet
// received: they travel with message Msg of a datagram or seqpacket
// socket's Queue. Only regular files, directories and the devices of
// FDDevice are saved (Kind FDFile or FDDevice; Num is their index in the
// message); the restorer opens them again and sends them with the message.
type InFlight struct {
	Msg int   `json:"msg"`
	FDs []*FD `json:"fds"`
}
