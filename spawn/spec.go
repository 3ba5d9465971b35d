package spawn

import (
	"os"
	"strings"

	"berth/needs"
)

// Spec says how to start one child. The zero value of each optional field
// means "nothing special"; Spec is used as given, so expand variables in
// Command with ExpandArgs first.
type Spec struct {
	// Instance names the child in errors and logs, e.g. "web.0".
	Instance string
	// Command is the argv. A Command[0] without a slash is looked up in the
	// PATH of Env (not the master's PATH); a relative path with a slash is
	// taken relative to Dir.
	Command []string
	// Env is the complete environment of the child as "K=V" strings. Spawn
	// adds nothing to it; a nil Env means an empty environment, not the
	// master's.
	Env []string
	// Dir is the working directory; "" means the master's.
	Dir string
	// LogPath is the file that stdout and stderr are appended to. It is
	// created 0640 (parent directories 0750) if missing. The master never
	// holds a pipe to the child, so a child outlives its master. "" means
	// /dev/null.
	LogPath string
	// ExtraFiles are passed to the child as fd 3, 4, ... They stay owned by
	// the caller, who may close them once Start has returned.
	ExtraFiles []*os.File
	// ListenPID sets LISTEN_PID in the child's environment to the child's
	// own pid, as systemd socket activation asks (the caller puts the
	// sockets in ExtraFiles and LISTEN_FDS and LISTEN_FDNAMES in Env). The
	// pid is only known after the fork, so the Exec driver starts the
	// command through /bin/sh, which sets the variable and execs the
	// command in its own place: the pid, the process group and the open
	// files stay the same. See the package doc for what else changes.
	ListenPID bool
	// Tracking says how the child's processes are tracked: a cgroup of its
	// own, or its process group plus marks in the environment. The zero
	// value tracks the process group alone.
	Tracking Tracking
	// Task and DriverOpts are for external drivers (package driverplugin):
	// Task names the child in the driver (the master gives the allocation
	// id), DriverOpts are the need's driver options. Exec ignores both.
	Task       string
	DriverOpts []string
	// Limits cap the child's memory, CPU and processes; they are written
	// to its cgroups before it runs: the v2 one (Tracking.Cgroup) for the
	// controllers enabled there, the v1 ones (Tracking.LimitCgroups) for
	// the others. A limit no cgroup of the child can hold fails Start.
	Limits needs.Limits
}

// ExpandArgs returns a copy of args in which every ${NAME} whose NAME is
// defined in env (a list of "K=V" strings; the last definition of a key
// wins) is replaced by its value. Everything else is left as it is: $NAME
// without braces, ${NAME} for a name env does not define, and shell
// specials such as $!, $1 or $? — so a `sh -c` script keeps its own
// variables. "$${" is a literal "${". Every element is expanded,
// Command[0] included.
func ExpandArgs(args []string, env []string) []string {
	out := make([]string, len(args))
	for i, a := range args {
		out[i] = expand(a, env)
	}
	return out
}

func expand(s string, env []string) string {
	var b strings.Builder
	for i := 0; i < len(s); {
		if strings.HasPrefix(s[i:], "$${") {
			b.WriteString("${")
			i += 3
			continue
		}
		if strings.HasPrefix(s[i:], "${") {
			if end := strings.IndexByte(s[i+2:], '}'); end >= 0 {
				name := s[i+2 : i+2+end]
				if v, ok := lookupEnv(env, name); ok && validName(name) {
					b.WriteString(v)
					i += 3 + end
					continue
				}
			}
		}
		b.WriteByte(s[i])
		i++
	}
	return b.String()
}

func validName(n string) bool {
	if n == "" {
		return false
	}
	for i := 0; i < len(n); i++ {
		c := n[i]
		if !(c == '_' || c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || i > 0 && c >= '0' && c <= '9') {
			return false
		}
	}
	return true
}

// lookupEnv returns the value of the last definition of key in env.
func lookupEnv(env []string, key string) (string, bool) {
	for i := len(env) - 1; i >= 0; i-- {
		if k, v, ok := strings.Cut(env[i], "="); ok && k == key {
			return v, true
		}
	}
	return "", false
}

// envValue returns the value of the last definition of key in env, or "".
func envValue(env []string, key string) string {
	v, _ := lookupEnv(env, key)
	return v
}
