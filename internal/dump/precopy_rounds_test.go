package dump

import (
	"reflect"
	"testing"

	"github.com/ckpt/ckpt/internal/dirty"
)

func TestRangeSetOps(t *testing.T) {
	r := func(a, n uint64) dirty.Range { return dirty.Range{Addr: a, Len: n} }
	for _, tc := range []struct {
		a, b, minus, union, both []dirty.Range
	}{
		{nil, nil, nil, nil, nil},
		{[]dirty.Range{r(0, 10)}, nil, []dirty.Range{r(0, 10)}, []dirty.Range{r(0, 10)}, nil},
		{[]dirty.Range{r(0, 10)}, []dirty.Range{r(2, 3)}, []dirty.Range{r(0, 2), r(5, 5)}, []dirty.Range{r(0, 10)}, []dirty.Range{r(2, 3)}},
		{[]dirty.Range{r(0, 10), r(20, 10)}, []dirty.Range{r(5, 20)}, []dirty.Range{r(0, 5), r(25, 5)}, []dirty.Range{r(0, 30)}, []dirty.Range{r(5, 5), r(20, 5)}},
		{[]dirty.Range{r(10, 10)}, []dirty.Range{r(0, 5), r(30, 5)}, []dirty.Range{r(10, 10)}, []dirty.Range{r(0, 5), r(10, 10), r(30, 5)}, nil},
		{[]dirty.Range{r(10, 10)}, []dirty.Range{r(0, 40)}, nil, []dirty.Range{r(0, 40)}, []dirty.Range{r(10, 10)}},
		{[]dirty.Range{r(0, 4), r(8, 4)}, []dirty.Range{r(4, 4)}, []dirty.Range{r(0, 4), r(8, 4)}, []dirty.Range{r(0, 12)}, nil},
	} {
		if got := intersectRanges(tc.a, tc.b); !reflect.DeepEqual(got, tc.both) {
			t.Errorf("%v & %v = %v, want %v", tc.a, tc.b, got, tc.both)
		}
		if got := subtractRanges(tc.a, tc.b); !reflect.DeepEqual(got, tc.minus) {
			t.Errorf("%v - %v = %v, want %v", tc.a, tc.b, got, tc.minus)
		}
		if got := unionRanges(tc.a, tc.b); !reflect.DeepEqual(got, tc.union) {
			t.Errorf("%v + %v = %v, want %v", tc.a, tc.b, got, tc.union)
		}
	}
}
