package image

// TTY is the state of a terminal an fd of the tree was on: its termios
// (struct termios as TCGETS gives it) and window size.
type TTY struct {
	Iflag  uint32   `json:"iflag"`
	Oflag  uint32   `json:"oflag"`
	Cflag  uint32   `json:"cflag"`
	Lflag  uint32   `json:"lflag"`
	Line   uint8    `json:"line"`
	Cc     [19]byte `json:"cc"`
	Ispeed uint32   `json:"ispeed"`
	Ospeed uint32   `json:"ospeed"`
	Rows   uint16   `json:"rows"`
	Cols   uint16   `json:"cols"`
	XPixel uint16   `json:"xpixel,omitempty"`
	YPixel uint16   `json:"ypixel,omitempty"`
}
