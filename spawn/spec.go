package spawn

import (
	"os"
	"strings"
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
}

// ExpandArgs returns a copy of args with ${VAR} and $VAR replaced by their
// values in env, a list of "K=V" strings where the last definition of a key
// wins. Unknown variables expand to "" and "$$" becomes a literal "$".
// Every element is expanded, Command[0] included.
func ExpandArgs(args []string, env []string) []string {
	lookup := func(name string) string {
		if name == "$" {
			return "$"
		}
		return envValue(env, name)
	}
	out := make([]string, len(args))
	for i, a := range args {
		out[i] = os.Expand(a, lookup)
	}
	return out
}

// envValue returns the value of the last definition of key in env.
func envValue(env []string, key string) string {
	for i := len(env) - 1; i >= 0; i-- {
		if k, v, ok := strings.Cut(env[i], "="); ok && k == key {
			return v
		}
	}
	return ""
}
