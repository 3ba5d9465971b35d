package master

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
	"time"

	"berth/needs"
	"berth/pipes"
)

// Children write their stdout and stderr straight into
// <runtime>/logs/<instance>.log, opened with O_APPEND, so the file never
// depends on the master being alive. The master keeps each file under
// logmaxbytes by copy-and-truncate (logrotate's copytruncate): the content
// goes to <instance>.log.1 (older files shift to .2 … .logkeep, the oldest
// is dropped) and the live file is cut to zero; the child's next write lands
// at the new end. Bytes written in the instant between the copy and the cut
// are lost; everything else is kept.

// rotateEvery is how often the sizes of live children's logs are checked.
const rotateEvery = time.Second

// rotateLoop rotates children's log files that grew past the limit until
// the Agent closes.
func (a *Agent) rotateLoop() {
	size, keep := a.cfg.logLimits()
	t := time.NewTicker(rotateEvery)
	defer t.Stop()
	for {
		select {
		case <-a.ctx.Done():
			return
		case <-t.C:
		}
		for _, path := range a.liveLogs() {
			if _, err := rotateIfLarger(path, size, keep); err != nil {
				a.log.Warn("rotate child log", "path", path, "err", err)
			}
		}
	}
}

// liveLogs lists the log files of the children this master runs.
func (a *Agent) liveLogs() []string {
	a.mu.Lock()
	kids := make([]*child, 0, len(a.children))
	for _, c := range a.children {
		kids = append(kids, c)
	}
	a.mu.Unlock()
	var out []string
	for _, c := range kids {
		c.mu.Lock()
		if c.logPath != "" {
			out = append(out, c.logPath)
		}
		c.mu.Unlock()
	}
	return out
}

// rotateIfLarger rotates path when it holds at least max bytes, keeping
// keep older files. It reports whether it rotated.
func rotateIfLarger(path string, max int64, keep int) (bool, error) {
	fi, err := os.Stat(path)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return false, nil
		}
		return false, err
	}
	if fi.Size() < max {
		return false, nil
	}
	os.Remove(fmt.Sprintf("%s.%d", path, keep))
	for i := keep - 1; i >= 1; i-- {
		if err := os.Rename(fmt.Sprintf("%s.%d", path, i), fmt.Sprintf("%s.%d", path, i+1)); err != nil && !errors.Is(err, os.ErrNotExist) {
			return false, err
		}
	}
	src, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return false, err
	}
	defer src.Close()
	dst, err := os.OpenFile(path+".1", os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o640)
	if err != nil {
		return false, err
	}
	// Copy until the end as it is now, then once more for what the child
	// wrote meanwhile, so that only a write racing the truncate is lost.
	for range 2 {
		if _, err := io.Copy(dst, src); err != nil {
			dst.Close()
			return false, err
		}
	}
	if err := dst.Close(); err != nil {
		return false, err
	}
	return true, src.Truncate(0)
}

// logStreams are the log streams this master sends to the lanmanager,
// by the id of the request that opened them.
type logStreams struct {
	mu sync.Mutex
	m  map[uint64]context.CancelFunc
}

func (s *logStreams) add(id uint64, cancel context.CancelFunc) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.m == nil {
		s.m = map[uint64]context.CancelFunc{}
	}
	if _, dup := s.m[id]; dup {
		return false
	}
	s.m[id] = cancel
	return true
}

func (s *logStreams) remove(id uint64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.m, id)
}

func (s *logStreams) cancel(id uint64) {
	s.mu.Lock()
	c := s.m[id]
	delete(s.m, id)
	s.mu.Unlock()
	if c != nil {
		c()
	}
}

// maxLogStreams bounds the streams a master serves at once.
const maxLogStreams = 64

// logFollowPoll is how often a followed log is checked for new data.
const logFollowPoll = 200 * time.Millisecond

// startLogs streams an instance's log file to the lanmanager as log.data
// frames carrying the request's id. The stream ends with a frame that has
// EOF or Error set, or when the lanmanager sends logs.cancel, or when the
// link closes.
//
// The answers that end a request at once are queued on ob like any frame;
// the stream's data is written on the connection by the stream itself,
// which so waits for a slow link rather than fill the queue.
func (a *Agent) startLogs(ob *outbox, id uint64, l *pipes.Logs) error {
	conn := ob.conn
	path, err := a.logPathOf(l)
	if err != nil {
		ob.pushBody(pipes.TypeLogData, id, &pipes.LogData{Error: err.Error()}, nil)
		return nil
	}
	a.streams.mu.Lock()
	busy := len(a.streams.m) >= maxLogStreams
	a.streams.mu.Unlock()
	if busy {
		ob.pushBody(pipes.TypeLogData, id, &pipes.LogData{Error: fmt.Sprintf("master %s: too many log streams (%d)", a.name, maxLogStreams)}, nil)
		return nil
	}
	ctx, cancel := context.WithCancel(a.ctx)
	if !a.streams.add(id, cancel) {
		cancel()
		return fmt.Errorf("%w: log stream %d is already open", needs.ErrExists, id)
	}
	a.wg.Add(2)
	go func() {
		// The stream ends with the link it was asked on.
		defer a.wg.Done()
		select {
		case <-conn.Done():
			cancel()
		case <-ctx.Done():
		}
	}()
	go func() {
		defer a.wg.Done()
		defer a.streams.remove(id)
		defer cancel()
		err := streamLog(ctx, path, l.Tail, l.Follow, func(b []byte) error {
			return conn.SendBody(pipes.TypeLogData, id, &pipes.LogData{Data: b})
		})
		end := &pipes.LogData{EOF: true}
		if err != nil && ctx.Err() == nil {
			end = &pipes.LogData{Error: err.Error()}
		}
		conn.SendBody(pipes.TypeLogData, id, end) // fails harmlessly once the link is gone
	}()
	return nil
}

// cancelLogs ends the stream of request id.
func (a *Agent) cancelLogs(id uint64) { a.streams.cancel(id) }

// logPathOf finds the log file of the requested instance: the one of the
// child running it here, or the file a previous child left.
func (a *Agent) logPathOf(l *pipes.Logs) (string, error) {
	a.mu.Lock()
	kids := make([]*child, 0, len(a.children))
	for _, c := range a.children {
		kids = append(kids, c)
	}
	a.mu.Unlock()
	for _, c := range kids {
		if c.instance != l.Instance || (l.Alloc != "" && c.alloc != l.Alloc) {
			continue
		}
		c.mu.Lock()
		p := c.logPath
		c.mu.Unlock()
		if p != "" {
			return p, nil
		}
	}
	if l.Alloc != "" {
		return "", fmt.Errorf("master %s does not run allocation %s of %s", a.name, l.Alloc, l.Instance)
	}
	// l.Instance was validated as <need>.<index>: it is safe in a path.
	p := filepath.Join(a.logDir, l.Instance+".log")
	if _, err := os.Stat(p); err != nil {
		return "", fmt.Errorf("master %s has no log for %s", a.name, l.Instance)
	}
	return p, nil
}

// streamLog sends path's content through send in chunks of at most
// pipes.MaxLogChunk: the last tail lines (all of it when tail is 0), then,
// when follow is set, whatever is appended until ctx ends.
//
// Rotation by copy-and-truncate keeps the live file's inode, and the file
// may have grown past the follower's offset again by the time it looks, so
// the size alone cannot tell. Each rotation creates a new <path>.1 (the old
// one was renamed to .2), so a change of <path>.1's identity is the signal:
// the unread rest is at the follower's offset in the rotated file, then come
// any newer rotated files whole, then the live file from its start. A live
// file replaced by another (new inode) is finished, then reopened.
func streamLog(ctx context.Context, path string, tail int, follow bool, send func([]byte) error) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer func() { f.Close() }()
	rotated := func(i int) string { return fmt.Sprintf("%s.%d", path, i) }
	lastRot, _ := os.Stat(rotated(1))
	off, end := int64(0), int64(-1)
	if tail > 0 {
		if off, end, err = tailOffset(f, tail); err != nil {
			return err
		}
	}
	buf := make([]byte, pipes.MaxLogChunk)
	readFrom := func(r io.ReaderAt, from int64) (int64, error) {
		for {
			n, err := r.ReadAt(buf, from)
			if n > 0 {
				if serr := send(bytes.Clone(buf[:n])); serr != nil {
					return from, serr
				}
				from += int64(n)
			}
			if err == io.EOF || n == 0 {
				return from, nil
			}
			if err != nil {
				return from, err
			}
			if ctx.Err() != nil {
				return from, ctx.Err()
			}
		}
	}
	readRotated := func(i int, from int64) error {
		rf, err := os.Open(rotated(i))
		if err != nil {
			return nil // removed meanwhile: nothing left to read
		}
		defer rf.Close()
		_, err = readFrom(rf, from)
		return err
	}
	if !follow && end >= 0 {
		// The last lines as they were, not with what came since.
		_, err = readFrom(io.NewSectionReader(f, 0, end), off)
		return err
	}
	if off, err = readFrom(f, off); err != nil || !follow {
		return err
	}
	t := time.NewTicker(logFollowPoll)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		if rot, err := os.Stat(rotated(1)); err == nil && !sameRotated(rot, lastRot) {
			// Rotated since the last look: how many times? The .1 seen
			// last has moved to .k after k-1 rotations (1 when unknown).
			// Without a .2 (logkeep 1) one rotation is all it can be.
			n, known := 1, true
			if lastRot != nil {
				k := 2
				for ; k <= MaxLogKeep+1; k++ {
					fi, err := os.Stat(rotated(k))
					if err != nil {
						break
					}
					if sameRotated(fi, lastRot) {
						n = k - 1
						break
					}
				}
				known = n > 1 || k == 2
			}
			if !known {
				// Rotated past logkeep since the last look (a reader
				// stalled for several rotations): the place is lost.
				if err := send([]byte("\n[berth: the log rotated several times while being read; lines were skipped]\n")); err != nil {
					return err
				}
			} else if err := readRotated(n, off); err != nil {
				return err
			}
			for i := n - 1; i >= 1; i-- {
				if err := readRotated(i, 0); err != nil {
					return err
				}
			}
			lastRot, off = rot, 0
		}
		if cur, err := f.Stat(); err == nil && cur.Size() < off {
			// Shrunk under us although <path>.1 looked the same: with
			// logkeep 1 the file system may give the new .1 the inode of
			// the one it replaced. The unread rest is in .1 at off.
			if err := readRotated(1, off); err != nil {
				return err
			}
			lastRot, _ = os.Stat(rotated(1))
			off = 0
		}
		if fi, err := os.Stat(path); err == nil {
			if cur, err := f.Stat(); err == nil && !os.SameFile(fi, cur) {
				// Replaced: finish the old file, then start the new one.
				if _, err := readFrom(f, off); err != nil {
					return err
				}
				nf, err := os.Open(path)
				if err != nil {
					return err
				}
				f.Close()
				f, off = nf, 0
			}
		}
		if off, err = readFrom(f, off); err != nil {
			return err
		}
	}
}

// sameRotated reports whether a and b are the same rotated file. The inode
// alone is not enough: a file system may give a new <path>.1 the inode of
// the one it just replaced (always possible with logkeep 1), but a file
// written later has another modification time or size. b may be nil.
func sameRotated(a, b os.FileInfo) bool {
	return b != nil && os.SameFile(a, b) && a.ModTime().Equal(b.ModTime()) && a.Size() == b.Size()
}

// tailOffset returns the offset of the start of the last n lines of f,
// and f's size it counted back from. A final line without a newline counts
// as a line.
func tailOffset(f *os.File, n int) (off, end int64, err error) {
	fi, err := f.Stat()
	if err != nil {
		return 0, 0, err
	}
	end = fi.Size()
	if end == 0 {
		return 0, 0, nil
	}
	const block = 32 << 10
	buf := make([]byte, block)
	pos := end
	lines := 0
	// A trailing newline ends the last line rather than starting a new one.
	last := make([]byte, 1)
	if _, err := f.ReadAt(last, end-1); err != nil {
		return 0, 0, err
	}
	skip := last[0] == '\n'
	for pos > 0 {
		size := min(int64(block), pos)
		pos -= size
		b := buf[:size]
		if _, err := f.ReadAt(b, pos); err != nil && err != io.EOF {
			return 0, 0, err
		}
		for i := len(b) - 1; i >= 0; i-- {
			if b[i] != '\n' {
				continue
			}
			if skip && pos+int64(i) == end-1 {
				continue
			}
			lines++
			if lines == n {
				return pos + int64(i) + 1, end, nil
			}
		}
	}
	return 0, end, nil
}
