package gateway

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/coder/websocket"
)

func (s *Server) handleList(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(s.Connections())
}

// handlePush serves POST /@connections/{id}: the body, as one text frame.
func (s *Server) handlePush(w http.ResponseWriter, r *http.Request) {
	c, code := s.lookup(r.PathValue("id"))
	if c == nil {
		http.Error(w, pushError(code), code)
		return
	}
	b, err := io.ReadAll(http.MaxBytesReader(w, r.Body, int64(s.opts.MaxPush)))
	if err != nil {
		http.Error(w, fmt.Sprintf("push over %d bytes", s.opts.MaxPush), http.StatusRequestEntityTooLarge)
		return
	}
	ctx, cancel := context.WithTimeout(c.ctx, 10*time.Second)
	defer cancel()
	if err := c.ws.Write(ctx, websocket.MessageText, b); err != nil {
		if c.ctx.Err() != nil {
			http.Error(w, pushError(http.StatusGone), http.StatusGone)
			return
		}
		http.Error(w, "the client did not take the push within 10s: "+err.Error(), http.StatusGatewayTimeout)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// handleClose serves DELETE /@connections/{id}.
func (s *Server) handleClose(w http.ResponseWriter, r *http.Request) {
	c, code := s.lookup(r.PathValue("id"))
	if c == nil {
		http.Error(w, pushError(code), code)
		return
	}
	c.close(websocket.StatusNormalClosure, "closed through the gateway's management API")
	w.WriteHeader(http.StatusNoContent)
}

func pushError(code int) string {
	if code == http.StatusGone {
		return "that connection has gone"
	}
	return "no such connection"
}
