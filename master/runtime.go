package master

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"
)

// DefaultRuntimeCheck is how often a master checks its runtime directory
// (Options.RuntimeCheck).
const DefaultRuntimeCheck = 5 * time.Second

// runtimeLoop checks the runtime directory every period until the Agent
// closes or leaves.
func (a *Agent) runtimeLoop(period time.Duration) {
	if period <= 0 {
		period = DefaultRuntimeCheck
	}
	t := time.NewTicker(period)
	defer t.Stop()
	lost := map[string]bool{} // database files already reported deleted
	for {
		select {
		case <-a.ctx.Done():
			return
		case <-t.C:
			a.checkRuntime(lost)
		}
	}
}

// checkRuntime recreates what the master needs of its runtime directory
// when it was deleted under it (rm -rf, a tmp cleaner): the directory,
// master.id with the id in memory (so the master keeps its identity and
// its cgroup, which is named after the directory's path), the socket
// directory (and its record, for one under the temp directory; see
// ensureSocketDir) and the log directory, the control socket and every child's control socket.
// Each repair is logged at ERROR. The databases cannot be brought back:
// the master keeps using the deleted files until it stops, and says so
// once; after a restart, the children no record names are found by their
// cgroup or BERTH_MASTER and stopped (adoptChildren), so none is left
// running unowned next to its replacement. It returns what it repaired.
func (a *Agent) checkRuntime(lost map[string]bool) []string {
	rt := a.cfg.RuntimeDirectory
	var fixed []string
	fix := func(what string, err error) {
		if err != nil {
			a.log.Error("runtime directory: cannot recreate "+what, "runtime", rt, "err", err)
			return
		}
		fixed = append(fixed, what)
	}
	if gone(rt) {
		fix("runtime directory", os.MkdirAll(rt, 0o700))
	}
	if idPath := filepath.Join(rt, "master.id"); gone(idPath) {
		fix("master.id", os.WriteFile(idPath, []byte(a.id+"\n"), 0o600))
	}
	if gone(a.sockDir) || a.sockDir != filepath.Join(rt, "sock") && gone(filepath.Join(rt, sockDirFile)) {
		// Made again by exclusive create, recorded again, and checked.
		fix(a.sockDir, ensureSocketDir(rt, a.sockDir))
	}
	if gone(a.logDir) {
		err := os.MkdirAll(a.logDir, 0o700)
		if err == nil {
			err = os.Chmod(a.logDir, 0o700)
		}
		fix(a.logDir, err)
	}
	for _, name := range []string{"master.db", "ports.db"} {
		if p := filepath.Join(rt, name); gone(p) && !lost[name] {
			lost[name] = true
			a.log.Error("runtime directory: "+name+" was deleted while the master runs; it keeps using the deleted file until it stops, "+
				"and after a restart stops the children no record names (found by "+a.track.finder()+")", "runtime", rt)
		}
	}
	if gone(filepath.Join(a.sockDir, "master.sock")) {
		if err := a.relistenControl(); !errors.Is(err, ErrClosed) {
			fix("control socket", err)
		}
	}
	a.mu.Lock()
	kids := make([]*child, 0, len(a.children))
	for _, c := range a.children {
		kids = append(kids, c)
	}
	a.mu.Unlock()
	for _, c := range kids {
		c.mu.Lock()
		serving := c.pipe != nil && !c.pipeClosed
		c.mu.Unlock()
		if serving && gone(c.pipePath) {
			if err := a.relistenPipe(c); !errors.Is(err, ErrClosed) {
				fix(fmt.Sprintf("pipe of %s", c.instance), err)
			}
		}
	}
	if len(fixed) > 0 {
		a.log.Error("runtime directory was damaged while the master ran; recreated what it needs", "runtime", rt, "recreated", fixed)
	}
	return fixed
}

// gone reports whether path does not exist.
func gone(path string) bool {
	_, err := os.Lstat(path)
	return errors.Is(err, os.ErrNotExist)
}
