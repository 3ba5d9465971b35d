package master

import (
	"bytes"
	"fmt"
	"os"
	"strconv"

	"berth/needs"
	"berth/portoffice"
)

// ephemeralRangeFile holds the kernel's ephemeral (local) port range: the
// ports it picks for outgoing connections and for binds to port 0.
const ephemeralRangeFile = "/proc/sys/net/ipv4/ip_local_port_range"

// parsePortRange parses the contents of ip_local_port_range: two ports
// separated by white space, e.g. "32768\t60999\n".
func parsePortRange(b []byte) (lo, hi int, err error) {
	f := bytes.Fields(b)
	if len(f) != 2 {
		return 0, 0, fmt.Errorf("want two ports, got %q", b)
	}
	if lo, err = strconv.Atoi(string(f[0])); err != nil || lo < 1 || lo > 65535 {
		return 0, 0, fmt.Errorf("first port %q is not in 1-65535", f[0])
	}
	if hi, err = strconv.Atoi(string(f[1])); err != nil || hi < 1 || hi > 65535 {
		return 0, 0, fmt.Errorf("second port %q is not in 1-65535", f[1])
	}
	if hi < lo {
		return 0, 0, fmt.Errorf("range %d-%d ends before it starts", lo, hi)
	}
	return lo, hi, nil
}

// ephemeralOverlaps returns, in the order of needs.Protocols, the protocols
// whose range shares a port with lo-hi.
func ephemeralOverlaps(ranges map[needs.Protocol]portoffice.Range, lo, hi int) []needs.Protocol {
	var out []needs.Protocol
	for _, p := range needs.Protocols {
		if r, ok := ranges[p]; ok && r.Start <= hi && lo <= r.End() {
			out = append(out, p)
		}
	}
	return out
}

// warnEphemeral logs a warning for each configured range that overlaps the
// kernel's ephemeral range read from path: the kernel may hand one of its
// ports to an outgoing connection, and a child leased that port then cannot
// bind it. The port office copes (the bind check skips a taken port), but
// the range is better moved below the ephemeral one, or the ephemeral range
// narrowed with sysctl net.ipv4.ip_local_port_range.
func (a *Agent) warnEphemeral(path string) {
	b, err := os.ReadFile(path)
	if err != nil {
		a.log.Debug("cannot read the kernel's ephemeral port range", "err", err)
		return
	}
	lo, hi, err := parsePortRange(b)
	if err != nil {
		a.log.Warn("cannot parse the kernel's ephemeral port range", "file", path, "err", err)
		return
	}
	ranges := a.office.Ranges()
	for _, p := range ephemeralOverlaps(ranges, lo, hi) {
		a.log.Warn("port range overlaps the kernel's ephemeral port range; outgoing connections may take its ports",
			"proto", p, "range", ranges[p].String(), "ephemeral", fmt.Sprintf("%d-%d", lo, hi), "file", path)
	}
}
