package main

import "unsafe"

// floatBytes views s's memory as bytes, to hash it without a copy.
func floatBytes(s []float64) []byte {
	if len(s) == 0 {
		return nil
	}
	return unsafe.Slice((*byte)(unsafe.Pointer(&s[0])), len(s)*8)
}
