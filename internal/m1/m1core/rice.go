package m1core

import (
	"errors"
	"math/bits"
)

// errRice is returned for a truncated Rice-coded set.
var errRice = errors.New("m1core: line hash set is truncated")

// riceEncode codes a sorted set of distinct uint32 as Rice-coded gaps
// (about log2(2^32/n)+1.5 bits an element, against 32 raw): the line hash
// set is most of the index.
func riceEncode(set []uint32) (k uint8, out []byte) {
	if len(set) == 0 {
		return 0, nil
	}
	mean := uint64(set[len(set)-1]) / uint64(len(set))
	if mean > 1 {
		k = uint8(bits.Len64(mean) - 1)
	}
	var w bitWriter
	var prev uint32
	for _, v := range set {
		gap := v - prev
		prev = v
		for q := gap >> k; q > 0; q-- {
			w.bit(1)
		}
		w.bit(0)
		for i := int(k) - 1; i >= 0; i-- {
			w.bit(byte(gap>>uint(i)) & 1)
		}
	}
	return k, w.buf
}

// riceDecode reverses riceEncode for n elements. It rejects input that
// does not decode to a strictly increasing set of uint32.
func riceDecode(k uint8, n int, in []byte) ([]uint32, error) {
	if k > 31 || n < 0 || n > len(in)*8 {
		return nil, errRice
	}
	out := make([]uint32, 0, n)
	r := bitReader{buf: in}
	var prev uint64
	for i := range n {
		var q uint64
		for {
			b, ok := r.bit()
			if !ok {
				return nil, errRice
			}
			if b == 0 {
				break
			}
			if q++; q > 1<<32 {
				return nil, errRice
			}
		}
		gap := q << k
		for j := int(k) - 1; j >= 0; j-- {
			b, ok := r.bit()
			if !ok {
				return nil, errRice
			}
			gap |= uint64(b) << uint(j)
		}
		prev += gap
		if prev > 1<<32-1 || (i > 0 && gap == 0) {
			return nil, errRice
		}
		out = append(out, uint32(prev))
	}
	return out, nil
}

type bitWriter struct {
	buf []byte
	n   uint // bits written
}

func (w *bitWriter) bit(b byte) {
	if w.n%8 == 0 {
		w.buf = append(w.buf, 0)
	}
	w.buf[len(w.buf)-1] |= b << (7 - w.n%8)
	w.n++
}

type bitReader struct {
	buf []byte
	n   uint
}

func (r *bitReader) bit() (byte, bool) {
	if r.n/8 >= uint(len(r.buf)) {
		return 0, false
	}
	b := r.buf[r.n/8] >> (7 - r.n%8) & 1
	r.n++
	return b, true
}
