package procfs

import (
	"encoding/binary"
	"testing"
)

func FuzzParseMaps(f *testing.F) {
	f.Add([]byte(sampleMaps))
	f.Add([]byte("0-1 rwxs 0 0:0 0 x\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := ParseMaps(b)
		if err == nil {
			for _, e := range m {
				if e.End < e.Start {
					t.Fatalf("accepted inverted range %+v", e)
				}
			}
		}
	})
}

func FuzzParseStat(f *testing.F) {
	f.Add([]byte(sampleStat))
	f.Add([]byte("1 ()) S"))
	f.Fuzz(func(t *testing.T, b []byte) { _, _ = ParseStat(b) })
}

func FuzzParseStatus(f *testing.F) {
	f.Add([]byte("Name:\tx\nUid:\t0 0 0 0\nSigBlk:\t0000000000000001\n"))
	f.Fuzz(func(t *testing.T, b []byte) { _, _ = ParseStatus(b) })
}

func FuzzParseFdinfo(f *testing.F) {
	f.Add([]byte("pos:\t42\nflags:\t02100002\nmnt_id:\t23\nino:\t991\n"))
	f.Fuzz(func(t *testing.T, b []byte) { _, _ = ParseFdinfo(b) })
}

func FuzzParseLimits(f *testing.F) {
	f.Add([]byte(sampleLimits))
	f.Fuzz(func(t *testing.T, b []byte) { _, _ = ParseLimits(b) })
}

func FuzzParseAuxv(f *testing.F) {
	var b []byte
	for _, v := range []uint64{6, 4096, 0, 0} {
		b = binary.LittleEndian.AppendUint64(b, v)
	}
	f.Add(b)
	f.Fuzz(func(t *testing.T, b []byte) { _, _ = ParseAuxv(b) })
}

func FuzzParseIDList(f *testing.F) {
	f.Add([]byte("1 2 3"))
	f.Fuzz(func(t *testing.T, b []byte) { _, _ = ParseIDList(b) })
}

func FuzzParseSmaps(f *testing.F) {
	f.Add([]byte(sampleSmaps))
	f.Fuzz(func(t *testing.T, b []byte) { _, _ = ParseSmaps(b) })
}
