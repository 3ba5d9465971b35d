package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/urfave/cli/v2"

	"berth/lan"
	"berth/needs"
)

// clientFlags are the flags of every client command.
func clientFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: "addr", Value: "http://" + lan.DefaultListen, EnvVars: []string{"BERTH_ADDR"}, Usage: "lanmanager address"},
		&cli.StringFlag{Name: "token", EnvVars: []string{"BERTH_TOKEN"}, Usage: "bearer token (default: found by itself for a lanmanager of this user on this machine)"},
		&cli.StringFlag{Name: "token-file", EnvVars: []string{"BERTH_TOKEN_FILE"}, Usage: "read the bearer token from this file (a lanmanager keeps it in <data>/token)"},
		announceFlag(nil),
	}
}

func jsonFlag() cli.Flag { return &cli.BoolFlag{Name: "json", Usage: "print JSON"} }

// newClient is the client of a command, with its token (see clientToken).
func newClient(c *cli.Context) (*lan.Client, error) {
	if !c.IsSet("addr") {
		if addr, ok := announcedAddr(announceDir(c.String("announce-dir"))); ok {
			if err := c.Set("addr", addr); err != nil {
				return nil, err
			}
		}
	}
	token, err := clientToken(c)
	if err != nil {
		return nil, err
	}
	return &lan.Client{Addr: c.String("addr"), Token: token}, nil
}

// announcedAddr is the address a command without --addr (nor BERTH_ADDR)
// talks to when it is not the default: the one lanmanager of this user
// running on this machine, when none of them listens on the default port
// (dev takes a free port when another program holds that one). With
// none, or several, the default stays.
func announcedAddr(dir string) (string, bool) {
	_, defPort, _ := net.SplitHostPort(lan.DefaultListen)
	live := lan.Announced(dir)
	for _, a := range live {
		if _, port, _ := net.SplitHostPort(a); port == defPort {
			return "", false
		}
	}
	if len(live) != 1 {
		return "", false
	}
	host, port, _ := net.SplitHostPort(live[0])
	if ip := net.ParseIP(host); host == "" || ip != nil && ip.IsUnspecified() {
		host = "127.0.0.1"
	}
	return "http://" + net.JoinHostPort(host, port), true
}

// printList prints a list as JSON, an empty one as [] rather than null.
func printList[T any](w io.Writer, list []T) error {
	if list == nil {
		list = []T{}
	}
	return printJSON(w, list)
}

func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func table(w io.Writer, header string, rows [][]string) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, header)
	for _, r := range rows {
		fmt.Fprintln(tw, strings.Join(r, "\t"))
	}
	tw.Flush()
}

func formatPorts(ports map[needs.Protocol]int) string {
	var parts []string
	for _, p := range needs.Protocols {
		if n, ok := ports[p]; ok {
			parts = append(parts, fmt.Sprintf("%s:%d", p, n))
		}
	}
	if len(parts) == 0 {
		return "-"
	}
	return strings.Join(parts, ",")
}

func formatProtocols(ps []needs.Protocol) string {
	if len(ps) == 0 {
		return "-"
	}
	s := make([]string, len(ps))
	for i, p := range ps {
		s[i] = string(p)
	}
	return strings.Join(s, ",")
}

func ago(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return time.Since(t).Round(time.Second).String()
}

// shellQuote prints a command as a shell would need it typed: words with
// anything but letters, digits and @%+=:,./_- are single-quoted.
func shellQuote(args []string) string {
	out := make([]string, len(args))
	for i, a := range args {
		safe := a != "" && strings.IndexFunc(a, func(r rune) bool {
			return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("@%+=:,./_-", r))
		}) < 0
		if safe {
			out[i] = a
		} else {
			out[i] = "'" + strings.ReplaceAll(a, "'", `'\''`) + "'"
		}
	}
	return strings.Join(out, " ")
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func sortedKeys(m map[string]string) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
