package child

import (
	"net"
	"os"
	"strconv"

	"berth/needs"
)

// IPCFromEnv returns the options that connect to the IPC hub berth gave
// the child: Addr from BERTH_IPC, Token from BERTH_IPC_TOKEN, and Group
// from BERTH_IPC_GROUP, or BERTH_NEED when that is unset. When BERTH_IPC
// is unset, Addr is built from BERTH_IPC_HOST and BERTH_IPC_PORT; when
// none of the three is set, it returns ErrNoIPC. A malformed variable, or
// no group at all, is an error naming the variable; it matches
// needs.ErrInvalid. The caller adds its callbacks and passes the options
// to DialIPC.
func IPCFromEnv() (IPCOptions, error) {
	addr, host, port := os.Getenv(EnvIPC), os.Getenv(EnvIPCHost), os.Getenv(EnvIPCPort)
	n, err := portVar(EnvIPCPort)
	if err != nil {
		return IPCOptions{}, err
	}
	switch {
	case addr != "":
		if _, err := parseIPCAddr(EnvIPC, addr); err != nil {
			return IPCOptions{}, err
		}
	case host == "" && port == "":
		return IPCOptions{}, ErrNoIPC
	case host == "":
		return IPCOptions{}, &needs.FieldError{Field: EnvIPCHost, Msg: "empty, and " + EnvIPC + " is unset too"}
	case port == "":
		return IPCOptions{}, &needs.FieldError{Field: EnvIPCPort, Msg: "empty, and " + EnvIPC + " is unset too"}
	default:
		addr = "ws://" + net.JoinHostPort(host, strconv.Itoa(n))
		if _, err := parseIPCAddr(EnvIPCHost, addr); err != nil {
			return IPCOptions{}, err
		}
	}
	opts := IPCOptions{Addr: addr, Token: os.Getenv(EnvIPCToken), Group: os.Getenv(EnvIPCGroup)}
	if opts.Group == "" {
		opts.Group = os.Getenv(EnvNeed)
	}
	if opts.Group == "" {
		return IPCOptions{}, &needs.FieldError{Field: EnvIPCGroup, Msg: "empty, and " + EnvNeed + " is unset too"}
	}
	return opts, nil
}
