package lan

import (
	"net/http"

	"berth/pipes"
)

// handleLogs serves GET /v1/instances/{name}/logs.
func (s *Server) handleLogs(w http.ResponseWriter, r *http.Request) {
	writeError(w, http.StatusNotImplemented, "logs are not implemented yet")
}

// logData routes a log.data frame from a master to the HTTP request waiting for it.
func (s *Server) logData(m *session, msg *pipes.Msg) error { return nil }

// logError routes an error frame answering a logs request; false when the
// error answers nothing of ours.
func (s *Server) logError(m *session, msg *pipes.Msg) bool { return false }

type logRequests struct{}
