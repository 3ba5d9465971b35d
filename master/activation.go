package master

import (
	"errors"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"syscall"

	"berth/needs"
	"berth/portoffice"
	"berth/spawn"
)

// maxBindAttempts bounds how often leasePorts leases a socket-activated
// child's ports: each attempt after the first follows a port that an
// outside process took between the port office's bind check and the
// master's bind, and that port is in quarantine by then.
const maxBindAttempts = 3

// leasePorts leases the ports of a child. For a need with socket activation
// it also binds them on the master's address and returns the listening
// sockets, in the order of the need's protocols, for the child to inherit.
// A port that another process took since the office checked it is
// quarantined and the ports are leased again, at most maxBindAttempts times
// in all; on failure nothing stays leased or open.
func (a *Agent) leasePorts(c *child) (map[needs.Protocol]int, []*os.File, error) {
	for attempt := 1; ; attempt++ {
		ports, err := a.office.Lease(c.alloc, c.need.Protocols)
		if err != nil {
			if ex, ok := errors.AsType[*portoffice.ExhaustedError](err); ok {
				return nil, nil, fmt.Errorf("master %s: %w", a.name, ex)
			}
			return nil, nil, fmt.Errorf("master %s: lease ports: %w", a.name, err)
		}
		if !c.need.SocketActivation {
			return ports, nil, nil
		}
		files, proto, err := bindPorts(a.addr, c.need.Protocols, ports)
		if err == nil {
			return ports, files, nil
		}
		taken := errors.Is(err, syscall.EADDRINUSE)
		if taken {
			// Before Release, so that Release does not probe it again and
			// the quarantine records the bind error itself.
			if _, qerr := a.office.Quarantine(proto, ports[proto], err.Error()); qerr != nil {
				a.log.Error("quarantine port", "proto", proto, "port", ports[proto], "err", qerr)
			}
		}
		if _, rerr := a.office.Release(c.alloc); rerr != nil {
			a.log.Error("release ports", "instance", c.instance, "err", rerr)
		}
		if !taken || attempt == maxBindAttempts {
			return nil, nil, fmt.Errorf("master %s: socket activation: %w (attempt %d of %d)", a.name, err, attempt, maxBindAttempts)
		}
		a.log.Warn("port taken before the master could bind it; leasing another", "instance", c.instance,
			"proto", proto, "port", ports[proto], "attempt", attempt)
	}
}

// bindPorts binds the port of each protocol on host, in order, and returns
// the listening sockets. On failure it closes those it opened and returns
// the protocol whose port failed.
func bindPorts(host string, protos []needs.Protocol, ports map[needs.Protocol]int) ([]*os.File, needs.Protocol, error) {
	files := make([]*os.File, 0, len(protos))
	for _, p := range protos {
		f, err := portoffice.Listen(host, ports[p])
		if err != nil {
			closeFiles(files)
			return nil, p, err
		}
		files = append(files, f)
	}
	return files, "", nil
}

// activate hands the listening sockets to the child by the systemd
// convention: fd 3 and up in the need's protocol order, LISTEN_FDS,
// LISTEN_FDNAMES (the protocol names joined by ':'), and LISTEN_PID, which
// spawn sets to the child's own pid. Without sockets it changes nothing.
func activate(spec *spawn.Spec, n needs.Need, files []*os.File) {
	if len(files) == 0 {
		return
	}
	names := make([]string, len(n.Protocols))
	for i, p := range n.Protocols {
		names[i] = string(p)
	}
	spec.ExtraFiles = slices.Concat(files, spec.ExtraFiles) // fd 3 first, as SD_LISTEN_FDS_START
	spec.Env = append(spec.Env, "LISTEN_FDS="+strconv.Itoa(len(files)), "LISTEN_FDNAMES="+strings.Join(names, ":"))
	spec.ListenPID = true
}

func closeFiles(files []*os.File) {
	for _, f := range files {
		f.Close()
	}
}
