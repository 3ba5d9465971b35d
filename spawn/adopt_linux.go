package spawn

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"berth/needs"
)

// Adopt takes over a child this program did not start, or started in an
// earlier life: the leader of a process group, named by its pid and the
// start time saved from Child.StartTime, tracked as tr says (the Tracking
// of its Spec). It is how a restarted master re-attaches the children its
// predecessor left running.
//
// Adopt opens a pidfd for pid, then checks that the process it names is
// alive, has the recorded start time and, with a cgroup, is in it. A pid
// now used by an unrelated process gives ErrPIDReused, and a process that
// has exited gives ErrGone; either way nothing is signalled. Other errors
// (a kernel without pidfds, no file descriptors left) say the process
// could not be watched.
//
// The returned Child behaves like a started one, with these differences:
//
//   - The leader's exit is seen through the pidfd (it is not this
//     program's child, so it cannot be waited for); the rest of the child
//     is then sent SIGKILL and Done is closed once nothing of it is left,
//     as for a started child. Exit then returns Exit{Code: -1, Err:
//     ErrExitUnknown}: the status is lost.
//   - Without a cgroup, Signal reaches the process group only while the
//     leader provably holds the group id (its start time is read again
//     first), and otherwise only the processes that carry tr.Marks: a
//     group id that was reused meanwhile is never signalled.
//   - Release ends the watch without signalling the process.
//
// Adopt starts one goroutine, which waits in the runtime's poller (no
// thread is held) and ends once the child is gone, or at Release.
func Adopt(pid int, startTime uint64, tr Tracking) (*Child, error) {
	if pid <= 1 {
		return nil, fmt.Errorf("adopt pid %d: %w", pid, ErrGone) // never init, never kill(-0) or kill(-1)
	}
	if startTime == 0 {
		return nil, fmt.Errorf("adopt pid %d: no start time to check it against: %w", pid, ErrPIDReused)
	}
	fd, err := unix.PidfdOpen(pid, unix.PIDFD_NONBLOCK)
	if errors.Is(err, unix.ESRCH) {
		return nil, fmt.Errorf("adopt pid %d: %w", pid, ErrGone)
	}
	if err != nil {
		return nil, fmt.Errorf("adopt pid %d: pidfd_open: %w", pid, err)
	}
	if err := checkAdoptable(fd, pid, startTime); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("adopt pid %d: %w", pid, err)
	}
	// The pidfd pins the process: found in the cgroup now, it is the one.
	if tr.Cgroup != "" && !(&cgroupTracker{dir: tr.Cgroup}).contains(pid) {
		unix.Close(fd)
		return nil, fmt.Errorf("adopt pid %d: not in cgroup %s: %w", pid, tr.Cgroup, ErrPIDReused)
	}
	f := os.NewFile(uintptr(fd), "pidfd:"+strconv.Itoa(pid))
	// A pidfd opened non-blocking is registered with the runtime's poller;
	// deadlines work only then, so this checks that Done can be watched.
	if err := f.SetReadDeadline(time.Time{}); err != nil {
		f.Close()
		return nil, fmt.Errorf("adopt pid %d: pidfd cannot be polled: %w", pid, err)
	}
	rc, err := f.SyscallConn()
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("adopt pid %d: %w", pid, err)
	}
	p := &adoptedProcess{pid: pid, startTime: startTime, f: f, rc: rc,
		done: make(chan struct{}), watched: make(chan struct{})}
	p.ctx, p.cancel = context.WithCancel(context.Background())
	if tr.Cgroup != "" {
		p.track = &cgroupTracker{dir: tr.Cgroup}
	} else {
		p.track = &groupTracker{pgid: pid, since: startTime, marks: tr.Marks, held: p.leaderHolds}
	}
	p.limits = newLimiter(tr, needs.Limits{})
	go p.watch()
	return &Child{proc: p, startTime: startTime}, nil
}

// checkAdoptable checks that the process pidfd names is pid with the given
// start time and alive. The pidfd was opened first: if the start time read
// afterwards matches and the pidfd still names a live process, they are
// the same process, since a pid names one process at a time.
func checkAdoptable(pidfd, pid int, startTime uint64) error {
	st, err := readProc(pid)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return ErrGone
		}
		return err
	}
	if st.start != startTime {
		return fmt.Errorf("%w (recorded %d, now %d)", ErrPIDReused, startTime, st.start)
	}
	if st.state == 'Z' || st.state == 'X' {
		return ErrGone
	}
	// Signal 0 checks existence only. EPERM (a child that changed its user
	// ids) still means alive: it can be watched, if not signalled.
	if err := unix.PidfdSendSignal(pidfd, 0, nil, 0); errors.Is(err, unix.ESRCH) {
		return ErrGone
	}
	return nil
}

// adoptedProcess is a Process found by Adopt. Its goroutine, watch, waits
// for the pidfd to become readable (the leader exited), kills what is left
// of the child, waits until nothing is and closes done; Release ends it
// early.
type adoptedProcess struct {
	pid       int
	startTime uint64
	track     tracker
	limits    *limiter // nil without cgroups
	f         *os.File // the pidfd, in the runtime poller
	rc        syscall.RawConn
	done      chan struct{}
	exit      Exit            // written by watch before done is closed
	watched   chan struct{}   // closed when watch returns
	ctx       context.Context // cancelled by release
	cancel    context.CancelFunc
	closeOnce sync.Once
}

func (p *adoptedProcess) PID() int              { return p.pid }
func (p *adoptedProcess) StartTime() uint64     { return p.startTime }
func (p *adoptedProcess) Done() <-chan struct{} { return p.done }
func (p *adoptedProcess) Tracking() string      { return p.track.String() }
func (p *adoptedProcess) Usage() Usage          { return p.limits.usage() }

func (p *adoptedProcess) Exit() Exit {
	select {
	case <-p.done:
		return p.exit
	default:
		return Exit{Code: -1, Err: ErrNotExited}
	}
}

// watch waits until the leader exits, then sends SIGKILL to what is left
// of the child, waits until nothing is, and closes done. A Release closes
// the pidfd, which ends the wait with an error, or cancels the wait for
// the rest: then done stays open.
func (p *adoptedProcess) watch() {
	defer close(p.watched)
	defer p.closeFile()
	err := p.rc.Read(func(fd uintptr) bool { return pidfdExited(int(fd)) })
	if err != nil {
		if p.ctx.Err() != nil {
			return // released
		}
		// The runtime's poller failed on the pidfd without a release:
		// watch it here rather than never close done (CI once hung in
		// Stop of an adopted child whose watch had returned).
		if !p.pollExited() {
			return // released meanwhile
		}
	}
	p.track.kill()
	if p.track.waitEmpty(p.ctx) != nil {
		return // released
	}
	oom := p.limits.oomKilled() // before the cgroups go
	p.track.cleanup()
	if p.limits != nil {
		removeV1(p.ctx, p.limits.v1)
	}
	p.exit = Exit{Code: -1, Err: ErrExitUnknown, OOMKilled: oom}
	close(p.done)
}

// pollExited polls until the adopted process has exited (true) or it is
// released (false): through its pidfd every 50 ms, or, if the pidfd can no
// longer be used, through /proc (gone, or its pid now names another
// process).
func (p *adoptedProcess) pollExited() bool {
	t := time.NewTicker(50 * time.Millisecond)
	defer t.Stop()
	for {
		exited := false
		if err := p.rc.Control(func(fd uintptr) { exited = pidfdExited(int(fd)) }); err != nil {
			st, err := readProc(p.pid)
			exited = err != nil || st.start != p.startTime || gone(p.pid, st)
		}
		if exited {
			return true
		}
		select {
		case <-p.ctx.Done():
			return false
		case <-t.C:
		}
	}
}

// pidfdExited reports whether the process of pidfd has exited: a pidfd
// polls readable from then on.
func pidfdExited(pidfd int) bool {
	fds := []unix.PollFd{{Fd: int32(pidfd), Events: unix.POLLIN}}
	for {
		n, err := unix.Poll(fds, 0)
		if err == unix.EINTR {
			continue
		}
		return err == nil && n > 0 && fds[0].Revents != 0
	}
}

func (p *adoptedProcess) closeFile() { p.closeOnce.Do(func() { p.cancel(); p.f.Close() }) }

// release ends the watch without signalling the process and waits for it.
func (p *adoptedProcess) release() {
	p.closeFile()
	<-p.watched
}

// leaderHolds runs kill if the leader still runs (or is a zombie) with its
// adopted start time and leads its group, so that the group id is its
// group's, and says whether it did. The id could be freed and reused
// between the check and the kill only if the leader and every member
// exited and pids wrapped around within microseconds.
func (p *adoptedProcess) leaderHolds(kill func()) bool {
	st, err := readProc(p.pid)
	if err != nil || st.start != p.startTime || st.pgrp != p.pid {
		return false
	}
	kill()
	return true
}

// Signal sends sig to every process of the child that can be proven its
// own (see Adopt). SIGKILL to a cgroup goes through cgroup.kill. A leader
// that left its group and carries no marks is signalled through its pidfd.
func (p *adoptedProcess) Signal(sig syscall.Signal) error {
	select {
	case <-p.done:
		return os.ErrProcessDone
	default:
	}
	var err error
	if sig == syscall.SIGKILL {
		p.track.kill()
	} else {
		err = p.track.signal(sig)
	}
	if g, ok := p.track.(*groupTracker); ok && len(g.marks) == 0 {
		if st, rerr := readProc(p.pid); rerr == nil && st.start == p.startTime && st.pgrp != p.pid {
			if lerr := p.pidfdSignal(sig); lerr == nil {
				err = nil
			}
		}
	}
	return err
}

func (p *adoptedProcess) pidfdSignal(sig syscall.Signal) error {
	var serr error
	if err := p.rc.Control(func(fd uintptr) { serr = unix.PidfdSendSignal(int(fd), sig, nil, 0) }); err != nil {
		return os.ErrProcessDone // released or closed after the exit
	}
	if errors.Is(serr, unix.ESRCH) {
		return os.ErrProcessDone
	}
	return serr
}

func killGroup(pgid int, sig syscall.Signal) error {
	if pgid <= 1 {
		return fmt.Errorf("refusing to signal process group %d", pgid) // kill(-1) reaches every process
	}
	err := syscall.Kill(-pgid, sig)
	if errors.Is(err, syscall.ESRCH) {
		return os.ErrProcessDone
	}
	return err
}
