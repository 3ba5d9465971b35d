package driverplugin

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"sync"
)

// ReattachState is what a master persists about a running driver process
// so that its next run re-attaches to it (go-plugin's ReattachConfig) with
// the same mutual TLS: go-plugin's AutoMTLS cannot reattach by itself, so
// the one-time certificates it negotiated are kept here. It holds a private
// key: keep it in a file only the master can read (master.db is 0600).
type ReattachState struct {
	PID             int    `json:"pid"`
	StartTime       uint64 `json:"start_time"` // of the driver process: a reused pid has another
	Network         string `json:"network"`
	Addr            string `json:"addr"`
	ProtocolVersion int    `json:"protocol_version"`
	ClientCert      []byte `json:"client_cert"` // DER
	ClientKey       []byte `json:"client_key"`  // PKCS #8 DER
	ServerCert      []byte `json:"server_cert"` // DER
}

// netAddr is a net.Addr from its two strings.
type netAddr struct{ network, addr string }

func (a netAddr) Network() string { return a.network }
func (a netAddr) String() string  { return a.addr }

// tlsConfig is the client side of the mutual TLS in s.
func (s *ReattachState) tlsConfig() (*tls.Config, error) {
	if len(s.ClientCert) == 0 || len(s.ClientKey) == 0 || len(s.ServerCert) == 0 {
		return nil, errors.New("reattach state has no TLS certificates")
	}
	key, err := x509.ParsePKCS8PrivateKey(s.ClientKey)
	if err != nil {
		return nil, fmt.Errorf("client key: %w", err)
	}
	server, err := x509.ParseCertificate(s.ServerCert)
	if err != nil {
		return nil, fmt.Errorf("server certificate: %w", err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(server)
	return &tls.Config{
		Certificates: []tls.Certificate{{Certificate: [][]byte{s.ClientCert}, PrivateKey: key}},
		RootCAs:      pool,
		ServerName:   "localhost",
		MinVersion:   tls.VersionTLS12,
	}, nil
}

// tlsCapture records the server certificate go-plugin's AutoMTLS accepted
// on the first connection, and the client certificate it generated.
type tlsCapture struct {
	mu     sync.Mutex
	server []byte
}

// hook makes cfg (go-plugin's AutoMTLS config, before the first dial)
// record the server certificate.
func (c *tlsCapture) hook(cfg *tls.Config) {
	cfg.VerifyConnection = func(cs tls.ConnectionState) error {
		if len(cs.PeerCertificates) > 0 {
			c.mu.Lock()
			c.server = cs.PeerCertificates[0].Raw
			c.mu.Unlock()
		}
		return nil
	}
}

// state fills the TLS part of s from cfg and what was captured.
func (c *tlsCapture) fill(s *ReattachState, cfg *tls.Config) error {
	c.mu.Lock()
	s.ServerCert = c.server
	c.mu.Unlock()
	if cfg == nil || len(cfg.Certificates) == 0 || len(cfg.Certificates[0].Certificate) == 0 {
		return errors.New("no client certificate")
	}
	key, err := x509.MarshalPKCS8PrivateKey(cfg.Certificates[0].PrivateKey)
	if err != nil {
		return err
	}
	s.ClientCert, s.ClientKey = cfg.Certificates[0].Certificate[0], key
	if s.ServerCert == nil {
		return errors.New("no server certificate seen")
	}
	return nil
}

var _ net.Addr = netAddr{}
