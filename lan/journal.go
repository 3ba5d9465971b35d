package lan

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"hash/crc32"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"

	"golang.org/x/sys/unix"
)

// The journal: lan.db is the checkpoint, and every change written since
// the checkpoint is a frame appended to a segment file beside it, with one
// write and one fdatasync. (A bbolt commit writes each dirty page with a
// call of its own: about 200 calls for 100 instance records scattered over
// 50,000.) A checkpoint writes what the frames changed into lan.db, in one
// bbolt transaction, and removes their segments; it runs in the background
// once the journal holds checkpointBytes, and when the store opens.
//
// A segment is named lan.journal.<n>, n sixteen decimal digits, one more
// than the segment before it. lan.db's meta/journal holds the number of
// the last segment whose changes it holds; the segment after it is
// created (and synced, with the directory) before that number is
// committed, so it always exists, and the changes are those of every
// segment after it, in order. A segment is
//
//	header: "berth-lan-journal\n" (18 bytes), n (8 bytes, little-endian)
//	frames: length of the payload (4 bytes, little-endian),
//	        CRC-32C of the payload (4 bytes, little-endian), payload
//
// and a payload is the JSON of a [journalEntry]. A frame cut short, or
// whose checksum fails, at the end of the last segment is a write that a
// crash interrupted (it was never acknowledged): it is cut off when the
// store opens. Anywhere else it is damage, and the store refuses to open.

const (
	journalMagic    = "berth-lan-journal\n"
	journalHeader   = len(journalMagic) + 8
	frameHeader     = 8
	maxFramePayload = 256 << 20
	// maxSegment bounds a segment file read whole when the store opens: a
	// checkpoint starts a new segment every 8 MiB (checkpointBytes), and
	// every time it tries again after a failure, so a larger file is not
	// one of ours.
	maxSegment    = 1 << 30
	journalPrefix = "lan.journal."
	journalDigits = 16
)

// checkpointBytes is how much journal a store lets grow before it
// checkpoints, read when it opens; tests lower it.
var checkpointBytes atomic.Int64

func init() { checkpointBytes.Store(8 << 20) }

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// journalEntry is one change as the journal holds it: each record's JSON
// as lan.db holds it, or null for a deletion.
type journalEntry struct {
	Needs     map[string]json.RawMessage `json:"needs,omitempty"`
	Instances map[string]json.RawMessage `json:"instances,omitempty"`
	Drained   map[string]json.RawMessage `json:"drained,omitempty"`
}

// records is the net effect of journal entries: per bucket, a record's
// latest value (nil: deleted).
type records struct {
	needs, instances, drained map[string][]byte
	n                         int
}

func newRecords() *records {
	return &records{needs: map[string][]byte{}, instances: map[string][]byte{}, drained: map[string][]byte{}}
}

// add lays e over r.
func (r *records) add(e *journalEntry) {
	for _, p := range []struct {
		dst map[string][]byte
		src map[string]json.RawMessage
	}{{r.needs, e.Needs}, {r.instances, e.Instances}, {r.drained, e.Drained}} {
		for k, v := range p.src {
			if _, ok := p.dst[k]; !ok {
				r.n++
			}
			if isNull(v) {
				p.dst[k] = nil
			} else {
				p.dst[k] = v
			}
		}
	}
}

// under lays older beneath r: r's records win.
func (r *records) under(older *records) {
	for _, p := range [][2]map[string][]byte{{r.needs, older.needs}, {r.instances, older.instances}, {r.drained, older.drained}} {
		for k, v := range p[1] {
			if _, ok := p[0][k]; !ok {
				p[0][k] = v
				r.n++
			}
		}
	}
}

func isNull(v json.RawMessage) bool { return string(bytes.TrimSpace(v)) == "null" }

// encodeChange returns the journal entry of c, with c's semantics: puts,
// then deletions.
func encodeChange(c *Change) (*journalEntry, error) {
	e := &journalEntry{}
	put := func(m *map[string]json.RawMessage, k string, v any) error {
		b, err := json.Marshal(v)
		if err != nil {
			return err
		}
		if *m == nil {
			*m = map[string]json.RawMessage{}
		}
		(*m)[k] = b
		return nil
	}
	del := func(m *map[string]json.RawMessage, k string) {
		if *m == nil {
			*m = map[string]json.RawMessage{}
		}
		(*m)[k] = json.RawMessage("null")
	}
	for _, n := range c.PutNeeds {
		if err := put(&e.Needs, n.Name, n); err != nil {
			return nil, fmt.Errorf("need %s: %w", n.Name, err)
		}
	}
	for _, name := range c.DeleteNeeds {
		del(&e.Needs, name)
	}
	for _, in := range c.PutInstances {
		if err := put(&e.Instances, in.Name, in); err != nil {
			return nil, fmt.Errorf("instance %s: %w", in.Name, err)
		}
	}
	for _, name := range c.DeleteInstances {
		del(&e.Instances, name)
	}
	for name, since := range c.PutDrained {
		if err := put(&e.Drained, name, drainRecord{Since: since}); err != nil {
			return nil, fmt.Errorf("drained master %s: %w", name, err)
		}
	}
	for _, name := range c.DeleteDrained {
		del(&e.Drained, name)
	}
	return e, nil
}

// payload is e's JSON, written from the records' own JSON as they are:
// json.Marshal of e would scan and compact every record again.
func (e *journalEntry) payload() []byte {
	var b []byte
	b = append(b, '{')
	first := true
	for _, p := range []struct {
		name string
		m    map[string]json.RawMessage
	}{{"needs", e.Needs}, {"instances", e.Instances}, {"drained", e.Drained}} {
		if len(p.m) == 0 {
			continue
		}
		if !first {
			b = append(b, ',')
		}
		first = false
		b = append(b, '"')
		b = append(b, p.name...)
		b = append(b, `":{`...)
		n := 0
		for k, v := range p.m {
			if n > 0 {
				b = append(b, ',')
			}
			n++
			key, _ := json.Marshal(k) // a string always encodes
			b = append(b, key...)
			b = append(b, ':')
			b = append(b, v...)
		}
		b = append(b, '}')
	}
	return append(b, '}')
}

// appendFrame appends the frame of payload to dst.
func appendFrame(dst, payload []byte) []byte {
	dst = binary.LittleEndian.AppendUint32(dst, uint32(len(payload)))
	dst = binary.LittleEndian.AppendUint32(dst, crc32.Checksum(payload, castagnoli))
	return append(dst, payload...)
}

func segmentHeader(n uint64) []byte {
	return binary.LittleEndian.AppendUint64([]byte(journalMagic), n)
}

func segmentName(n uint64) string {
	return fmt.Sprintf("%s%0*d", journalPrefix, journalDigits, n)
}

// parseSegmentName returns the number of a segment's file name.
func parseSegmentName(name string) (uint64, bool) {
	digits, ok := strings.CutPrefix(name, journalPrefix)
	if !ok || len(digits) != journalDigits || strings.Trim(digits, "0123456789") != "" {
		return 0, false
	}
	n, err := strconv.ParseUint(digits, 10, 64)
	return n, err == nil && n > 0
}

// listSegments returns the numbers of the segments in dir, in order.
func listSegments(dir string) ([]uint64, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	var out []uint64
	for _, e := range ents {
		if n, ok := parseSegmentName(e.Name()); ok {
			out = append(out, n)
		}
	}
	slices.Sort(out)
	return out, nil
}

// JournalDamagedError says that a journal segment cannot be read.
type JournalDamagedError struct {
	Path   string
	Offset int64 // where the damage starts; -1 for a missing file
	Reason string
}

func (e *JournalDamagedError) Error() string {
	if e.Offset < 0 {
		return fmt.Sprintf("journal segment %s %s: restore the data directory from a backup, "+
			"or delete every %s* file after it to start from the state before it (the changes they hold are lost)",
			e.Path, e.Reason, journalPrefix)
	}
	return fmt.Sprintf("journal segment %s is damaged at byte %d (%s): restore the data directory from a backup, "+
		"or delete it and every %s* file after it to start from the state before it (the changes they hold are lost)",
		e.Path, e.Offset, e.Reason, journalPrefix)
}

// readSegment decodes the segment at path, whose number is n. When last,
// a frame cut short or failing its checksum at the end is a torn write:
// readSegment returns the entries before it and the length of the whole
// frames (where the segment must be cut); otherwise it is damage.
func readSegment(path string, n uint64, last bool) (entries []*journalEntry, good int64, err error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, 0, err
	}
	if !fi.Mode().IsRegular() {
		return nil, 0, &JournalDamagedError{Path: path, Offset: 0, Reason: "not a regular file: " + fi.Mode().String()}
	}
	if fi.Size() > maxSegment {
		return nil, 0, &JournalDamagedError{Path: path, Offset: 0, Reason: fmt.Sprintf("%d bytes, more than a segment holds (%d)", fi.Size(), maxSegment)}
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, 0, err
	}
	return decodeSegment(path, b, n, last)
}

// decodeSegment is readSegment on the bytes of the file.
func decodeSegment(path string, b []byte, n uint64, last bool) (entries []*journalEntry, good int64, err error) {
	damaged := func(off int, why string) error {
		return &JournalDamagedError{Path: path, Offset: int64(off), Reason: why}
	}
	if len(b) < journalHeader {
		if last && bytes.HasPrefix([]byte(journalMagic), b[:min(len(b), len(journalMagic))]) {
			return nil, 0, nil // created, its header never written whole: rewritten on open
		}
		return nil, 0, damaged(0, fmt.Sprintf("%d bytes, shorter than the header", len(b)))
	}
	if string(b[:len(journalMagic)]) != journalMagic {
		return nil, 0, damaged(0, "not a journal segment")
	}
	if got := binary.LittleEndian.Uint64(b[len(journalMagic):journalHeader]); got != n {
		return nil, 0, damaged(len(journalMagic), fmt.Sprintf("its header says segment %d", got))
	}
	off := journalHeader
	for off < len(b) {
		rest := b[off:]
		torn := func(why string) ([]*journalEntry, int64, error) {
			if last {
				return entries, int64(off), nil
			}
			return nil, 0, damaged(off, why)
		}
		if len(rest) < frameHeader {
			return torn("a frame header cut short")
		}
		size := binary.LittleEndian.Uint32(rest)
		sum := binary.LittleEndian.Uint32(rest[4:])
		if size == 0 && sum == 0 && allZero(rest) {
			return torn("zeros after the last frame")
		}
		if size > maxFramePayload {
			if last && allZero(rest[frameHeader:]) {
				return torn("a frame header cut short")
			}
			return nil, 0, damaged(off, fmt.Sprintf("a frame of %d bytes, more than %d", size, maxFramePayload))
		}
		if int64(len(rest)-frameHeader) < int64(size) {
			return torn(fmt.Sprintf("a frame of %d bytes with %d left", size, len(rest)-frameHeader))
		}
		payload := rest[frameHeader : frameHeader+int(size)]
		end := off + frameHeader + int(size)
		if crc32.Checksum(payload, castagnoli) != sum {
			if end == len(b) || allZero(b[end:]) {
				return torn("checksum mismatch in the last frame")
			}
			return nil, 0, damaged(off, "checksum mismatch")
		}
		var e journalEntry
		if err := json.Unmarshal(payload, &e); err != nil {
			return nil, 0, damaged(off, fmt.Sprintf("frame payload: %v", err))
		}
		if err := e.validate(); err != nil {
			return nil, 0, damaged(off, err.Error())
		}
		entries = append(entries, &e)
		off = end
	}
	return entries, int64(off), nil
}

// validate checks that every record is a JSON object or null, under a
// name lan.db can hold.
func (e *journalEntry) validate() error {
	for bucket, m := range map[string]map[string]json.RawMessage{"needs": e.Needs, "instances": e.Instances, "drained": e.Drained} {
		for k, v := range m {
			if k == "" || len(k) > 4096 {
				return fmt.Errorf("%s: a record name of %d bytes", bucket, len(k))
			}
			if t := bytes.TrimSpace(v); !isNull(t) && (len(t) == 0 || t[0] != '{') {
				return fmt.Errorf("%s/%s: not a JSON object", bucket, k)
			}
		}
	}
	return nil
}

func allZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}

// createSegment creates segment n in dir with its header, synced with
// the directory entry, and returns it open for appending.
func createSegment(dir string, n uint64) (*os.File, error) {
	path := filepath.Join(dir, segmentName(n))
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return nil, err
	}
	if _, err := f.Write(segmentHeader(n)); err == nil {
		err = fdatasync(f)
		if err == nil {
			err = syncDir(dir)
		}
		if err == nil {
			return f, nil
		}
	}
	f.Close()
	os.Remove(path)
	return nil, fmt.Errorf("create journal segment %s: %w", path, err)
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// truncateSegment cuts the segment at path to size and syncs it.
func truncateSegment(path string, size int64) error {
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	if err := f.Truncate(size); err != nil {
		return err
	}
	return fdatasync(f)
}

// fdatasync flushes f's data, and its size, to the disk.
func fdatasync(f *os.File) error {
	conn, err := f.SyscallConn()
	if err != nil {
		return err
	}
	var serr error
	if err := conn.Control(func(fd uintptr) { serr = unix.Fdatasync(int(fd)) }); err != nil {
		return err
	}
	return serr
}
