//go:build !linux

package mesh

import "net"

// forward copies l both ways until both sides are done, then takes it
// out of the books.
func (p *Proxy) forward(b *backend, l *link) { p.copyAndLeave(b, l) }

// serveLoop is Linux's; elsewhere Serve accepts itself.
func (p *Proxy) serveLoop(net.Listener) bool { return false }

func releasePumps() {}
