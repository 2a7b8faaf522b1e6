package ckpt

import (
	"reflect"
	"unsafe"
)

// hostLittleEndian tells whether memory already holds the stored
// (little-endian) form of fixed-size numbers. Only then may the zero-copy
// paths hand out memory as it is; big-endian hosts go through encoding/binary.
var hostLittleEndian = func() bool {
	x := uint16(1)
	return *(*byte)(unsafe.Pointer(&x)) == 1
}()

// sliceMem returns the memory of s, a slice of a fixed-layout element type
// (see fixedLayout), as bytes, without copying.
func sliceMem(s reflect.Value) []byte {
	n := s.Len() * int(s.Type().Elem().Size())
	if n == 0 {
		return nil
	}
	return unsafe.Slice((*byte)(s.UnsafePointer()), n)
}

// valueMem returns the memory of the fixed-layout value p points to.
func valueMem(p reflect.Value) []byte {
	n := int(p.Type().Elem().Size())
	if n == 0 || p.IsNil() {
		return nil
	}
	return unsafe.Slice((*byte)(p.UnsafePointer()), n)
}
