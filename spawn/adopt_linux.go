package spawn

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Adopt takes over a child this program did not start, or started in an
// earlier life: the leader of a process group, named by its pid and the
// start time saved from Child.StartTime. It is how a restarted master
// re-attaches the children its predecessor left running.
//
// Adopt opens a pidfd for pid, then checks that the process it names is
// alive and has the recorded start time. A pid now used by an unrelated
// process gives ErrPIDReused, and a process that has exited gives ErrGone;
// either way nothing is signalled. Other errors (a kernel without pidfds,
// no file descriptors left) say the process could not be watched.
//
// The returned Child behaves like a started one, with these differences:
//
//   - Done is closed when the leader exits, seen through the pidfd (it is
//     not this program's child, so it cannot be waited for); the rest of its
//     process group is then sent SIGKILL, as for a started child. Exit then
//     returns Exit{Code: -1, Err: ErrExitUnknown}: the status is lost.
//   - Signal re-reads the leader's start time before it signals the group,
//     so a pid that was reused meanwhile is never signalled.
//   - Release ends the watch without signalling the process.
//
// Adopt starts one goroutine, which waits in the runtime's poller (no
// thread is held) and ends when the leader exits or at Release.
func Adopt(pid int, startTime uint64) (*Child, error) {
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
// for the pidfd to become readable (the leader exited), sweeps the group
// and closes done; Release ends it early.
type adoptedProcess struct {
	pid       int
	startTime uint64
	f         *os.File // the pidfd, in the runtime poller
	rc        syscall.RawConn
	done      chan struct{}
	exit      Exit          // written by watch before done is closed
	watched   chan struct{} // closed when watch returns
	closeOnce sync.Once
}

func (p *adoptedProcess) PID() int              { return p.pid }
func (p *adoptedProcess) StartTime() uint64     { return p.startTime }
func (p *adoptedProcess) Done() <-chan struct{} { return p.done }

func (p *adoptedProcess) Exit() Exit {
	select {
	case <-p.done:
		return p.exit
	default:
		return Exit{Code: -1, Err: ErrNotExited}
	}
}

// watch waits until the leader exits, then sends SIGKILL to what is left of
// its group and closes done. A Release closes the pidfd, which ends the
// wait with an error: then done stays open.
func (p *adoptedProcess) watch() {
	defer close(p.watched)
	defer p.closeFile()
	err := p.rc.Read(func(fd uintptr) bool { return pidfdExited(int(fd)) })
	if err != nil {
		return // released
	}
	if len(GroupMembers(p.pid, p.startTime)) > 0 {
		_ = syscall.Kill(-p.pid, syscall.SIGKILL)
	}
	p.exit = Exit{Code: -1, Err: ErrExitUnknown}
	close(p.done)
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

func (p *adoptedProcess) closeFile() { p.closeOnce.Do(func() { p.f.Close() }) }

// release ends the watch without signalling the process and waits for it.
func (p *adoptedProcess) release() {
	p.closeFile()
	<-p.watched
}

// Signal sends sig to the child's process group, with the checks a process
// that is not our child needs. The leader's /proc entry is read first:
//
//   - If it still has the adopted start time and leads its group, one
//     kill(-pgid) reaches it and every member, as for a started child. The
//     group id cannot name another group meanwhile: the kernel hands out a
//     pid as a new group's id only to that pid's own process.
//   - If it has left its group (setsid), it is signalled through its pidfd,
//     which cannot reach a process that reused its pid, and the group, if
//     any member is left, by kill(-pgid).
//   - If the pid now belongs to a process with another start time, the
//     leader and its whole group are gone (the kernel does not reuse a pid
//     that is still a group's id): nothing is signalled.
//   - If the leader is gone, the members left in its group are signalled.
func (p *adoptedProcess) Signal(sig syscall.Signal) error {
	select {
	case <-p.done:
		return os.ErrProcessDone
	default:
	}
	st, err := readProc(p.pid)
	switch {
	case err == nil && st.start == p.startTime && st.pgrp == p.pid:
		return killGroup(p.pid, sig)
	case err == nil && st.start == p.startTime:
		lerr := p.pidfdSignal(sig)
		if len(GroupMembers(p.pid, p.startTime)) > 0 {
			killGroup(p.pid, sig)
		}
		return lerr
	case err == nil:
		return os.ErrProcessDone
	}
	if len(GroupMembers(p.pid, p.startTime)) == 0 {
		return os.ErrProcessDone
	}
	return killGroup(p.pid, sig)
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
