package master

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"

	bolt "go.etcd.io/bbolt"

	"berth/driverplugin"
	"berth/needs"
	"berth/pipes"
	"berth/spawn"
)

// DriverPrefix starts the file name of every external driver in the
// plugins directory: berth-driver-<name>.
const DriverPrefix = "berth-driver-"

// openDrivers starts (or re-attaches to) the external drivers of the
// plugins directory, one driverplugin.Plugin each, before the children of
// the previous run are adopted. A binary that cannot be started is kept:
// its Plugin reports it unavailable, with the reason, and retries with
// back-off. It runs in Open, before any goroutine of the Agent.
func (a *Agent) openDrivers(ctx context.Context) {
	a.drivers = map[string]*driverplugin.Plugin{}
	dir := a.cfg.PluginsDir()
	ents, err := os.ReadDir(dir)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		a.log.Debug("no plugins directory: built-in exec driver only", "dir", dir)
	case err != nil:
		a.log.Error("read plugins directory: built-in exec driver only", "dir", dir, "err", err)
	default:
		if err := checkOwned(dir, true); err != nil {
			a.log.Error("plugins directory refused: built-in exec driver only", "dir", dir, "err", err)
			ents = nil
		}
	}
	saved, err := a.state.driverStates()
	if err != nil {
		a.log.Error("read driver re-attach states", "err", err)
	}
	for _, e := range ents {
		name, ok := strings.CutPrefix(e.Name(), DriverPrefix)
		if !ok {
			continue
		}
		path := filepath.Join(dir, e.Name())
		if err := checkDriverFile(name, path); err != nil {
			a.log.Error("skipping driver", "path", path, "err", err)
			continue
		}
		a.drivers[name] = driverplugin.Open(ctx, driverplugin.Config{
			Name: name, Path: path, Logger: a.log, Reattach: saved[name],
			PingInterval: a.opts.DriverPingInterval, PingTimeout: a.opts.DriverPingTimeout,
			OnConnect: func(st *driverplugin.ReattachState) {
				if err := a.state.putDriver(name, st); err != nil {
					a.log.Error("persist driver re-attach state", "driver", name, "err", err)
				}
			},
		})
		fp := a.drivers[name].Fingerprint()
		a.log.Info("driver", "driver", name, "version", fp.Version, "available", fp.Available, "reason", fp.Reason,
			"pid", a.drivers[name].PID())
	}
	for name := range saved {
		if a.drivers[name] == nil {
			a.state.deleteDriver(name)
		}
	}
}

// checkDriverFile refuses a driver binary the master should not run: a bad
// name, the built-in's name, not an executable regular file, or one that
// others than its owner may change (anyone who can write it runs code as
// the master).
func checkDriverFile(name, path string) error {
	if err := needs.ValidateName("driver", name); err != nil {
		return err
	}
	if name == needs.DefaultDriver {
		return fmt.Errorf("%q is the built-in driver's name", name)
	}
	fi, err := os.Stat(path)
	if err != nil {
		return err
	}
	switch m := fi.Mode(); {
	case !m.IsRegular():
		return errors.New("not a regular file")
	case m.Perm()&0o111 == 0:
		return errors.New("not executable")
	}
	return checkOwned(path, false)
}

// checkOwned refuses a file or directory that others than the master's
// user (or root) may change: one owned by another user, or writable by
// group or others. Anyone who can write a driver binary, or add or rename
// one in the plugins directory, runs code as the master.
func checkOwned(path string, dir bool) error {
	fi, err := os.Stat(path)
	if err != nil {
		return err
	}
	if dir && !fi.IsDir() {
		return errors.New("not a directory")
	}
	if m := fi.Mode().Perm(); m&0o022 != 0 {
		return fmt.Errorf("writable by group or others (mode %v): chmod go-w %s", m, path)
	}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		if uid := os.Geteuid(); int(st.Uid) != uid && st.Uid != 0 {
			return fmt.Errorf("owned by uid %d, not by this master's user (uid %d) nor root", st.Uid, uid)
		}
	}
	return nil
}

// driverFor returns the driver of need n: the built-in for exec, else its
// Plugin (nil, with an error, if this master has none of that name).
func (a *Agent) driverFor(n *needs.Need) (spawn.Driver, *driverplugin.Plugin, error) {
	name := n.DriverName()
	if name == needs.DefaultDriver {
		return a.opts.Driver, nil, nil
	}
	p := a.drivers[name]
	if p == nil {
		return nil, nil, fmt.Errorf("no driver %q on master %s (plugins directory %s)", name, a.name, a.cfg.PluginsDir())
	}
	return p, p, nil
}

// driverRefusal says why this master cannot run need n with its driver,
// or "".
func (a *Agent) driverRefusal(n *needs.Need) string {
	_, p, err := a.driverFor(n)
	switch {
	case err != nil:
		return err.Error()
	case p == nil:
		if len(n.DriverOpts) > 0 {
			return "driver exec takes no options (--driver-opt)"
		}
		return ""
	}
	fp := p.Fingerprint()
	switch {
	case !fp.Available:
		return fmt.Sprintf("driver %s unavailable: %s", p.Name(), fp.Reason)
	case n.SocketActivation:
		return fmt.Sprintf("driver %s: socket activation is not supported by external drivers", p.Name())
	case !n.Limit().IsZero() && !fp.ResourceLimits:
		return fmt.Sprintf("driver %s enforces no resource limits (--memory, --cpus, --pids)", p.Name())
	case len(n.DriverOpts) > 0:
		if err := p.CheckOptions(context.Background(), n.DriverOpts); err != nil {
			return fmt.Sprintf("driver %s: %v", p.Name(), err)
		}
	}
	return ""
}

// Drivers lists the master's drivers, exec first, then by name.
func (a *Agent) Drivers() []pipes.DriverInfo {
	out := []pipes.DriverInfo{{Name: needs.DefaultDriver, Builtin: true, Available: true, Signals: true, SocketActivation: true}}
	names := make([]string, 0, len(a.drivers))
	for n := range a.drivers {
		names = append(names, n)
	}
	slices.Sort(names)
	for _, n := range names {
		p := a.drivers[n]
		fp := p.Fingerprint()
		out = append(out, pipes.DriverInfo{Name: n, Version: fp.Version, Available: fp.Available, Reason: fp.Reason,
			Signals: fp.Signals, ResourceLimits: fp.ResourceLimits, SocketActivation: false,
			PID: p.PID(), Restarts: p.Restarts()})
	}
	return out
}

// closeDrivers ends every driver process (after the children are
// stopped) and forgets their re-attach states; with leave it detaches
// instead, leaving them running for the next master. Detaching a closed
// driver does nothing.
func (a *Agent) closeDrivers(leave bool) {
	for name, p := range a.drivers {
		if leave {
			p.Detach()
			continue
		}
		p.Close()
		if err := a.state.deleteDriver(name); err != nil {
			a.log.Error("delete driver re-attach state", "driver", name, "err", err)
		}
	}
}

// recoverChild re-attaches to a child of the previous run through its
// external driver. ok is false when the record is not an external
// driver's, or its driver is gone: the caller then adopts the process
// itself (spawn.Adopt).
func (a *Agent) recoverChild(r *record) (*spawn.Child, bool) {
	if r.Driver == "" || r.Driver == needs.DefaultDriver || r.Handle == nil {
		return nil, false
	}
	p := a.drivers[r.Driver]
	if p == nil {
		a.log.Warn("the driver of a child of the previous run is gone; watching the process directly",
			"instance", r.Instance, "driver", r.Driver)
		return nil, false
	}
	proc, err := p.Recover(*r.Handle)
	if err != nil {
		a.log.Error("re-attach child through its driver; watching the process directly", "instance", r.Instance, "driver", r.Driver, "err", err)
		return nil, false
	}
	return spawn.Attach(proc), true
}

// The drivers bucket of master.db: key = driver name, value =
// driverplugin.ReattachState as JSON.
var bucketDrivers = []byte("drivers")

func (s *stateDB) putDriver(name string, st *driverplugin.ReattachState) error {
	if st == nil {
		return s.deleteDriver(name)
	}
	b, err := json.Marshal(st)
	if err != nil {
		return err
	}
	return s.update(func(tx *bolt.Tx) error {
		bk, err := tx.CreateBucketIfNotExists(bucketDrivers)
		if err != nil {
			return err
		}
		return bk.Put([]byte(name), b)
	})
}

func (s *stateDB) deleteDriver(name string) error {
	return s.update(func(tx *bolt.Tx) error {
		if bk := tx.Bucket(bucketDrivers); bk != nil {
			return bk.Delete([]byte(name))
		}
		return nil
	})
}

// driverStates reads every driver's re-attach state; undecodable ones are
// skipped and named in the error.
func (s *stateDB) driverStates() (map[string]*driverplugin.ReattachState, error) {
	out := map[string]*driverplugin.ReattachState{}
	var errs []error
	err := s.db.View(func(tx *bolt.Tx) error {
		bk := tx.Bucket(bucketDrivers)
		if bk == nil {
			return nil
		}
		return bk.ForEach(func(k, v []byte) error {
			var st driverplugin.ReattachState
			if err := json.Unmarshal(v, &st); err != nil {
				errs = append(errs, fmt.Errorf("driver %q: %w", k, err))
				return nil
			}
			out[string(k)] = &st
			return nil
		})
	})
	return out, errors.Join(append(errs, err)...)
}
