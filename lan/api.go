package lan

import (
	"bytes"
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"reflect"
	"strings"
	"time"

	"github.com/coder/websocket"

	"berth/needs"
)

// MaxBody is the largest request body the API reads.
const MaxBody = 1 << 20

// Handler returns the HTTP API:
//
//	GET    /v1/needs            list needs
//	POST   /v1/needs            declare a need (NeedSpec)
//	GET    /v1/needs/{name}     one need with its instances
//	PATCH  /v1/needs/{name}     {"instances": N}
//	DELETE /v1/needs/{name}     remove a need, stopping its instances
//	POST   /v1/needs/{name}/restart  retry its backed-off instances now
//	POST   /v1/needs/{name}/rebalance  even out where its instances run
//	POST   /v1/rebalance        the same for every need
//	GET    /v1/services         placed instances
//	GET    /v1/masters          masters
//	POST   /v1/masters/{name}/drain    move its instances away, give it no new work
//	POST   /v1/masters/{name}/undrain  give it work again
//	GET    /v1/events           WebSocket stream of Event (JSON text messages)
//	GET    /v1/link             WebSocket link of a master (package pipes)
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/needs", func(w http.ResponseWriter, r *http.Request) { writeJSON(w, http.StatusOK, s.Needs()) })
	mux.HandleFunc("POST /v1/needs", s.handleAddNeed)
	mux.HandleFunc("GET /v1/needs/{name}", func(w http.ResponseWriter, r *http.Request) {
		st, err := s.Need(r.PathValue("name"))
		reply(w, http.StatusOK, st, err)
	})
	mux.HandleFunc("PATCH /v1/needs/{name}", s.handleScale)
	mux.HandleFunc("DELETE /v1/needs/{name}", func(w http.ResponseWriter, r *http.Request) {
		st, err := s.RemoveNeed(r.PathValue("name"))
		reply(w, http.StatusOK, st, err)
	})
	mux.HandleFunc("POST /v1/needs/{name}/restart", func(w http.ResponseWriter, r *http.Request) {
		st, err := s.RestartNeed(r.PathValue("name"))
		reply(w, http.StatusOK, st, err)
	})
	mux.HandleFunc("POST /v1/needs/{name}/rebalance", func(w http.ResponseWriter, r *http.Request) {
		rb, err := s.RebalanceNeed(r.PathValue("name"))
		reply(w, http.StatusOK, rb, err)
	})
	mux.HandleFunc("POST /v1/rebalance", func(w http.ResponseWriter, r *http.Request) {
		rbs, err := s.RebalanceAll()
		reply(w, http.StatusOK, rbs, err)
	})
	mux.HandleFunc("GET /v1/services", func(w http.ResponseWriter, r *http.Request) { writeJSON(w, http.StatusOK, s.Services()) })
	mux.HandleFunc("GET /v1/masters", func(w http.ResponseWriter, r *http.Request) { writeJSON(w, http.StatusOK, s.Masters()) })
	mux.HandleFunc("POST /v1/masters/{name}/drain", func(w http.ResponseWriter, r *http.Request) {
		m, err := s.Drain(r.PathValue("name"))
		reply(w, http.StatusOK, m, err)
	})
	mux.HandleFunc("POST /v1/masters/{name}/undrain", func(w http.ResponseWriter, r *http.Request) {
		m, err := s.Undrain(r.PathValue("name"))
		reply(w, http.StatusOK, m, err)
	})
	mux.HandleFunc("GET /v1/ipc", s.handleIPC)
	mux.HandleFunc("GET /v1/events", s.handleEvents)
	mux.HandleFunc("GET /v1/link", s.handleLink)
	mux.HandleFunc("GET /v1/instances/{name}/logs", s.handleLogs)
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		if allow := allowed(r.URL.Path); allow != "" {
			w.Header().Set("Allow", allow)
			writeError(w, http.StatusMethodNotAllowed, fmt.Sprintf("%s %s: method not allowed (allowed: %s)", r.Method, r.URL.Path, allow))
			return
		}
		writeError(w, http.StatusNotFound, fmt.Sprintf("no route for %s %s", r.Method, r.URL.Path))
	})
	return s.guard(s.auth(mux))
}

// allowed returns the methods a known path takes, or "" for an unknown path.
func allowed(path string) string {
	switch path {
	case "/v1/needs":
		return "GET, POST"
	case "/v1/services", "/v1/masters", "/v1/events", "/v1/link":
		return "GET"
	case "/v1/rebalance":
		return "POST"
	}
	parts := strings.Split(strings.TrimPrefix(path, "/"), "/")
	if len(parts) < 3 || parts[0] != "v1" || parts[2] == "" {
		return ""
	}
	switch {
	case len(parts) == 3 && parts[1] == "needs":
		return "GET, PATCH, DELETE"
	case len(parts) == 4 && parts[1] == "needs" && (parts[3] == "restart" || parts[3] == "rebalance"),
		len(parts) == 4 && parts[1] == "masters" && (parts[3] == "drain" || parts[3] == "undrain"):
		return "POST"
	case len(parts) == 4 && parts[1] == "instances" && parts[3] == "logs":
		return "GET"
	}
	return ""
}

// auth requires the bearer token, compared in constant time, on every call.
func (s *Server) auth(h http.Handler) http.Handler {
	if s.cfg.Token == "" {
		return h
	}
	want := []byte("Bearer " + s.cfg.Token)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got := []byte(r.Header.Get("Authorization"))
		if subtle.ConstantTimeCompare(got, want) != 1 {
			s.logRefused(w, r, "missing or wrong bearer token")
			w.Header().Set("WWW-Authenticate", `Bearer realm="berth"`)
			writeError(w, http.StatusUnauthorized, "missing or wrong bearer token: pass --token, BERTH_TOKEN or --token-file (the lanmanager keeps its token in <data>/token)")
			return
		}
		h.ServeHTTP(w, r)
	})
}

// logRefused logs a refused request at WARN, at most once per client
// address and reason every refusedLogInterval, so that an operator sees who
// is knocking without a flood filling the log. The answer closes the
// connection: a refused client holds none of the MaxConns.
func (s *Server) logRefused(w http.ResponseWriter, r *http.Request, why string) {
	w.Header().Set("Connection", "close")
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	if ok, held := s.refusals.allow(host+" "+why, time.Now()); ok {
		s.log.Warn("refused a request", "why", why, "remote", host, "method", r.Method, "path", r.URL.Path,
			"user_agent", r.UserAgent(), "refused_since_last_line", held)
	}
}

// NeedSpec is the body of POST /v1/needs.
type NeedSpec struct {
	Name      string            `json:"name"`
	Command   []string          `json:"command"`
	Instances *int              `json:"instances"`
	Protocols []needs.Protocol  `json:"protocols"`
	Env       map[string]string `json:"env"`
	Machine   string            `json:"machine"`
	// Restart is the restart policy; durations are strings such as "1s"
	// (or whole milliseconds). Omitted fields take their defaults.
	Restart *needs.RestartPolicy `json:"restart,omitempty"`
	// SocketActivation has the master bind the ports and pass them to the
	// child (LISTEN_FDS); it needs at least one protocol.
	SocketActivation bool `json:"socket_activation,omitempty"`
	// IPCGroup is the IPC hub group of the children (default: the name).
	IPCGroup string `json:"ipc_group,omitempty"`
	// Ingress and Balance publish the need through every master's ingress
	// (docs/mesh.md).
	Ingress []needs.Ingress `json:"ingress,omitempty"`
	Balance string          `json:"balance,omitempty"`
	// BalanceWeights weigh the resource score (with Balance resource).
	BalanceWeights string `json:"balance_weights,omitempty"`
	// Upstreams, Peers and PeersSignal: see needs.Need.
	Upstreams   []needs.Upstream `json:"upstreams,omitempty"`
	Peers       bool             `json:"peers,omitempty"`
	PeersSignal string           `json:"peers_signal,omitempty"`
	// Gateway publishes the need on the WebSocket gateway.
	Gateway bool `json:"gateway,omitempty"`
	// Driver and DriverOpts: see needs.Need.
	Driver     string   `json:"driver,omitempty"`
	DriverOpts []string `json:"driver_opts,omitempty"`
	// Limits caps each child's memory, CPU and processes
	// (docs/drivers.md): {"memory": "256M", "cpus": 0.5, "pids": 200}.
	Limits *needs.Limits `json:"limits,omitempty"`
}

// Need is the need the spec declares (instances default to 1); it is not
// validated.
func (spec *NeedSpec) Need() *needs.Need {
	n := &needs.Need{Name: spec.Name, Command: spec.Command, Instances: 1, Protocols: spec.Protocols, Env: spec.Env,
		Machine: spec.Machine, Restart: spec.Restart, SocketActivation: spec.SocketActivation,
		IPCGroup: spec.IPCGroup, Ingress: spec.Ingress, Balance: spec.Balance, BalanceWeights: spec.BalanceWeights,
		Upstreams: spec.Upstreams, Peers: spec.Peers, PeersSignal: spec.PeersSignal, Gateway: spec.Gateway,
		Driver: spec.Driver, DriverOpts: spec.DriverOpts}
	if spec.Instances != nil {
		n.Instances = *spec.Instances
	}
	if spec.Limits != nil && !spec.Limits.IsZero() { // {} is no limits
		n.Limits = spec.Limits
	}
	return n
}

// ScaleSpec is the body of PATCH /v1/needs/{name}.
type ScaleSpec struct {
	Instances *int `json:"instances"`
}

func (s *Server) handleAddNeed(w http.ResponseWriter, r *http.Request) {
	var spec NeedSpec
	if err := decodeBody(w, r, &spec); err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	st, err := s.AddNeed(spec.Need())
	reply(w, http.StatusCreated, st, err)
}

func (s *Server) handleScale(w http.ResponseWriter, r *http.Request) {
	var spec ScaleSpec
	if err := decodeBody(w, r, &spec); err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	if spec.Instances == nil {
		writeError(w, http.StatusBadRequest, "instances: required")
		return
	}
	st, err := s.ScaleNeed(r.PathValue("name"), *spec.Instances)
	reply(w, http.StatusOK, st, err)
}

// decodeBody reads one JSON object, refusing unknown fields, trailing data
// and bodies over MaxBody.
func decodeBody(w http.ResponseWriter, r *http.Request, v any) error {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, MaxBody))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return fmt.Errorf("body larger than %d bytes", MaxBody)
		}
		return fmt.Errorf("read body: %v", err)
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return describeJSONError(err)
	}
	if len(bytes.TrimLeft(body[dec.InputOffset():], " \t\r\n")) > 0 {
		return errors.New("body: trailing data after the JSON object")
	}
	return nil
}

func describeJSONError(err error) error {
	var te *json.UnmarshalTypeError
	var se *json.SyntaxError
	switch {
	case errors.As(err, &te) && te.Type == reflect.TypeFor[needs.Duration]():
		return fmt.Errorf("%s: want a duration such as \"250ms\" or a whole number of milliseconds, got %s", te.Field, te.Value)
	case errors.As(err, &te):
		return fmt.Errorf("%s: want %s, got JSON %s", te.Field, te.Type, te.Value)
	case errors.As(err, &se):
		return fmt.Errorf("body: malformed JSON at byte %d: %v", se.Offset, err)
	case errors.Is(err, io.EOF):
		return errors.New("body: empty, want a JSON object")
	case errors.Is(err, io.ErrUnexpectedEOF):
		return errors.New("body: malformed JSON: unexpected end of input")
	case strings.HasPrefix(err.Error(), "json: unknown field "):
		return fmt.Errorf("body: unknown field %s", strings.TrimPrefix(err.Error(), "json: unknown field "))
	}
	return fmt.Errorf("body: %v", err)
}

func reply(w http.ResponseWriter, code int, v any, err error) {
	if err != nil {
		writeError(w, statusOf(err), err.Error())
		return
	}
	writeJSON(w, code, v)
}

func statusOf(err error) int {
	switch {
	case errors.Is(err, needs.ErrInvalid):
		return http.StatusBadRequest
	case errors.Is(err, needs.ErrNotFound):
		return http.StatusNotFound
	case errors.Is(err, needs.ErrExists):
		return http.StatusConflict
	case errors.Is(err, needs.ErrUnauthorized):
		return http.StatusUnauthorized
	case errors.Is(err, ErrClosed):
		return http.StatusServiceUnavailable
	}
	return http.StatusInternalServerError
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.Encode(v)
}

func writeError(w http.ResponseWriter, code int, msg string) {
	writeJSON(w, code, map[string]string{"error": msg})
}

// handleEvents streams every Event as a JSON text message.
func (s *Server) handleEvents(w http.ResponseWriter, r *http.Request) {
	if !s.track() {
		writeError(w, http.StatusServiceUnavailable, ErrClosed.Error())
		return
	}
	defer s.wg.Done()
	c, err := websocket.Accept(w, r, nil)
	if err != nil {
		return
	}
	ch := s.hub.subscribe(1024)
	defer s.hub.unsubscribe(ch)
	ctx := c.CloseRead(s.ctx)
	for {
		select {
		case <-ctx.Done():
			c.Close(websocket.StatusGoingAway, "closing")
			return
		case e, ok := <-ch:
			if !ok {
				c.Close(websocket.StatusPolicyViolation, "too slow or shutting down")
				return
			}
			b, _ := json.Marshal(e)
			wctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			err := c.Write(wctx, websocket.MessageText, b)
			cancel()
			if err != nil {
				return
			}
		}
	}
}
