package master

import "berth/pipes"

// startLogs streams an instance's log file to the lanmanager as log.data
// frames carrying the request's id.
func (a *Agent) startLogs(conn *pipes.Conn, id uint64, l *pipes.Logs) error {
	return conn.SendBody(pipes.TypeLogData, id, &pipes.LogData{Error: "logs are not implemented yet"})
}

// cancelLogs ends the stream of request id.
func (a *Agent) cancelLogs(id uint64) {}

// rotateLoop rotates children's log files that grew past the limit until
// the Agent closes.
func (a *Agent) rotateLoop() { <-a.ctx.Done() }

type logStreams struct{}
