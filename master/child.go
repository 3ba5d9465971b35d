package master

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"berth/driverplugin"
	"berth/needs"
	"berth/pipes"
	"berth/spawn"
)

// child is one supervised child: its ports, its control socket and its
// process. Its goroutines (pipe accept, pipe reader, waiter) are owned by
// the Agent's WaitGroup and end when the process is gone, or when the Agent
// leaves it running (Leave).
type child struct {
	alloc    string
	instance string
	need     needs.Need
	env      map[string]string // the grant's BERTH_ variables (pipes.Grant.Env)
	ports    map[needs.Protocol]int
	pipePath string
	logPath  string
	started  time.Time
	proc     *spawn.Child
	adopted  bool          // taken over from a previous run of the master (spawn.Adopt)
	done     chan struct{} // closed once the child is gone and cleaned up
	// mesh is the child's upstreams and peers (upstream.go); nil when its
	// need has neither. Set before the process runs, never changed.
	mesh *childMesh

	mu sync.Mutex // Protects following.
	// pipe is the child's control socket; nil for an adopted child whose
	// pipe could not be re-opened. The runtime check replaces it when its
	// file was deleted (relistenPipe); pipeClosed is set once the child is
	// gone, after which it is never replaced.
	pipe       *pipes.Listener
	pipeClosed bool
	conn       *pipes.Conn
	connGen    uint64 // counts the pipe's connections: a new one gets mesh.ready
	ready      bool
	approved   bool
	stopping   bool
	requested  bool
	stats      *pipes.Stats
	// pending holds a stop asked for before the process existed.
	pending *pendingStop
}

type pendingStop struct {
	why   string
	grace time.Duration
}

func (c *child) info() pipes.ChildInfo {
	c.mu.Lock()
	defer c.mu.Unlock()
	st := "starting"
	switch {
	case c.stopping:
		st = "stopping"
	case c.approved:
		st = "running"
	}
	ci := pipes.ChildInfo{Instance: c.instance, Alloc: c.alloc, State: st, Ports: c.ports,
		Pipe: c.pipePath, Log: c.logPath, StartedAt: c.started, Ready: c.ready, Stats: c.stats, Adopted: c.adopted, Driver: c.need.Driver}
	if c.proc != nil {
		ci.PID = c.proc.PID()
		ci.Tracking = c.proc.Tracking()
	}
	if c.mesh != nil {
		ci.Upstreams, ci.PeersFile = c.mesh.info(), c.mesh.peers
	}
	if l := c.need.Limit(); !l.IsZero() {
		ci.Limits = &l
	}
	return ci
}

// startedReport is what the lanmanager is told about the child.
func (c *child) startedReport() (pipes.Started, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.proc == nil {
		return pipes.Started{}, false
	}
	return pipes.Started{Alloc: c.alloc, Instance: c.instance, PID: c.proc.PID(), Ports: c.ports,
		StartedAt: c.started, Ready: c.ready, Adopted: c.adopted}, true
}

func sortChildren(cs []pipes.ChildInfo) {
	sort.Slice(cs, func(i, j int) bool { return cs[i].Instance < cs[j].Instance })
}

// grant registers the child of a grant at once, so that a stop that follows
// finds it, and spawns it in a goroutine owned by the Agent. A grant for an
// allocation already running is answered with its report again.
func (a *Agent) grant(g *pipes.Grant) {
	a.mu.Lock()
	if a.closed {
		a.mu.Unlock()
		a.report(&pipes.Exited{Alloc: g.Alloc, Instance: g.Instance, Code: -1, Reason: "master " + a.name + " is shutting down"})
		return
	}
	if c, ok := a.children[g.Alloc]; ok {
		a.mu.Unlock()
		if s, ok := c.startedReport(); ok {
			s.Address = a.addr
			a.send(pipes.TypeStarted, &s)
		}
		return
	}
	c := &child{alloc: g.Alloc, instance: g.Instance, need: g.Need, env: g.Env, done: make(chan struct{})}
	a.children[g.Alloc] = c
	a.wg.Add(1)
	a.mu.Unlock()
	go func() { defer a.wg.Done(); a.startChild(c) }()
}

// startChild leases ports, opens the pipe and spawns a granted child.
// Failures are reported to the lanmanager as an exit that never ran.
func (a *Agent) startChild(c *child) {
	if err := a.spawnChild(c); err != nil {
		a.log.Warn("start child", "instance", c.instance, "err", err)
		c.mu.Lock()
		m := c.mesh
		c.mu.Unlock()
		if m != nil {
			m.close()
			if m.peers != "" {
				os.Remove(m.peers)
			}
		}
		a.office.Release(c.alloc)
		a.state.delete(c.alloc)
		c.closePipe()
		a.mu.Lock()
		delete(a.children, c.alloc)
		a.mu.Unlock()
		close(c.done)
		a.report(&pipes.Exited{Alloc: c.alloc, Instance: c.instance, Code: -1, Reason: err.Error()})
		return
	}
	s, _ := c.startedReport()
	s.Address = a.addr
	a.send(pipes.TypeStarted, &s)
}

func (a *Agent) spawnChild(c *child) error {
	ports, files, err := a.leasePorts(c)
	if err != nil {
		return err
	}
	defer closeFiles(files) // the child has its own copies once spawned
	pipePath := childPipePath(a.sockDir, c.alloc)
	pipe, err := listenPipe(pipePath)
	c.mu.Lock()
	c.ports, c.pipePath, c.pipe, c.logPath = ports, pipePath, pipe, filepath.Join(a.logDir, c.instance+".log")
	c.mu.Unlock()
	if err != nil {
		return err
	}
	var mesh *childMesh
	if hasMesh(&c.need) {
		// Its upstream listeners and peers file exist before the child.
		if mesh, err = a.openChildMesh(c, nil, "", false); err != nil {
			return err
		}
		c.mu.Lock()
		c.mesh = mesh
		c.mu.Unlock()
	}
	driver, plugin, err := a.driverFor(&c.need)
	if err != nil {
		return err
	}
	env := a.childEnv(c)
	spec := spawn.Spec{Instance: c.instance, Command: spawn.ExpandArgs(c.need.Command, env), Env: env, LogPath: c.logPath,
		Tracking: a.track.child(c.alloc, c.need.Limit()), Limits: c.need.Limit(), Task: c.alloc, DriverOpts: c.need.DriverOpts}
	activate(&spec, c.need, files)
	// A record without a pid first: should the master die between the
	// spawn and the full record, the next run finds the child in its
	// cgroup or by its BERTH_ALLOC (spawn.FindLeader) instead of not
	// knowing it.
	rec := &record{Alloc: c.alloc, Instance: c.instance, Need: c.need, Ports: ports,
		Pipe: c.pipePath, Log: c.logPath, Cgroup: spec.Tracking.Cgroup, LimitCgroups: spec.Tracking.LimitCgroups}
	if plugin != nil {
		rec.Driver = plugin.Name()
	}
	if mesh != nil {
		rec.Upstreams, rec.PeersFile = mesh.ports(), mesh.peers
	}
	if err := a.state.put(rec); err != nil {
		return fmt.Errorf("master %s: persist child record: %w", a.name, err)
	}
	proc, err := spawn.Start(a.ctx, driver, spec)
	if err != nil {
		return err
	}
	if plugin != nil {
		if h, ok := plugin.Handle(c.alloc); ok {
			rec.Handle = &h
		}
	}
	c.mu.Lock()
	c.proc, c.started = proc, time.Now().UTC()
	pending := c.pending
	c.mu.Unlock()
	rec.PID, rec.StartTime, rec.StartedAt = proc.PID(), proc.StartTime(), c.started
	if err := a.state.put(rec); err != nil {
		a.log.Error("persist child record", "instance", c.instance, "err", err)
	}
	a.wg.Add(2)
	go func() { defer a.wg.Done(); a.servePipe(c, pipe) }()
	go func() { defer a.wg.Done(); a.wait(c) }()
	if mesh != nil {
		mesh.started = true // before run starts: run reads it
		mesh.start()
	}
	a.log.Info("child started", "instance", c.instance, "pid", proc.PID(), "ports", ports, "tracking", proc.Tracking())
	if pending != nil {
		c.stop(a, pending.why, pending.grace)
	}
	return nil
}

// DefaultPath is the PATH of children of a master given no environment
// (Options.Environ nil): systemd's default for services.
const DefaultPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// childEnv is Options.Environ without berth's own variables,
// then the need's env, then the child contract, with BERTH_MASTER (see
// envMaster) after it, then what the grant adds (the IPC hub's BERTH_IPC*)
// unless it names a variable of the contract.
func (a *Agent) childEnv(c *child) []string {
	var env []string
	base := a.opts.Environ
	if base == nil {
		base = []string{"PATH=" + DefaultPath}
	}
	for _, kv := range base {
		k, _, _ := strings.Cut(kv, "=")
		if strings.HasPrefix(k, "BERTH_") || k == "PORT" || strings.HasPrefix(k, "LISTEN_") {
			continue
		}
		env = append(env, kv)
	}
	keys := make([]string, 0, len(c.need.Env))
	for k := range c.need.Env {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		env = append(env, k+"="+c.need.Env[k])
	}
	env = append(env, "BERTH_NEED="+c.need.Name, "BERTH_INSTANCE="+c.instance, envAlloc+"="+c.alloc,
		"BERTH_HOST="+a.addr, "BERTH_PIPE="+c.pipePath, envMaster+"="+a.track.hash)
	for i, p := range c.need.Protocols {
		port := fmt.Sprint(c.ports[p])
		env = append(env, p.EnvName()+"="+port)
		if i == 0 {
			env = append(env, "PORT="+port)
		}
	}
	if c.mesh != nil {
		env = append(env, c.mesh.env()...)
	}
	set := make(map[string]bool, len(env))
	for _, kv := range env {
		k, _, _ := strings.Cut(kv, "=")
		set[k] = true
	}
	keys = keys[:0]
	for k := range c.env {
		if !set[k] {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	for _, k := range keys {
		env = append(env, k+"="+c.env[k])
	}
	return env
}

// exitedWhileAdopted is the reason reported for an adopted child's exit,
// whose status only its real parent could know.
const exitedWhileAdopted = "exited while adopted (status unknown)"

// wait reports the child's exit once its process is gone and cleans up.
// When the Agent leaves (Leave) first, it returns at once and the child
// runs on with its record and leases kept for the next master.
func (a *Agent) wait(c *child) {
	select {
	case <-c.proc.Done():
	case <-a.ctx.Done():
		select {
		case <-c.proc.Done(): // Close stops every child before it cancels
		default:
			return
		}
	}
	ex := c.proc.Exit()
	if errors.Is(ex.Err, driverplugin.ErrTaskLost) {
		// The driver cannot say what became of it: stop whatever of it
		// still runs before its ports go to someone else.
		a.log.Warn("child lost by its driver; stopping what is left of it", "instance", c.instance, "err", ex.Err)
		if err := spawn.Sweep(context.Background(), a.track.child(c.alloc, c.need.Limit()), c.proc.StartTime(), a.opts.StopGrace); err != nil {
			a.log.Error("stop a lost child", "instance", c.instance, "err", err)
		}
	}
	c.closePipe()
	c.mu.Lock()
	if c.conn != nil {
		c.conn.Close()
	}
	requested := c.requested
	c.mu.Unlock()
	if _, err := a.office.Release(c.alloc); err != nil {
		a.log.Error("release ports", "instance", c.instance, "err", err)
	}
	if err := a.state.delete(c.alloc); err != nil {
		a.log.Error("delete child record", "instance", c.instance, "err", err)
	}
	a.mu.Lock()
	delete(a.children, c.alloc)
	a.mu.Unlock()
	close(c.done)
	a.log.Info("child exited", "instance", c.instance, "pid", c.proc.PID(), "exit", ex.String(), "requested", requested, "adopted", c.adopted)
	e := &pipes.Exited{Alloc: c.alloc, Instance: c.instance, Code: ex.Code, Signal: ex.Signal, Requested: requested,
		OOMKilled: ex.OOMKilled, MemoryLimit: c.need.Limit().Memory}
	switch {
	case errors.Is(ex.Err, spawn.ErrExitUnknown) && !ex.OOMKilled:
		e.Reason = exitedWhileAdopted
	case errors.Is(ex.Err, driverplugin.ErrTaskLost):
		e.Reason = ex.Err.Error()
	}
	a.report(e)
}

// stop signals the child's process group (SIGTERM, then SIGKILL after
// grace) and asks it, on its pipe, to exit. It returns at once; c.done
// closes when the child is gone. Calling it again with a shorter grace
// shortens the wait (spawn.Child.Stop keeps the shortest).
func (c *child) stop(a *Agent, why string, grace time.Duration) {
	c.mu.Lock()
	if c.proc == nil {
		// Still being spawned: spawnChild stops it as soon as it runs.
		c.pending = &pendingStop{why: why, grace: grace}
		c.mu.Unlock()
		return
	}
	first := !c.stopping
	c.stopping, c.requested = true, true
	conn, proc, mesh := c.conn, c.proc, c.mesh
	c.mu.Unlock()
	if first && mesh != nil {
		mesh.setClosing(why)
	}
	if first {
		a.log.Info("stopping child", "instance", c.instance, "pid", proc.PID(), "reason", why)
	}
	a.wg.Add(1)
	go func() {
		defer a.wg.Done()
		proc.Stop(context.Background(), grace)
	}()
	if first && conn != nil {
		// A child that does not read its pipe could block this write; the
		// write is unblocked when the pipe is closed after the child exits.
		a.wg.Add(1)
		go func() {
			defer a.wg.Done()
			conn.SendBody(pipes.TypeChildStop, 0, &pipes.ChildStop{Reason: why, GraceMS: int(grace / time.Millisecond)})
		}()
	}
}

// servePipe accepts the child's connections on its control socket pipe;
// the child package reconnects if a connection drops, so there may be
// several in turn. It ends when pipe is closed: after the child exits, when
// the Agent closes or leaves (then the child keeps redialling the path,
// where the next master listens again), or when the runtime check replaced
// it with a new socket (relistenPipe), served by a new servePipe.
func (a *Agent) servePipe(c *child, pipe *pipes.Listener) {
	if pipe == nil {
		return
	}
	stop := context.AfterFunc(a.ctx, func() {
		pipe.Close()
		c.mu.Lock()
		if c.conn != nil {
			c.conn.Close()
		}
		c.mu.Unlock()
	})
	defer stop()
	for {
		conn, err := pipe.AcceptConn()
		if err != nil {
			return
		}
		c.mu.Lock()
		if c.conn != nil {
			c.conn.Close()
		}
		c.conn = conn
		c.connGen++
		mesh := c.mesh
		c.mu.Unlock()
		if a.ctx.Err() != nil { // accepted as the AfterFunc ran
			conn.Close()
			return
		}
		if mesh != nil {
			mesh.poke() // mesh.ready on this connection
		}
		a.readPipe(c, conn)
	}
}

// closePipe closes the child's control socket for good, and removes its
// directory.
func (c *child) closePipe() {
	c.mu.Lock()
	pipe, path := c.pipe, c.pipePath
	c.pipeClosed = true
	c.mu.Unlock()
	if pipe != nil {
		pipe.Close()
	}
	removePipe(path)
}

// pipeName is the file name of a child's control socket in its own
// directory, <socket dir>/<alloc16>/pipe: as long as the earlier layout's
// <socket dir>/<alloc16>.sock, so socketDirFits holds for both.
const pipeName = "pipe"

// childPipePath is the control socket of the child alloc: in a directory
// of its own (0700), so that a sandbox can show the child its own socket
// and none of the others, nor master.sock. Children of masters before
// this layout keep <socket dir>/<alloc16>.sock, as their records say.
func childPipePath(sockDir, alloc string) string {
	return filepath.Join(sockDir, alloc[:min(16, len(alloc))], pipeName)
}

// listenPipe listens on a child's control socket at path, first making
// its own directory (0700) if path is of the per-child layout and the
// directory is missing.
func listenPipe(path string) (*pipes.Listener, error) {
	if filepath.Base(path) == pipeName {
		if err := os.Mkdir(filepath.Dir(path), 0o700); err != nil && !errors.Is(err, fs.ErrExist) {
			return nil, fmt.Errorf("create pipe directory: %w", err)
		}
	}
	return pipes.Listen(path) // checks the directory: not a link, ours, 0700
}

// removePipe removes a gone child's control socket and, in the per-child
// layout, its directory.
func removePipe(path string) {
	if path == "" {
		return
	}
	os.Remove(path)
	if filepath.Base(path) == pipeName {
		os.Remove(filepath.Dir(path))
	}
}

func (a *Agent) readPipe(c *child, conn *pipes.Conn) {
	defer conn.Close()
	for {
		msg, err := conn.Recv()
		if err != nil {
			if !errors.Is(err, net.ErrClosed) && !isEOF(err) {
				a.log.Warn("child pipe", "instance", c.instance, "err", err)
			}
			return
		}
		switch msg.Type {
		case pipes.TypeChildHello:
			var h pipes.ChildHello
			if err := msg.Decode(&h); err != nil {
				conn.SendError(msg.ID, err)
			}
		case pipes.TypeChildReady:
			c.mu.Lock()
			first := !c.ready
			c.ready = true
			c.mu.Unlock()
			if first {
				if err := a.state.setReady(c.alloc); err != nil {
					a.log.Error("persist child ready", "instance", c.instance, "err", err)
				}
				a.send(pipes.TypeReady, &pipes.AllocRef{Alloc: c.alloc})
			}
		case pipes.TypeStats:
			var s pipes.Stats
			if err := msg.Decode(&s); err != nil {
				conn.SendError(msg.ID, err)
				continue
			}
			s.Alloc = c.alloc
			c.mu.Lock()
			c.stats = &s
			c.mu.Unlock()
		case pipes.TypePing:
			conn.Send(&pipes.Msg{V: pipes.Version, Type: pipes.TypePong, ID: msg.ID})
		case pipes.TypePong:
		case pipes.TypeError:
			// A child SDK that does not know the mesh.* messages answers
			// them "unsupported"; nothing to do.
		default:
			conn.SendError(msg.ID, fmt.Errorf("%w: message type %q", pipes.ErrUnsupported, msg.Type))
		}
	}
}
