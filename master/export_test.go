package master

import "time"

// MeshGrace is the grace the agent's ingress and upstream proxies give the
// connections of an instance that left the running set.
func (a *Agent) MeshGrace() time.Duration { return a.meshGrace() }
