package spawn

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// CgroupMount returns the mount point of the cgroup v2 hierarchy: the
// unified mount at /sys/fs/cgroup, or /sys/fs/cgroup/unified on a hybrid
// system, or else the first other read-write cgroup2 mount in
// /proc/self/mountinfo. It says nothing about whether this process may
// create cgroups there: [MakeCgroup] finds that out.
func CgroupMount() (string, error) {
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return "", fmt.Errorf("find cgroup2 mount: %w", err)
	}
	mounts := cgroup2Mounts(b)
	for _, want := range []string{"/sys/fs/cgroup", "/sys/fs/cgroup/unified"} {
		if slices.Contains(mounts, want) && isCgroup2(want) {
			return want, nil
		}
	}
	for _, m := range mounts {
		if isCgroup2(m) {
			return m, nil
		}
	}
	return "", ErrNoCgroup
}

// cgroup2Mounts returns the mount points of the read-write cgroup2 mounts
// in a mountinfo file, in order.
func cgroup2Mounts(mountinfo []byte) []string {
	var out []string
	sc := bufio.NewScanner(bytes.NewReader(mountinfo))
	for sc.Scan() {
		// id parent major:minor root mountpoint options [optional...] - fstype source superoptions
		pre, post, ok := strings.Cut(sc.Text(), " - ")
		if !ok {
			continue
		}
		f, g := strings.Fields(pre), strings.Fields(post)
		if len(f) < 6 || len(g) < 1 || g[0] != "cgroup2" {
			continue
		}
		if slices.Contains(strings.Split(f[5], ","), "ro") {
			continue
		}
		out = append(out, unescapeMount(f[4]))
	}
	return out
}

// unescapeMount undoes the octal escapes (\040 for a space) of mountinfo.
func unescapeMount(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if n, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(n))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

func isCgroup2(dir string) bool {
	var st unix.Statfs_t
	return unix.Statfs(dir, &st) == nil && st.Type == unix.CGROUP2_SUPER_MAGIC
}

// MakeCgroup creates dir and its missing parents as cgroups and checks that
// this process can use it: dir must be on a cgroup v2 file system, and its
// cgroup.procs writable (to put processes in its sub-cgroups, the
// fallback of a kernel that refuses clone3 into a cgroup). An existing dir
// is fine.
func MakeCgroup(dir string) error {
	if !filepath.IsAbs(dir) {
		return fmt.Errorf("make cgroup %s: %w: path is not absolute", dir, ErrNoCgroup)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("make cgroup %s: %w", dir, err)
	}
	if !isCgroup2(dir) {
		return fmt.Errorf("make cgroup %s: %w: not a cgroup2 file system", dir, ErrNoCgroup)
	}
	if err := unix.Access(filepath.Join(dir, "cgroup.procs"), unix.W_OK); err != nil {
		return fmt.Errorf("make cgroup %s: cgroup.procs: %w", dir, err)
	}
	return nil
}

// RemoveCgroup removes the cgroup dir if it is empty (no processes, no
// sub-cgroups), and reports whether it is gone.
func RemoveCgroup(dir string) bool {
	err := unix.Rmdir(dir)
	return err == nil || errors.Is(err, unix.ENOENT)
}

// CgroupChildren returns the sub-cgroups of dir (the names of its
// directories); none if dir does not exist.
func CgroupChildren(dir string) ([]string, error) {
	ents, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("list cgroup %s: %w", dir, err)
	}
	var out []string
	for _, e := range ents {
		if e.IsDir() {
			out = append(out, e.Name())
		}
	}
	return out, nil
}

// cgroupTracker tracks the processes of a child by its own cgroup. Its
// methods are safe for concurrent use.
type cgroupTracker struct {
	dir        string
	killed     atomic.Bool // kill was called
	noKillFile atomic.Bool // the kernel has no cgroup.kill
}

func (g *cgroupTracker) String() string { return "cgroup " + g.dir }

// makeChildCgroup creates the child's cgroup, and its parent if that was
// removed (within a cgroup2 file system only). One left over from an
// earlier child is reused if it is empty; a populated one is refused.
func makeChildCgroup(dir string) error {
	if parent := filepath.Dir(dir); !isCgroup2(parent) && isCgroup2(filepath.Dir(parent)) {
		if err := os.Mkdir(parent, 0o755); err != nil && !errors.Is(err, os.ErrExist) {
			return fmt.Errorf("make cgroup %s: %w", parent, err)
		}
	}
	if !isCgroup2(filepath.Dir(dir)) {
		return fmt.Errorf("make cgroup %s: %w: its parent is not on a cgroup2 file system", dir, ErrNoCgroup)
	}
	err := os.Mkdir(dir, 0o755)
	if errors.Is(err, os.ErrExist) {
		pop, perr := (&cgroupTracker{dir: dir}).populated()
		if perr != nil {
			return fmt.Errorf("make cgroup %s: %w", dir, perr)
		}
		if pop {
			return fmt.Errorf("make cgroup %s: %w", dir, ErrCgroupInUse)
		}
		return nil
	}
	if err != nil {
		return fmt.Errorf("make cgroup %s: %w", dir, err)
	}
	return nil
}

// procs lists the processes in the cgroup (cgroup.procs).
func (g *cgroupTracker) procs() ([]int, error) {
	b, err := os.ReadFile(filepath.Join(g.dir, "cgroup.procs"))
	if err != nil {
		return nil, err
	}
	var out []int
	for _, f := range strings.Fields(string(b)) {
		if pid, err := strconv.Atoi(f); err == nil && pid > 0 {
			out = append(out, pid)
		}
	}
	return out, nil
}

// populated reads "populated" from cgroup.events. A cgroup that does not
// exist is not populated, nor is one removed while its file was being read
// (ENODEV): only an empty cgroup can be removed.
func (g *cgroupTracker) populated() (bool, error) {
	b, err := os.ReadFile(filepath.Join(g.dir, "cgroup.events"))
	if errors.Is(err, os.ErrNotExist) || errors.Is(err, unix.ENODEV) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "populated "); ok {
			return v != "0", nil
		}
	}
	return false, fmt.Errorf("%s/cgroup.events has no populated line", g.dir)
}

// contains reports whether pid is in the cgroup.
func (g *cgroupTracker) contains(pid int) bool {
	pids, err := g.procs()
	return err == nil && slices.Contains(pids, pid)
}

// signal sends sig to every process in the cgroup. Each is first pinned
// with a pidfd, then found in cgroup.procs again: the process the pidfd
// names is then in the cgroup (a pid names one process at a time, and a
// process only enters the cgroup by being forked in it), so a pid reused
// meanwhile is never signalled.
func (g *cgroupTracker) signal(sig syscall.Signal) error {
	pids, err := g.procs()
	if errors.Is(err, os.ErrNotExist) || err == nil && len(pids) == 0 {
		return os.ErrProcessDone
	}
	if err != nil {
		return fmt.Errorf("signal cgroup %s: %w", g.dir, err)
	}
	var fds []pinned
	for _, pid := range pids {
		if fd, err := unix.PidfdOpen(pid, 0); err == nil {
			fds = append(fds, pinned{pid, fd})
		}
	}
	defer closePinned(fds)
	now, _ := g.procs()
	sent := false
	var firstErr error
	for _, p := range fds {
		if !slices.Contains(now, p.pid) {
			continue
		}
		err := unix.PidfdSendSignal(p.fd, sig, nil, 0)
		switch {
		case err == nil:
			sent = true
		case errors.Is(err, unix.ESRCH):
		case firstErr == nil:
			firstErr = err
		}
	}
	if firstErr != nil {
		return fmt.Errorf("signal cgroup %s: %w", g.dir, firstErr)
	}
	if !sent {
		return os.ErrProcessDone
	}
	return nil
}

// kill writes cgroup.kill (Linux 5.14), which SIGKILLs every process in
// the cgroup and any it is forking. Without that file each process is sent
// SIGKILL, and waitEmpty does it again each time it wakes, for processes
// forked meanwhile.
func (g *cgroupTracker) kill() {
	g.killed.Store(true)
	err := os.WriteFile(filepath.Join(g.dir, "cgroup.kill"), []byte("1"), 0)
	if err == nil || !g.exists() {
		return
	}
	g.noKillFile.Store(true)
	_ = g.signal(syscall.SIGKILL)
}

func (g *cgroupTracker) exists() bool {
	_, err := os.Stat(g.dir)
	return err == nil
}

// waitEmpty waits until cgroup.events says "populated 0": woken by
// inotify, which the kernel triggers on every change of that file, and
// polled as well every 100 ms, in case the watch could not be set.
func (g *cgroupTracker) waitEmpty(ctx context.Context) error {
	w := newFileWatch(filepath.Join(g.dir, "cgroup.events"))
	defer w.close()
	for {
		pop, err := g.populated()
		if err != nil {
			return fmt.Errorf("wait for cgroup %s: %w", g.dir, err)
		}
		if !pop {
			return nil
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		if g.killed.Load() && g.noKillFile.Load() {
			_ = g.signal(syscall.SIGKILL)
		}
		w.wait(100 * time.Millisecond)
	}
}

// cleanup removes the cgroup directory; a cgroup is removed with rmdir,
// its interface files go with it.
// EBUSY (populated again) leaves it in place.
func (g *cgroupTracker) cleanup() { _ = unix.Rmdir(g.dir) }

// pinned is a pid with a pidfd open on it.
type pinned struct{ pid, fd int }

func closePinned(ps []pinned) {
	for _, p := range ps {
		unix.Close(p.fd)
	}
}

// fileWatch wakes a waiter when a file is modified (inotify IN_MODIFY),
// or after a timeout. A watch that could not be set only times out.
type fileWatch struct{ f *os.File }

func newFileWatch(path string) fileWatch {
	fd, err := unix.InotifyInit1(unix.IN_NONBLOCK | unix.IN_CLOEXEC)
	if err != nil {
		return fileWatch{}
	}
	if _, err := unix.InotifyAddWatch(fd, path, unix.IN_MODIFY); err != nil {
		unix.Close(fd)
		return fileWatch{}
	}
	return fileWatch{f: os.NewFile(uintptr(fd), "inotify:"+path)}
}

// wait returns after an event, or after d.
func (w fileWatch) wait(d time.Duration) {
	if w.f == nil || w.f.SetReadDeadline(time.Now().Add(d)) != nil {
		time.Sleep(d) // no watch: poll
		return
	}
	var buf [4096]byte
	_, _ = w.f.Read(buf[:])
}

func (w fileWatch) close() {
	if w.f != nil {
		w.f.Close()
	}
}
