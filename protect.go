package ckpt

import (
	"bytes"
	"context"
	"encoding"
	"encoding/binary"
	"encoding/gob"
	"fmt"
	"io"
	"reflect"
	"runtime"
	"strconv"
	"sync"

	"github.com/ckpt/ckpt/internal/repo"
)

// Object types of a library checkpoint (repo.Object.Type). docs/FORMAT.md
// specifies them; the attribute names the Go type so Restore can refuse a
// checkpoint written for another type.
const (
	// objSlice: the elements of a slice of a fixed-size type, each in its
	// little-endian encoding/binary form. Attr "elem" is the element type,
	// "elem_size" its encoded size.
	objSlice = "slice"
	// objFixed: one fixed-size value in its little-endian encoding/binary
	// form. Attr "type".
	objFixed = "fixed"
	// objBinary: what MarshalBinary returned. Attr "type".
	objBinary = "binary"
	// objGob: encoding/gob of the pointed-to value. Attr "type".
	objGob = "gob"
)

type varKind uint8

const (
	kindSlice     varKind = iota + 1 // []T, T fixed layout: fixed length, saved from its memory
	kindSlicePtr                     // *[]T, T fixed layout: Restore may resize
	kindFixed                        // *T, T fixed layout: saved from its memory
	kindFixedEnc                     // *T of fixed binary.Size but padded: encoding/binary
	kindMarshaler                    // encoding.BinaryMarshaler and BinaryUnmarshaler
	kindGob                          // any other pointer
)

func (k varKind) objType() string {
	switch k {
	case kindSlice, kindSlicePtr:
		return objSlice
	case kindFixed, kindFixedEnc:
		return objFixed
	case kindMarshaler:
		return objBinary
	}
	return objGob
}

// variable is one protected value.
type variable struct {
	name string
	kind varKind
	v    reflect.Value // what was passed to Protect
	typ  reflect.Type  // element type (slices) or pointed-to type
	// staging holds the variable's bytes between Checkpoint and the end of
	// its commit; it is reused so steady-state checkpoints allocate nothing.
	staging []byte
	// ready is closed when prepared, a staging buffer allocated and
	// faulted in by a background goroutine, is there; nil when none is
	// being prepared.
	ready    chan struct{}
	prepared []byte
}

// prepare allocates and faults in a staging buffer of n bytes in the
// background. Faulting in fresh memory costs several times a copy of it
// (a gigabyte takes about a second in a virtual machine), and the first
// checkpoint would otherwise make the program wait for it.
func (v *variable) prepare(n int) {
	ready := make(chan struct{})
	v.ready = ready
	go func() {
		defer close(ready)
		b := make([]byte, n)
		for i := 0; i < n; i += 4096 {
			b[i] = 0 // a write fault allocates the page
		}
		v.prepared = b
	}()
}

// waitPrepared waits for a background prepare and adopts its buffer.
func (v *variable) waitPrepared() {
	if v.ready == nil {
		return
	}
	<-v.ready
	if cap(v.prepared) > cap(v.staging) {
		v.staging = v.prepared
	}
	v.ready, v.prepared = nil, nil
}

var (
	marshalerType   = reflect.TypeFor[encoding.BinaryMarshaler]()
	unmarshalerType = reflect.TypeFor[encoding.BinaryUnmarshaler]()
)

func newVariable(name string, x any) (*variable, error) {
	if name == "" {
		return nil, fmt.Errorf("Protect: empty name")
	}
	if x == nil {
		return nil, fmt.Errorf("Protect(%q): nil value", name)
	}
	rv := reflect.ValueOf(x)
	t := rv.Type()
	if t.Kind() == reflect.Pointer && rv.IsNil() {
		return nil, fmt.Errorf("Protect(%q): nil %s", name, t)
	}
	v := &variable{name: name, v: rv}
	switch {
	case t.Implements(marshalerType):
		if !t.Implements(unmarshalerType) {
			return nil, fmt.Errorf("Protect(%q): %s implements encoding.BinaryMarshaler but not BinaryUnmarshaler (pass a pointer?)", name, t)
		}
		v.kind, v.typ = kindMarshaler, derefType(t)
	case t.Kind() == reflect.Slice:
		if !fixedLayout(t.Elem()) {
			return nil, fmt.Errorf("Protect(%q): %s is not a slice of fixed-size numbers; protect a pointer to it to save it with encoding/gob", name, t)
		}
		v.kind, v.typ = kindSlice, t.Elem()
	case t.Kind() == reflect.Pointer:
		e := t.Elem()
		switch {
		case e.Kind() == reflect.Slice && fixedLayout(e.Elem()):
			v.kind, v.typ = kindSlicePtr, e.Elem()
		case fixedLayout(e):
			v.kind, v.typ = kindFixed, e
		case binary.Size(x) > 0:
			v.kind, v.typ = kindFixedEnc, e
		default:
			v.kind, v.typ = kindGob, e
			// Find what gob cannot encode (unexported fields only, funcs,
			// channels) now rather than at the first checkpoint.
			if err := gob.NewEncoder(io.Discard).Encode(x); err != nil {
				return nil, fmt.Errorf("Protect(%q): %s cannot be saved with encoding/gob: %w", name, t, err)
			}
		}
	default:
		return nil, fmt.Errorf("Protect(%q): a %s cannot be restored into; pass a slice or a pointer", name, t)
	}
	return v, nil
}

func derefType(t reflect.Type) reflect.Type {
	if t.Kind() == reflect.Pointer {
		return t.Elem()
	}
	return t
}

// fixedLayout reports whether values of t are laid out in memory exactly as
// encoding/binary encodes them on a little-endian host: fixed-size numbers
// and bools, and arrays and unpadded structs of them. Such values are saved
// from their own memory.
func fixedLayout(t reflect.Type) bool {
	switch t.Kind() {
	case reflect.Bool, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64,
		reflect.Float32, reflect.Float64, reflect.Complex64, reflect.Complex128:
		return true
	case reflect.Array:
		return fixedLayout(t.Elem())
	case reflect.Struct:
		var sum uintptr
		for i := range t.NumField() {
			f := t.Field(i)
			if !fixedLayout(f.Type) {
				return false
			}
			sum += f.Type.Size()
		}
		return sum == t.Size() // no padding
	}
	return false
}

// live returns the variable's memory when it can be saved without encoding.
func (v *variable) live() ([]byte, bool) {
	if !hostLittleEndian {
		return nil, false
	}
	switch v.kind {
	case kindSlice:
		return sliceMem(v.v), true
	case kindSlicePtr:
		return sliceMem(v.v.Elem()), true
	case kindFixed:
		return valueMem(v.v), true
	}
	return nil, false
}

// encode appends the variable's stored form to buf.
func (v *variable) encode(buf []byte) ([]byte, error) {
	var err error
	switch v.kind {
	case kindSlice, kindFixed, kindFixedEnc:
		buf, err = binary.Append(buf, binary.LittleEndian, v.v.Interface())
	case kindSlicePtr:
		buf, err = binary.Append(buf, binary.LittleEndian, v.v.Elem().Interface())
	case kindMarshaler:
		if a, ok := v.v.Interface().(encoding.BinaryAppender); ok {
			return a.AppendBinary(buf)
		}
		var b []byte
		b, err = v.v.Interface().(encoding.BinaryMarshaler).MarshalBinary()
		if err == nil && len(buf) == 0 {
			return b, nil // MarshalBinary made a copy already: keep it
		}
		buf = append(buf, b...)
	case kindGob:
		w := bytes.NewBuffer(buf)
		err = gob.NewEncoder(w).Encode(v.v.Interface())
		buf = w.Bytes()
	}
	if err != nil {
		return nil, fmt.Errorf("encoding %q: %w", v.name, err)
	}
	return buf, nil
}

// attr describes the variable's Go type in its object's attributes.
func (v *variable) attr() map[string]string {
	if v.kind == kindSlice || v.kind == kindSlicePtr {
		return map[string]string{"elem": v.typ.String(), "elem_size": strconv.Itoa(binary.Size(reflect.Zero(v.typ).Interface()))}
	}
	return map[string]string{"type": v.typ.String()}
}

// check reports whether o can be restored into the variable, before any
// protected value is touched.
func (v *variable) check(m *repo.Manifest, o *repo.Object) error {
	mismatch := func(format string, args ...any) error {
		return fmt.Errorf("restoring %q from %s: %s: %w", v.name, m.Ref(), fmt.Sprintf(format, args...), ErrMismatch)
	}
	if o == nil {
		return mismatch("the checkpoint has no such variable (protect new variables after Restore)")
	}
	if want := v.kind.objType(); o.Type != want {
		return mismatch("the checkpoint holds a %q object, the protected value needs %q", o.Type, want)
	}
	switch v.kind {
	case kindSlice, kindSlicePtr:
		if got := o.Attr["elem"]; got != v.typ.String() {
			return mismatch("the checkpoint holds []%s, the protected value is []%s", got, v.typ)
		}
		es := uint64(binary.Size(reflect.Zero(v.typ).Interface()))
		if es == 0 || o.Size%es != 0 {
			return mismatch("size %d is not a multiple of the element size %d", o.Size, es)
		}
		if n := o.Size / es; v.kind == kindSlice && n != uint64(v.v.Len()) {
			return mismatch("the checkpoint holds %d elements, the protected slice has %d (protect a pointer to the slice to let Restore resize it)", n, v.v.Len())
		}
	default:
		if got := o.Attr["type"]; got != v.typ.String() {
			return mismatch("the checkpoint holds a %s, the protected value is a %s", got, v.typ)
		}
		if v.kind == kindFixed || v.kind == kindFixedEnc {
			if want := binary.Size(v.v.Interface()); o.Size != uint64(want) {
				return mismatch("the checkpoint holds %d bytes, a %s is %d", o.Size, v.typ, want)
			}
		}
	}
	return nil
}

// load reads object o of m into the variable; check has accepted it.
func (v *variable) load(ctx context.Context, r *repo.Repository, m *repo.Manifest, o *repo.Object) error {
	or, err := r.OpenObject(m, o.Name)
	if err != nil {
		return err
	}
	if v.kind == kindSlicePtr {
		es := uint64(binary.Size(reflect.Zero(v.typ).Interface()))
		n := int(o.Size / es)
		s := v.v.Elem()
		if s.Cap() >= n {
			s.SetLen(n)
		} else {
			s.Set(reflect.MakeSlice(s.Type(), n, n))
		}
	}
	if mem, ok := v.live(); ok {
		return readParallel(ctx, or, mem)
	}
	buf := make([]byte, o.Size)
	if err := readParallel(ctx, or, buf); err != nil {
		return err
	}
	switch v.kind {
	case kindSlice, kindFixed, kindFixedEnc:
		_, err = binary.Decode(buf, binary.LittleEndian, v.v.Interface())
	case kindSlicePtr:
		_, err = binary.Decode(buf, binary.LittleEndian, v.v.Elem().Interface())
	case kindMarshaler:
		err = v.v.Interface().(encoding.BinaryUnmarshaler).UnmarshalBinary(buf)
	case kindGob:
		// Decode into a fresh value: gob leaves fields that were zero when
		// encoded untouched, and merges into existing maps.
		fresh := reflect.New(v.typ)
		if err = gob.NewDecoder(bytes.NewReader(buf)).DecodeValue(fresh); err == nil {
			v.v.Elem().Set(fresh.Elem())
		}
	}
	if err != nil {
		return fmt.Errorf("restoring %q from %s: decoding: %w", v.name, m.Ref(), err)
	}
	return nil
}

// parallelMin is the size above which copies and reads are split across
// CPUs: below it the goroutines cost more than they save.
const parallelMin = 8 << 20

// readParallel fills dst from the start of or, in parallel pieces for
// large objects (each chunk is read, checked and decoded by one goroutine).
func readParallel(ctx context.Context, or *repo.ObjectReader, dst []byte) error {
	const piece = 4 << 20
	if len(dst) <= parallelMin {
		_, err := or.ReadAt(ctx, dst, 0)
		if err == io.EOF {
			err = nil
		}
		return err
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	next := make(chan int)
	var (
		wg    sync.WaitGroup
		once  sync.Once
		first error
	)
	for range runtime.GOMAXPROCS(0) {
		wg.Go(func() {
			for off := range next {
				end := min(off+piece, len(dst))
				if _, err := or.ReadAt(ctx, dst[off:end], uint64(off)); err != nil && err != io.EOF {
					once.Do(func() { first = err; cancel() })
				}
			}
		})
	}
feed:
	for off := 0; off < len(dst); off += piece {
		select {
		case next <- off:
		case <-ctx.Done():
			break feed
		}
	}
	close(next)
	wg.Wait()
	if first != nil {
		return first
	}
	return ctx.Err()
}

// parallelCopy copies src into dst (of equal length) using every CPU for
// large buffers: one core rarely saturates memory bandwidth.
func parallelCopy(dst, src []byte) {
	n := runtime.GOMAXPROCS(0)
	if len(src) < parallelMin || n == 1 {
		copy(dst, src)
		return
	}
	part := (len(src)/n + 4095) &^ 4095
	var wg sync.WaitGroup
	for off := 0; off < len(src); off += part {
		end := min(off+part, len(src))
		wg.Go(func() { copy(dst[off:end], src[off:end]) })
	}
	wg.Wait()
}
