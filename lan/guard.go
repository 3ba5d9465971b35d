package lan

import (
	"fmt"
	"mime"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync"
	"time"
)

// hostGuard decides which Host headers name this lanmanager. A browser
// that was made to resolve an attacker's name to this machine (DNS
// rebinding) sends that name as Host, so only names of ours pass: IP
// literals of this machine's interfaces and loopback, "localhost", the
// listen host, the machine's host name and Config.AllowedHosts. An IP
// literal cannot be rebound, but an address of another machine is refused
// all the same.
type hostGuard struct {
	names map[string]bool // lower-case host names and IP literals, no port

	mu      sync.Mutex // Protects following.
	addrs   map[string]bool
	fetched time.Time
}

// interfaceRefresh bounds how often a Host naming an unknown IP makes the
// guard list the machine's addresses again.
const interfaceRefresh = 5 * time.Second

func newHostGuard(listen string, allowed []string) *hostGuard {
	g := &hostGuard{names: map[string]bool{"localhost": true}}
	if host, _, err := net.SplitHostPort(listen); err == nil && host != "" {
		g.add(host)
	}
	if h, err := os.Hostname(); err == nil && h != "" {
		g.add(h)
		if i := strings.IndexByte(h, '.'); i > 0 {
			g.add(h[:i])
		}
	}
	for _, h := range allowed {
		g.add(h)
	}
	return g
}

func (g *hostGuard) add(host string) {
	host = strings.ToLower(strings.Trim(host, "[]"))
	if ip := net.ParseIP(host); ip != nil {
		host = ip.String()
	}
	g.names[strings.TrimSuffix(host, ".")] = true
}

// allows reports whether a Host header (with or without a port) names this
// lanmanager.
func (g *hostGuard) allows(hostport string) bool {
	host := hostport
	if h, _, err := net.SplitHostPort(hostport); err == nil {
		host = h
	}
	host = strings.TrimSuffix(strings.ToLower(strings.Trim(host, "[]")), ".")
	if host == "" {
		return false
	}
	ip := net.ParseIP(host)
	if ip == nil {
		return g.names[host]
	}
	if ip.IsLoopback() || g.names[ip.String()] {
		return true
	}
	return g.isLocal(ip)
}

// isLocal reports whether ip is an address of one of this machine's
// interfaces, listing them again at most every interfaceRefresh.
func (g *hostGuard) isLocal(ip net.IP) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.addrs == nil || time.Since(g.fetched) > interfaceRefresh {
		g.fetched = time.Now()
		g.addrs = map[string]bool{}
		if as, err := net.InterfaceAddrs(); err == nil {
			for _, a := range as {
				if n, ok := a.(*net.IPNet); ok {
					g.addrs[n.IP.String()] = true
				}
			}
		}
	}
	return g.addrs[ip.String()]
}

// guard applies the browser defences to every route, before the token:
//
//   - Host must name this lanmanager (421 Misdirected Request otherwise),
//     which defeats DNS rebinding;
//   - a request with an Origin other than the API's own, or that a browser
//     marks as cross-site (Sec-Fetch-Site), is refused (403), so no web page
//     can call the API, WebSockets included;
//   - a request body must be application/json (415 otherwise), so that a
//     cross-origin "simple" request (text/plain, form data) never reaches a
//     handler even from a browser that sends no Origin.
func (s *Server) guard(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !s.hosts.allows(r.Host) {
			s.logRefused(w, r, "Host names another site")
			writeError(w, http.StatusMisdirectedRequest, fmt.Sprintf(
				"Host %q does not name this lanmanager; if it should, start the lanmanager with --allowed-host %s", r.Host, hostOnly(r.Host)))
			return
		}
		if msg := crossOrigin(r); msg != "" {
			s.logRefused(w, r, "cross-origin")
			writeError(w, http.StatusForbidden, msg)
			return
		}
		if hasBody(r) {
			mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
			if err != nil || mt != "application/json" {
				writeError(w, http.StatusUnsupportedMediaType, fmt.Sprintf(
					"Content-Type %q: request bodies must be application/json", r.Header.Get("Content-Type")))
				return
			}
		}
		h.ServeHTTP(w, r)
	})
}

// crossOrigin says why a request comes from another origin, or "".
func crossOrigin(r *http.Request) string {
	if site := r.Header.Get("Sec-Fetch-Site"); site == "cross-site" || site == "same-site" {
		return fmt.Sprintf("cross-origin request refused (Sec-Fetch-Site: %s)", site)
	}
	origin := r.Header.Get("Origin")
	if origin == "" {
		return ""
	}
	u, err := url.Parse(origin)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || !strings.EqualFold(u.Host, r.Host) {
		return fmt.Sprintf("cross-origin request refused: Origin %q is not this API's own (%s)", origin, r.Host)
	}
	return ""
}

// hasBody reports whether a request carries a body.
func hasBody(r *http.Request) bool {
	return r.ContentLength > 0 || (r.ContentLength < 0 && r.Body != nil && r.Body != http.NoBody)
}

func hostOnly(hostport string) string {
	if h, _, err := net.SplitHostPort(hostport); err == nil {
		return h
	}
	return hostport
}
