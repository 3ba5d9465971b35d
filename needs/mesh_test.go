package needs_test

import (
	"strings"
	"testing"

	"berth/needs"
)

func TestIngressValidation(t *testing.T) {
	base := func() needs.Need {
		return needs.Need{Name: "web", Command: []string{"x"}, Protocols: []needs.Protocol{needs.HTTP, needs.TCP}}
	}
	ok := base()
	ok.Ingress = []needs.Ingress{{Protocol: needs.HTTP, Port: 8080}, {Protocol: needs.TCP, Port: 9000}}
	ok.Balance = needs.BalanceLeastConn
	if err := ok.Validate(); err != nil {
		t.Fatalf("valid ingress: %v", err)
	}
	if !ok.Meshed() || ok.BalanceOrDefault() != "least-conn" {
		t.Errorf("Meshed %v, balance %q", ok.Meshed(), ok.BalanceOrDefault())
	}
	for _, tt := range []struct {
		name    string
		ingress []needs.Ingress
		balance string
		want    string
	}{
		{"protocol not declared", []needs.Ingress{{Protocol: needs.WS, Port: 80}}, "", "declares no ws port"},
		{"unknown protocol", []needs.Ingress{{Protocol: "udp", Port: 80}}, "", "ingress[0]"},
		{"port 0", []needs.Ingress{{Protocol: needs.HTTP, Port: 0}}, "", "1-65535"},
		{"port too big", []needs.Ingress{{Protocol: needs.HTTP, Port: 65536}}, "", "1-65535"},
		{"protocol twice", []needs.Ingress{{Protocol: needs.HTTP, Port: 1}, {Protocol: needs.HTTP, Port: 2}}, "", "has an ingress already"},
		{"port twice", []needs.Ingress{{Protocol: needs.HTTP, Port: 1}, {Protocol: needs.TCP, Port: 1}}, "", "listed twice"},
		{"unknown balance", []needs.Ingress{{Protocol: needs.HTTP, Port: 1}}, "random", "want one of round-robin"},
		{"unknown balance without ingress", nil, "random", "want one of round-robin"},
	} {
		n := base()
		n.Ingress, n.Balance = tt.ingress, tt.balance
		if err := n.Validate(); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: %v, want %q", tt.name, err, tt.want)
		}
	}
	if n := base(); n.Meshed() || n.BalanceOrDefault() != needs.BalanceRoundRobin {
		t.Errorf("a need without ingress: meshed %v, balance %q", n.Meshed(), n.BalanceOrDefault())
	}
	// A balance without ingress is the balance of the upstreams that lead
	// to the need.
	n := base()
	n.Balance = needs.BalanceHash
	if err := n.Validate(); err != nil || n.Meshed() {
		t.Errorf("balance hash without ingress: %v (meshed %v), want valid and not meshed", err, n.Meshed())
	}
}

func TestParseIngress(t *testing.T) {
	got, err := needs.ParseIngress([]string{"http=8080", "tcp=5432"})
	if err != nil || len(got) != 2 || got[0] != (needs.Ingress{Protocol: needs.HTTP, Port: 8080}) || got[1].Port != 5432 {
		t.Errorf("ParseIngress = %v, %v", got, err)
	}
	for _, bad := range []string{"http", "http=x", "=80x"} {
		if _, err := needs.ParseIngress([]string{bad}); err == nil || !strings.Contains(err.Error(), "ingress") {
			t.Errorf("ParseIngress(%q) = %v, want an error naming ingress", bad, err)
		}
	}
}

func TestBalanceWeights(t *testing.T) {
	n := needs.Need{Name: "web", Command: []string{"x"}, Protocols: []needs.Protocol{needs.HTTP},
		Ingress: []needs.Ingress{{Protocol: needs.HTTP, Port: 8080}}, Balance: needs.BalanceResource}
	for _, ok := range []string{"conns=1", "cpu=0,heap=0", "conns=10, cpu=2, heap=100", "heap=1e6"} {
		n.BalanceWeights = ok
		if err := n.Validate(); err != nil {
			t.Errorf("%q: %v", ok, err)
		}
	}
	for _, bad := range []string{"cpu", "cpu=x", "cpu=-1", "cpu=2e6", "cpu=NaN", "disk=1", "cpu=1,cpu=2", ","} {
		n.BalanceWeights = bad
		if err := n.Validate(); err == nil || !strings.Contains(err.Error(), "balance_weights") {
			t.Errorf("%q: %v, want an error naming balance_weights", bad, err)
		}
	}
	n.Balance, n.BalanceWeights = needs.BalanceLeastConn, "cpu=1"
	if err := n.Validate(); err == nil || !strings.Contains(err.Error(), "only with --balance resource") {
		t.Errorf("weights with least-conn: %v", err)
	}
}

// TestProtocolClientFirst: only the protocols whose clients speak first
// get the mesh's held handshake ACK; a server-first protocol behind tcp
// must not wait for it.
func TestProtocolClientFirst(t *testing.T) {
	for p, want := range map[needs.Protocol]bool{needs.HTTP: true, needs.WS: true, needs.TCP: false, "udp": false} {
		if got := p.ClientFirst(); got != want {
			t.Errorf("%s.ClientFirst() = %v, want %v", p, got, want)
		}
	}
}
