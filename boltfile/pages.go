package boltfile

import (
	"encoding/binary"
	"fmt"
)

// Page flags and element flags of the bbolt file format.
const (
	branchPageFlag   = 0x01
	leafPageFlag     = 0x02
	freelistPageFlag = 0x10
	bucketLeafFlag   = 0x01
	elementSize      = 16 // a branch or a leaf page element
	inBucketSize     = 16 // a bucket's value: root page, sequence
	maxFreeCount     = 0xFFFF
)

// tree walks the pages of a whole file held in memory, from the root
// bucket down, before bbolt maps it: every page it reaches lies below the
// high-water mark, is reached once, has the type its parent expects, and
// holds its elements, keys and values inside itself. That is what bbolt
// trusts without checking, and what makes it read outside the file or loop
// for ever when it is wrong.
type tree struct {
	data []byte
	m    meta
	seen map[uint64]bool
}

// checkPages checks the freelist and every page reachable from the root
// bucket of data, a whole file whose meta page m has passed checkMeta.
func checkPages(data []byte, m meta) error {
	t := &tree{data: data, m: m, seen: map[uint64]bool{0: true, 1: true}}
	if m.freelist != noFreelist {
		if err := t.freelist(m.freelist); err != nil {
			return err
		}
	}
	return t.node(m.root, "root bucket")
}

// page returns the bytes of page id and its overflow pages, marking them
// seen.
func (t *tree) page(id uint64, what string) ([]byte, error) {
	if id < 2 || id >= t.m.pgid {
		return nil, fmt.Errorf("%s: page %d, high-water mark %d", what, id, t.m.pgid)
	}
	ps := uint64(t.m.pageSize)
	hdr := t.data[id*ps:]
	ne := binary.NativeEndian
	if got := ne.Uint64(hdr); got != id {
		return nil, fmt.Errorf("%s: page %d says it is page %d", what, id, got)
	}
	overflow := uint64(ne.Uint32(hdr[12:]))
	if overflow >= t.m.pgid-id {
		return nil, fmt.Errorf("%s: page %d runs %d pages past the high-water mark %d", what, id, overflow, t.m.pgid)
	}
	for i := id; i <= id+overflow; i++ {
		if t.seen[i] {
			return nil, fmt.Errorf("%s: page %d is used twice", what, i)
		}
		t.seen[i] = true
	}
	return t.data[id*ps : (id+1+overflow)*ps], nil
}

func (t *tree) freelist(id uint64) error {
	p, err := t.page(id, "freelist")
	if err != nil {
		return err
	}
	ne := binary.NativeEndian
	if f := ne.Uint16(p[8:]); f&freelistPageFlag == 0 {
		return fmt.Errorf("freelist: page %d has flags %#x, not a freelist's", id, f)
	}
	n, start := uint64(ne.Uint16(p[10:])), uint64(pageHeaderSize)
	if n == maxFreeCount {
		if len(p) < pageHeaderSize+8 {
			return fmt.Errorf("freelist: page %d is too short for its count", id)
		}
		n, start = ne.Uint64(p[pageHeaderSize:]), pageHeaderSize+8
	}
	if n > (uint64(len(p))-start)/8 {
		return fmt.Errorf("freelist: page %d lists %d pages, it has room for %d", id, n, (uint64(len(p))-start)/8)
	}
	for i := range n {
		if free := ne.Uint64(p[start+8*i:]); free < 2 || free >= t.m.pgid {
			return fmt.Errorf("freelist: page %d lists free page %d, high-water mark %d", id, free, t.m.pgid)
		}
	}
	return nil
}

// node checks the branch or leaf page id and everything below it.
func (t *tree) node(id uint64, what string) error {
	p, err := t.page(id, what)
	if err != nil {
		return err
	}
	return t.elements(p, id, what)
}

// elements checks the elements of page p (page id, or an inline bucket's
// page when id is 0).
func (t *tree) elements(p []byte, id uint64, what string) error {
	ne := binary.NativeEndian
	flags, n := ne.Uint16(p[8:]), uint64(ne.Uint16(p[10:]))
	branch := flags&branchPageFlag != 0
	if !branch && flags&leafPageFlag == 0 {
		return fmt.Errorf("%s: page %d has flags %#x, neither branch nor leaf", what, id, flags)
	}
	if branch && (n == 0 || id == 0) {
		return fmt.Errorf("%s: page %d is a branch with %d elements", what, id, n)
	}
	if pageHeaderSize+n*elementSize > uint64(len(p)) {
		return fmt.Errorf("%s: page %d has %d elements, room for %d", what, id, n, (uint64(len(p))-pageHeaderSize)/elementSize)
	}
	for i := range n {
		off := pageHeaderSize + i*elementSize
		e := p[off : off+elementSize]
		if branch {
			pos, ksize := uint64(ne.Uint32(e[0:])), uint64(ne.Uint32(e[4:]))
			if off+pos+ksize > uint64(len(p)) {
				return fmt.Errorf("%s: page %d element %d lies outside the page", what, id, i)
			}
			if err := t.node(ne.Uint64(e[8:]), what); err != nil {
				return err
			}
			continue
		}
		eflags, pos := ne.Uint32(e[0:]), uint64(ne.Uint32(e[4:]))
		ksize, vsize := uint64(ne.Uint32(e[8:])), uint64(ne.Uint32(e[12:]))
		if off+pos+ksize+vsize > uint64(len(p)) {
			return fmt.Errorf("%s: page %d element %d lies outside the page", what, id, i)
		}
		if eflags&bucketLeafFlag == 0 {
			continue
		}
		k := p[off+pos : off+pos+ksize]
		v := p[off+pos+ksize : off+pos+ksize+vsize]
		if err := t.bucket(v, fmt.Sprintf("bucket %q", k)); err != nil {
			return err
		}
	}
	return nil
}

// bucket checks a bucket's value: its root page, or its inline page.
func (t *tree) bucket(v []byte, what string) error {
	if len(v) < inBucketSize {
		return fmt.Errorf("%s: value of %d bytes, want at least %d", what, len(v), inBucketSize)
	}
	if root := binary.NativeEndian.Uint64(v); root != 0 {
		return t.node(root, what)
	}
	inline := v[inBucketSize:]
	if len(inline) < pageHeaderSize {
		return fmt.Errorf("%s: inline page of %d bytes", what, len(inline))
	}
	return t.elements(inline, 0, what)
}
