package boltfile

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
)

// The bbolt file format (version 2), as bbolt v1 writes it: native byte
// order, a 16-byte header at the start of every page.
const (
	magic          = 0xED0CDAED
	formatVersion  = 2
	pageHeaderSize = 16
	metaSize       = 64 // magic .. checksum
	checksumOffset = 56 // the checksum covers the bytes before it
	noFreelist     = ^uint64(0)
	minPageSize    = 1 << 10
	maxPageSize    = 16 << 20 // the largest bbolt looks for a second meta page at
)

// meta is what berth needs of a bbolt meta page.
type meta struct {
	pageSize uint32
	root     uint64 // page of the root bucket
	freelist uint64 // page of the freelist, or noFreelist
	pgid     uint64 // high-water mark: pages below it are in use or free
	txid     uint64
}

// readMeta reads and validates the meta page at off, as bbolt's
// Meta.Validate does.
func readMeta(r io.ReaderAt, size, off int64) (meta, error) {
	var buf [pageHeaderSize + metaSize]byte
	if off+int64(len(buf)) > size {
		return meta{}, fmt.Errorf("the file ends before the meta page at offset %d", off)
	}
	if _, err := r.ReadAt(buf[:], off); err != nil {
		return meta{}, fmt.Errorf("read meta page at offset %d: %w", off, err)
	}
	b := buf[pageHeaderSize:]
	ne := binary.NativeEndian
	if v := ne.Uint32(b[0:]); v != magic {
		return meta{}, fmt.Errorf("meta page at offset %d: no bbolt magic number (%#x)", off, v)
	}
	if v := ne.Uint32(b[4:]); v != formatVersion {
		return meta{}, fmt.Errorf("meta page at offset %d: format version %d, want %d", off, v, formatVersion)
	}
	h := fnv.New64a()
	h.Write(b[:checksumOffset])
	if sum, want := ne.Uint64(b[checksumOffset:]), h.Sum64(); sum != want {
		return meta{}, fmt.Errorf("meta page at offset %d: checksum %#x, its contents sum to %#x", off, sum, want)
	}
	return meta{
		pageSize: ne.Uint32(b[8:]),
		root:     ne.Uint64(b[16:]),
		freelist: ne.Uint64(b[32:]),
		pgid:     ne.Uint64(b[40:]),
		txid:     ne.Uint64(b[48:]),
	}, nil
}

// checkMeta finds the meta page bbolt would use in a file of size bytes
// (the valid one with the higher transaction id) and checks it against the
// file. The error is the reason the file is damaged. both reports whether
// both meta pages are valid; bbolt needs only one, and a crash while it
// writes one (it writes them in turn) leaves the other.
func checkMeta(r io.ReaderAt, size int64) (m meta, both bool, err error) {
	m0, err0 := readMeta(r, size, 0)
	var m1 meta
	var err1 error
	if err0 == nil {
		m1, err1 = readMeta(r, size, int64(m0.pageSize))
		if err1 == nil && m1.pageSize != m0.pageSize {
			err1 = fmt.Errorf("second meta page: page size %d, the first says %d", m1.pageSize, m0.pageSize)
		}
	} else {
		// Like bbolt, look for the second meta page at every page size.
		err1 = errors.New("no second meta page at any page size")
		for ps := int64(minPageSize); ps <= maxPageSize && ps < size; ps <<= 1 {
			if m, err := readMeta(r, size, ps); err == nil && int64(m.pageSize) == ps {
				m1, err1 = m, nil
				break
			}
		}
	}
	switch {
	case err0 != nil && err1 != nil:
		return meta{}, false, fmt.Errorf("no valid meta page: %v; %v", err0, err1)
	case err0 != nil:
		m = m1
	case err1 != nil || m0.txid >= m1.txid:
		m = m0
	default:
		m = m1
	}
	return m, err0 == nil && err1 == nil, m.check(size)
}

// check checks a valid meta page against a file of size bytes.
func (m meta) check(size int64) error {
	ps := uint64(m.pageSize)
	if ps < minPageSize || ps > maxPageSize || ps&(ps-1) != 0 {
		return fmt.Errorf("meta page: page size %d", ps)
	}
	if m.root < 2 || m.root >= m.pgid {
		return fmt.Errorf("meta page: root page %d, high-water mark %d", m.root, m.pgid)
	}
	if m.freelist != noFreelist && (m.freelist < 2 || m.freelist >= m.pgid) {
		return fmt.Errorf("meta page: freelist page %d, high-water mark %d", m.freelist, m.pgid)
	}
	if m.pgid > uint64(size)/ps {
		if m.pgid > uint64(1<<62)/ps {
			return fmt.Errorf("file is %d bytes, its meta page says %d pages of %d bytes", size, m.pgid, ps)
		}
		return fmt.Errorf("file is %d bytes, its meta page says %d", size, m.pgid*ps)
	}
	return nil
}
