package master

import (
	"fmt"

	"berth/pipes"
)

// serveControl answers requests on the master's control socket
// (<socket dir>/master.sock, mode 0600): "ps" lists the children.
func (a *Agent) serveControl() {
	for {
		conn, err := a.ctl.AcceptConn()
		if err != nil {
			return
		}
		a.wg.Add(1)
		go func() {
			defer a.wg.Done()
			defer conn.Close()
			stop := make(chan struct{})
			defer close(stop)
			go func() {
				select {
				case <-a.ctx.Done():
					conn.Close()
				case <-stop:
				}
			}()
			for {
				msg, err := conn.Recv()
				if err != nil {
					return
				}
				switch msg.Type {
				case pipes.TypePS:
					conn.SendBody(pipes.TypePS, msg.ID, a.Children())
				default:
					conn.SendError(msg.ID, fmt.Errorf("%w: request %q", pipes.ErrUnsupported, msg.Type))
				}
			}
		}()
	}
}
