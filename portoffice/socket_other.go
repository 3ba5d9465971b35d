//go:build !linux

package portoffice

import (
	"net"
	"os"
	"strconv"
)

// Listen binds host:port with net.Listen and returns a copy of the
// listening socket as a file. See the Linux version.
func Listen(host string, port int) (*os.File, error) {
	l, err := net.Listen("tcp", net.JoinHostPort(host, strconv.Itoa(port)))
	if err != nil {
		return nil, err
	}
	defer l.Close()
	return l.(*net.TCPListener).File()
}

// bindProbe listens on host:port and closes the listener at once.
func bindProbe(host string, port int) error {
	l, err := net.Listen("tcp", net.JoinHostPort(host, strconv.Itoa(port)))
	if err != nil {
		return err
	}
	return l.Close()
}
