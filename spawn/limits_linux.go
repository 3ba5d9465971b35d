package spawn

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"berth/needs"
)

// The cgroup controllers that enforce needs.Limits.
const (
	CtrlMemory = "memory"
	CtrlCPU    = "cpu"
	CtrlPIDs   = "pids"
)

// LimitControllers are the controllers Limits use, in order.
var LimitControllers = []string{CtrlMemory, CtrlCPU, CtrlPIDs}

// cfsPeriod is the CFS period, in µs, a CPU limit is a quota of.
const cfsPeriod = 100000

// LimitCgroups says where one master's children get the cgroups that
// enforce their limits. Find it once with [FindLimitCgroups]; it is
// read-only afterwards.
type LimitCgroups struct {
	// V2 lists the controllers enabled for the sub-cgroups of the master's
	// cgroup v2 directory (Tracking.Cgroup of each child): their limits
	// are written in the child's own v2 cgroup.
	V2 []string
	// V1 maps the other controllers to the master's directory in the
	// cgroup v1 hierarchy of that controller; each child gets a sub-cgroup
	// of it (Tracking.LimitCgroups).
	V1 map[string]string
	// Missing says, for each controller neither has, why.
	Missing map[string]string
}

// FindLimitCgroups finds, for each of LimitControllers, how this machine
// lets a master enforce it:
//
//   - in the cgroup v2 tree, when v2 (the master's v2 cgroup, "" for
//     none) can have the controller enabled for its sub-cgroups: it writes
//     "+memory" and so on to cgroup.subtree_control from the mount's root
//     down to v2, where cgroup.controllers offers it (the controller must
//     be delegated that far);
//   - else in the controller's cgroup v1 hierarchy, where one is mounted
//     read-write: the directory name (e.g. "berth/<master>") under its
//     root, created with the first child that needs it (and removed by
//     the master that owns it, [RemoveCgroup]);
//   - else not at all, and Missing says why.
func FindLimitCgroups(v2, name string) LimitCgroups {
	lc := LimitCgroups{V1: map[string]string{}, Missing: map[string]string{}}
	v2why := map[string]string{}
	if v2 != "" {
		lc.V2, v2why = enableV2(v2, LimitControllers)
	}
	mountinfo, _ := os.ReadFile("/proc/self/mountinfo")
	for _, c := range LimitControllers {
		if slices.Contains(lc.V2, c) {
			continue
		}
		dir, err := v1Cgroup(mountinfo, c, name)
		if err == nil {
			lc.V1[c] = dir
			continue
		}
		why := v2why[c]
		if v2 == "" {
			why = "no cgroup v2 tree is used"
		}
		lc.Missing[c] = fmt.Sprintf("no %s controller: cgroup v2: %s; cgroup v1: %v", c, why, err)
	}
	return lc
}

// Can says whether limits l can be enforced, and if not, why.
func (lc LimitCgroups) Can(l needs.Limits) error {
	for _, c := range wanted(l) {
		if why, ok := lc.Missing[c]; ok {
			return fmt.Errorf("cannot enforce the %s limit here: %s", c, why)
		}
	}
	return nil
}

// Child returns the v1 cgroups (Tracking.LimitCgroups) of the child alloc
// with limits l: one per hierarchy l needs, none for controllers of the
// v2 tree.
func (lc LimitCgroups) Child(alloc string, l needs.Limits) []string {
	var out []string
	for _, c := range wanted(l) {
		if dir, ok := lc.V1[c]; ok && !slices.Contains(out, filepath.Join(dir, alloc)) {
			out = append(out, filepath.Join(dir, alloc))
		}
	}
	return out
}

// Dirs are the master's v1 directories, each once.
func (lc LimitCgroups) Dirs() []string {
	var out []string
	for _, c := range LimitControllers {
		if d, ok := lc.V1[c]; ok && !slices.Contains(out, d) {
			out = append(out, d)
		}
	}
	return out
}

// String says where each controller is, for the master's log.
func (lc LimitCgroups) String() string {
	var parts []string
	for _, c := range LimitControllers {
		switch {
		case slices.Contains(lc.V2, c):
			parts = append(parts, c+": cgroup v2")
		case lc.V1[c] != "":
			parts = append(parts, c+": cgroup v1 "+lc.V1[c])
		default:
			parts = append(parts, c+": none")
		}
	}
	return strings.Join(parts, ", ")
}

// wanted lists the controllers limits l need.
func wanted(l needs.Limits) []string {
	var out []string
	if l.Memory != 0 {
		out = append(out, CtrlMemory)
	}
	if l.CPUs != 0 {
		out = append(out, CtrlCPU)
	}
	if l.PIDs != 0 {
		out = append(out, CtrlPIDs)
	}
	return out
}

// enableV2 enables the controllers for the sub-cgroups of dir, from the
// mount's root down, and returns those enabled in dir's
// cgroup.subtree_control, with why each other one is not.
func enableV2(dir string, ctrls []string) ([]string, map[string]string) {
	why := map[string]string{}
	mount := dir
	for isCgroup2(filepath.Dir(mount)) && filepath.Dir(mount) != mount {
		mount = filepath.Dir(mount)
	}
	chain := []string{mount}
	if rel, err := filepath.Rel(mount, dir); err == nil && rel != "." {
		for _, part := range strings.Split(rel, "/") {
			chain = append(chain, filepath.Join(chain[len(chain)-1], part))
		}
	}
	for _, d := range chain {
		offered := strings.Fields(readString(filepath.Join(d, "cgroup.controllers")))
		for _, c := range ctrls {
			if why[c] != "" {
				continue
			}
			if !slices.Contains(offered, c) {
				why[c] = fmt.Sprintf("%s does not offer it (cgroup.controllers: %q)", d, strings.Join(offered, " "))
				continue
			}
			if err := os.WriteFile(filepath.Join(d, "cgroup.subtree_control"), []byte("+"+c), 0); err != nil {
				why[c] = fmt.Sprintf("enable it in %s/cgroup.subtree_control: %v", d, err)
			}
		}
	}
	var out []string
	enabled := strings.Fields(readString(filepath.Join(dir, "cgroup.subtree_control")))
	for _, c := range ctrls {
		if slices.Contains(enabled, c) {
			out = append(out, c)
		} else if why[c] == "" {
			why[c] = "not enabled in " + dir
		}
	}
	return out, why
}

// v1Cgroup returns the directory name under the root of the v1 hierarchy
// of controller c, as the master's v2 cgroup is under the v2 root. It is
// created with the first child that needs it.
func v1Cgroup(mountinfo []byte, c, name string) (string, error) {
	mount := v1Mount(mountinfo, c)
	if mount == "" {
		return "", fmt.Errorf("no cgroup v1 %s hierarchy is mounted read-write", c)
	}
	if err := unix.Access(filepath.Join(mount, "cgroup.procs"), unix.W_OK); err != nil {
		return "", fmt.Errorf("cgroup v1 %s: %s/cgroup.procs: %w", c, mount, err)
	}
	if c != CtrlPIDs { // the root of the pids hierarchy has no pids.max
		if f := limitFile(c, false); !exists(filepath.Join(mount, f)) {
			return "", fmt.Errorf("cgroup v1 %s: %s has no %s (a kernel built without it?)", c, mount, f)
		}
	}
	return filepath.Join(mount, name), nil
}

// v1Mount returns the mount point of the read-write cgroup v1 hierarchy
// that has controller c, or "".
func v1Mount(mountinfo []byte, c string) string {
	sc := bufio.NewScanner(bytes.NewReader(mountinfo))
	for sc.Scan() {
		pre, post, ok := strings.Cut(sc.Text(), " - ")
		if !ok {
			continue
		}
		f, g := strings.Fields(pre), strings.Fields(post)
		if len(f) < 6 || len(g) < 3 || g[0] != "cgroup" || slices.Contains(strings.Split(f[5], ","), "ro") {
			continue
		}
		if slices.Contains(strings.Split(g[2], ","), c) {
			return unescapeMount(f[4])
		}
	}
	return ""
}

// limitFile is the file that holds controller c's limit.
func limitFile(c string, v2 bool) string {
	switch {
	case c == CtrlMemory && v2:
		return "memory.max"
	case c == CtrlMemory:
		return "memory.limit_in_bytes"
	case c == CtrlCPU && v2:
		return "cpu.max"
	case c == CtrlCPU:
		return "cpu.cfs_quota_us"
	}
	return "pids.max"
}

// limiter applies a child's limits to its cgroups and reads them back: its
// v2 cgroup (Tracking.Cgroup, where the controllers are enabled) and its v1
// cgroups (Tracking.LimitCgroups). Its methods are safe for concurrent use
// once apply has returned.
type limiter struct {
	v2     string   // the child's v2 cgroup, "" without
	v1     []string // the child's v1 cgroups
	limits needs.Limits
}

// newLimiter returns the limiter of a child tracked as tr; nil if it has no
// cgroup at all.
func newLimiter(tr Tracking, l needs.Limits) *limiter {
	if len(tr.LimitCgroups) == 0 && tr.Cgroup == "" {
		return nil
	}
	return &limiter{v2: tr.Cgroup, v1: tr.LimitCgroups, limits: l}
}

// dir returns the child's cgroup that has controller c, and whether it is
// v2.
func (lm *limiter) dir(c string) (string, bool) {
	if lm.v2 != "" && exists(filepath.Join(lm.v2, limitFile(c, true))) {
		return lm.v2, true
	}
	for _, d := range lm.v1 {
		if exists(filepath.Join(d, limitFile(c, false))) {
			return d, false
		}
	}
	return "", false
}

// makeV1 creates the v1 cgroups; a left-over empty one is reused, a
// populated one refused.
func (lm *limiter) makeV1() error {
	for _, d := range lm.v1 {
		if err := os.MkdirAll(filepath.Dir(d), 0o755); err != nil {
			return fmt.Errorf("make cgroup %s: %w", filepath.Dir(d), err)
		}
		err := os.Mkdir(d, 0o755)
		if errors.Is(err, os.ErrExist) {
			if procs, _ := readPids(filepath.Join(d, "cgroup.procs")); len(procs) > 0 {
				return fmt.Errorf("make cgroup %s: %w", d, ErrCgroupInUse)
			}
			continue
		}
		if err != nil {
			return fmt.Errorf("make cgroup %s: %w", d, err)
		}
	}
	return nil
}

// apply writes the limits. The cgroups exist and are empty.
func (lm *limiter) apply() error {
	l := lm.limits
	write := func(dir, file, v string) error {
		if err := os.WriteFile(filepath.Join(dir, file), []byte(v), 0); err != nil {
			return fmt.Errorf("set %s/%s to %s: %w", dir, file, v, err)
		}
		return nil
	}
	need := func(c string) (string, bool, error) {
		d, v2 := lm.dir(c)
		if d == "" {
			return "", false, fmt.Errorf("no %s controller in the child's cgroups %s", c, strings.Join(append([]string{lm.v2}, lm.v1...), " "))
		}
		return d, v2, nil
	}
	if l.Memory != 0 {
		d, v2, err := need(CtrlMemory)
		if err != nil {
			return err
		}
		b := strconv.FormatInt(int64(l.Memory), 10)
		if v2 {
			if err := write(d, "memory.max", b); err != nil {
				return err
			}
			// No swap, so that the limit is one, and the whole child is
			// killed on OOM, as a v1 child is once its leader is.
			if exists(filepath.Join(d, "memory.swap.max")) {
				if err := write(d, "memory.swap.max", "0"); err != nil {
					return err
				}
			}
			_ = write(d, "memory.oom.group", "1")
		} else {
			if err := write(d, "memory.limit_in_bytes", b); err != nil {
				return err
			}
			if exists(filepath.Join(d, "memory.memsw.limit_in_bytes")) { // swap accounting is on
				if err := write(d, "memory.memsw.limit_in_bytes", b); err != nil {
					return err
				}
			}
		}
	}
	if l.CPUs != 0 {
		d, v2, err := need(CtrlCPU)
		if err != nil {
			return err
		}
		quota := strconv.FormatInt(int64(math.Round(l.CPUs*cfsPeriod)), 10)
		if v2 {
			if err := write(d, "cpu.max", quota+" "+strconv.Itoa(cfsPeriod)); err != nil {
				return err
			}
		} else {
			if err := write(d, "cpu.cfs_period_us", strconv.Itoa(cfsPeriod)); err != nil {
				return err
			}
			if err := write(d, "cpu.cfs_quota_us", quota); err != nil {
				return err
			}
		}
	}
	if l.PIDs != 0 {
		d, _, err := need(CtrlPIDs)
		if err != nil {
			return err
		}
		if err := write(d, "pids.max", strconv.Itoa(l.PIDs)); err != nil {
			return err
		}
	}
	return nil
}

// enter puts pid in the v1 cgroups.
func (lm *limiter) enter(pid int) error {
	for _, d := range lm.v1 {
		if err := os.WriteFile(filepath.Join(d, "cgroup.procs"), []byte(strconv.Itoa(pid)), 0); err != nil {
			return fmt.Errorf("enter cgroup %s: %w", d, err)
		}
	}
	return nil
}

// oomKilled reports whether the kernel's OOM killer killed a process of
// the child: "oom_kill N" in memory.events (v2) or memory.oom_control (v1)
// of its memory cgroup, N > 0. Without a memory cgroup it cannot tell.
func (lm *limiter) oomKilled() bool {
	if lm == nil {
		return false
	}
	d, v2 := lm.dir(CtrlMemory)
	if d == "" {
		return false
	}
	file := "memory.oom_control"
	if v2 {
		file = "memory.events"
	}
	n, _ := keyValue(readString(filepath.Join(d, file)), "oom_kill")
	return n > 0
}

// Usage is what a child uses, read from its cgroups. A figure the
// machine cannot give is -1.
type Usage struct {
	// Memory is the memory charged to the child now, in bytes.
	Memory int64
	// CPUTime is the CPU time the child has used since it started.
	CPUTime time.Duration
	// PIDs is how many processes and threads it has now.
	PIDs int64
}

// usage reads the child's usage from its cgroups.
func (lm *limiter) usage() Usage {
	u := Usage{Memory: -1, CPUTime: -1, PIDs: -1}
	if lm == nil {
		return u
	}
	if lm.v2 != "" {
		if n, ok := keyValue(readString(filepath.Join(lm.v2, "cpu.stat")), "usage_usec"); ok {
			u.CPUTime = time.Duration(n) * time.Microsecond
		}
	}
	if lm == nil {
		return u
	}
	if d, v2 := lm.dir(CtrlMemory); d != "" {
		f := "memory.usage_in_bytes"
		if v2 {
			f = "memory.current"
		}
		if n, err := strconv.ParseInt(strings.TrimSpace(readString(filepath.Join(d, f))), 10, 64); err == nil {
			u.Memory = n
		}
	}
	if d, _ := lm.dir(CtrlPIDs); d != "" {
		if n, err := strconv.ParseInt(strings.TrimSpace(readString(filepath.Join(d, "pids.current"))), 10, 64); err == nil {
			u.PIDs = n
		}
	}
	if u.CPUTime < 0 {
		for _, d := range lm.v1 {
			if n, err := strconv.ParseInt(strings.TrimSpace(readString(filepath.Join(d, "cpuacct.usage"))), 10, 64); err == nil {
				u.CPUTime = time.Duration(n)
				break
			}
		}
	}
	return u
}

// rmdirV1 removes the empty v1 cgroups of a child that never ran.
func (lm *limiter) rmdirV1() {
	for _, d := range lm.v1 {
		_ = unix.Rmdir(d)
	}
}

// removeV1 removes the child's v1 cgroups once nothing of it is left.
// A process still in one (one that escaped process-group tracking) is
// sent SIGKILL first, and waited for until ctx ends.
func removeV1(ctx context.Context, dirs []string) {
	for _, d := range dirs {
		g := &cgroupTracker{dir: d}
		for {
			pids, err := g.procs()
			if err != nil || len(pids) == 0 {
				break
			}
			_ = g.signal(syscall.SIGKILL)
			select {
			case <-ctx.Done():
				return
			case <-time.After(20 * time.Millisecond):
			}
		}
		_ = unix.Rmdir(d)
	}
}

func readString(path string) string {
	b, _ := os.ReadFile(path)
	return string(b)
}

func readPids(path string) ([]int, error) {
	return (&cgroupTracker{dir: filepath.Dir(path)}).procs()
}

func exists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}

// keyValue finds "key N" among the lines of s.
func keyValue(s, key string) (int64, bool) {
	for line := range strings.SplitSeq(s, "\n") {
		if v, ok := strings.CutPrefix(line, key+" "); ok {
			n, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
			return n, err == nil
		}
	}
	return 0, false
}
