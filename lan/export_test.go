package lan

// MaxChecks is maxChecks, for the tests of package lan_test.
const MaxChecks = maxChecks

// ConnPeak is the most connections the server has held open at once.
func (s *Server) ConnPeak() int64 { return s.ln.(*limitListener).peak.Load() }
