package master_test

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"berth/master"
	"berth/needs"
)

func TestParseConfigDefaults(t *testing.T) {
	for _, in := range []string{`{}`, "{}\n", ` { } `} {
		cfg, err := master.ParseConfig([]byte(in))
		if err != nil {
			t.Fatalf("ParseConfig(%q): %v", in, err)
		}
		if want := master.DefaultConfig(); !reflect.DeepEqual(cfg, want) {
			t.Errorf("ParseConfig(%q) = %+v, want defaults %+v", in, cfg, want)
		}
	}
	// The defaults themselves must be valid.
	if err := master.DefaultConfig().Validate(); err != nil {
		t.Fatalf("DefaultConfig().Validate(): %v", err)
	}
}

func TestParseConfigOK(t *testing.T) {
	in := `{
		"lanmanageraddress": "https://lan.example:8443",
		"portrangestart": {"tcp": 20000, "http": 21000, "ws": 22000},
		"portrangesize": 500,
		"runtimedirectory": "/var/lib/berth",
		"name": "m-1",
		"advertiseaddress": "10.0.0.5",
		"ingressaddress": "10.0.0.6",
		"token": "s3cret"
	}`
	cfg, err := master.ParseConfig([]byte(in))
	if err != nil {
		t.Fatalf("ParseConfig: %v", err)
	}
	want := master.Config{
		LanManagerAddress: "https://lan.example:8443",
		PortRangeStart:    map[needs.Protocol]int{needs.TCP: 20000, needs.HTTP: 21000, needs.WS: 22000},
		PortRangeSize:     500,
		RuntimeDirectory:  "/var/lib/berth",
		Name:              "m-1",
		AdvertiseAddress:  "10.0.0.5",
		IngressAddress:    "10.0.0.6",
		Token:             "s3cret",
	}
	if !reflect.DeepEqual(cfg, want) {
		t.Errorf("ParseConfig = %+v, want %+v", cfg, want)
	}
	if r := cfg.Ranges()[needs.HTTP]; r.Start != 21000 || r.Size != 500 {
		t.Errorf("Ranges()[http] = %+v, want start 21000 size 500", r)
	}
	// A portrangestart replaces the default ranges whole: a master may
	// serve only some protocols.
	cfg, err = master.ParseConfig([]byte(`{"portrangestart":{"tcp":20000}}`))
	if err != nil {
		t.Fatalf("ParseConfig(tcp only): %v", err)
	}
	if want := map[needs.Protocol]int{needs.TCP: 20000}; !reflect.DeepEqual(cfg.PortRangeStart, want) {
		t.Errorf("portrangestart = %v, want %v", cfg.PortRangeStart, want)
	}
	// ... and parsing leaves the defaults alone.
	if d := master.DefaultConfig(); len(d.PortRangeStart) != 3 {
		t.Errorf("DefaultConfig ranges changed to %v", d.PortRangeStart)
	}
	// An IPv6 advertise address is an IP too.
	if _, err := master.ParseConfig([]byte(`{"advertiseaddress":"::1"}`)); err != nil {
		t.Errorf("advertiseaddress ::1: %v", err)
	}
}

// TestParseConfigDurations: stopafterdisconnect and repairinterval are
// duration strings with defaults for "".
func TestParseConfigDurations(t *testing.T) {
	tests := []struct {
		in         string
		stopAfter  time.Duration
		repairEach time.Duration
	}{
		{`{}`, 0, master.DefaultRepairInterval},
		{`{"stopafterdisconnect":""}`, 0, master.DefaultRepairInterval},
		{`{"stopafterdisconnect":"90s"}`, 90 * time.Second, master.DefaultRepairInterval},
		{`{"stopafterdisconnect":"1h30m","repairinterval":"1s"}`, 90 * time.Minute, time.Second},
		{`{"repairinterval":"5m"}`, 0, 5 * time.Minute},
		{`{"repairinterval":""}`, 0, master.DefaultRepairInterval},
	}
	for _, tt := range tests {
		cfg, err := master.ParseConfig([]byte(tt.in))
		if err != nil {
			t.Errorf("ParseConfig(%s): %v", tt.in, err)
			continue
		}
		if got := cfg.DisconnectLimit(); got != tt.stopAfter {
			t.Errorf("ParseConfig(%s).DisconnectLimit() = %v, want %v", tt.in, got, tt.stopAfter)
		}
		if got := cfg.RepairPeriod(); got != tt.repairEach {
			t.Errorf("ParseConfig(%s).RepairPeriod() = %v, want %v", tt.in, got, tt.repairEach)
		}
	}
}

func TestParseConfigErrors(t *testing.T) {
	tests := []struct {
		name string
		in   string
		// wantField, if set, is the *needs.FieldError's Field.
		wantField string
		// wantIn are substrings the message must contain.
		wantIn []string
	}{
		{name: "unknown key", in: `{"portrangestrat":{}}`, wantIn: []string{"portrangestrat", "unknown"}},
		{name: "unknown key among good", in: `{"portrangesize":10,"bogus":1}`, wantIn: []string{"bogus"}},
		{name: "wrong type size", in: `{"portrangesize":"x"}`, wantIn: []string{"portrangesize"}},
		{name: "wrong type start", in: `{"portrangestart":[1,2]}`, wantIn: []string{"portrangestart"}},
		{name: "wrong type name", in: `{"name":7}`, wantIn: []string{"name"}},
		{name: "size 0", in: `{"portrangesize":0}`, wantField: "portrangesize", wantIn: []string{"portrangesize"}},
		{name: "size 70000", in: `{"portrangesize":70000}`, wantField: "portrangesize", wantIn: []string{"portrangesize", "70000"}},
		{name: "size negative", in: `{"portrangesize":-1}`, wantField: "portrangesize"},
		{name: "start 0", in: `{"portrangestart":{"tcp":0}}`, wantField: "portrangestart.tcp", wantIn: []string{"portrangestart.tcp"}},
		{name: "start 65536", in: `{"portrangestart":{"ws":65536}}`, wantField: "portrangestart.ws"},
		{name: "range past 65535", in: `{"portrangestart":{"tcp":65535}}`, wantField: "portrangesize.tcp", wantIn: []string{"65535"}},
		{name: "overlap tcp http", in: `{"portrangestart":{"tcp":16500,"http":16000}}`, wantField: "portrangestart.http", wantIn: []string{"overlaps", "tcp"}},
		{name: "same start", in: `{"portrangestart":{"tcp":17000,"http":17000,"ws":18000}}`, wantIn: []string{"overlaps"}},
		{name: "unknown protocol", in: `{"portrangestart":{"udp":20000}}`, wantField: "portrangestart", wantIn: []string{"udp"}},
		{name: "no ranges", in: `{"portrangestart":null}`, wantIn: []string{"portrange"}},
		{name: "empty ranges", in: `{"portrangestart":{}}`, wantIn: []string{"portrange"}},
		{name: "bad name", in: `{"name":"Bad_Name"}`, wantField: "name", wantIn: []string{"Bad_Name"}},
		{name: "name leading dash", in: `{"name":"-m"}`, wantField: "name"},
		{name: "advertise not IP", in: `{"advertiseaddress":"host.lan"}`, wantField: "advertiseaddress", wantIn: []string{"host.lan"}},
		{name: "advertise with port", in: `{"advertiseaddress":"127.0.0.1:80"}`, wantField: "advertiseaddress"},
		{name: "advertise unspecified", in: `{"advertiseaddress":"0.0.0.0"}`, wantField: "advertiseaddress", wantIn: []string{"0.0.0.0"}},
		{name: "advertise multicast", in: `{"advertiseaddress":"224.0.0.1"}`, wantField: "advertiseaddress"},
		{name: "ingress not IP", in: `{"ingressaddress":"host.lan"}`, wantField: "ingressaddress", wantIn: []string{"ingressaddress", "host.lan"}},
		{name: "ingress with port", in: `{"ingressaddress":"127.0.0.1:8080"}`, wantField: "ingressaddress"},
		{name: "ingress unspecified", in: `{"ingressaddress":"0.0.0.0"}`, wantField: "ingressaddress", wantIn: []string{"0.0.0.0"}},
		{name: "lanmanager bad scheme", in: `{"lanmanageraddress":"ftp://x"}`, wantField: "lanmanageraddress", wantIn: []string{"ftp"}},
		{name: "lanmanager empty", in: `{"lanmanageraddress":""}`, wantField: "lanmanageraddress"},
		{name: "runtime dir empty", in: `{"runtimedirectory":""}`, wantField: "runtimedirectory"},
		{name: "plugins dir NUL", in: `{"pluginsdirectory":"a\u0000b"}`, wantField: "pluginsdirectory", wantIn: []string{"NUL"}},
		{name: "plugins dir a file", in: `{"pluginsdirectory":"/etc/hostname"}`, wantField: "pluginsdirectory", wantIn: []string{"/etc/hostname", "not a directory"}},
		{name: "plugins dir number", in: `{"pluginsdirectory":1}`, wantIn: []string{"pluginsdirectory", "string"}},
		{name: "trailing object", in: `{} {}`, wantIn: []string{"trailing"}},
		{name: "trailing garbage", in: `{"name":"m1"} x`, wantIn: []string{"trailing"}},
		{name: "empty", in: ``, wantIn: []string{"empty"}},
		{name: "malformed", in: `{"name":}`, wantIn: []string{"malformed"}},
		{name: "truncated", in: `{"name":"m1"`},
		{name: "not an object", in: `[]`},
		{name: "stopafterdisconnect not a duration", in: `{"stopafterdisconnect":"soon"}`, wantField: "stopafterdisconnect", wantIn: []string{"stopafterdisconnect", "soon"}},
		{name: "stopafterdisconnect no unit", in: `{"stopafterdisconnect":"30"}`, wantField: "stopafterdisconnect", wantIn: []string{`"30"`}},
		{name: "stopafterdisconnect zero", in: `{"stopafterdisconnect":"0s"}`, wantField: "stopafterdisconnect", wantIn: []string{"positive"}},
		{name: "stopafterdisconnect negative", in: `{"stopafterdisconnect":"-1m"}`, wantField: "stopafterdisconnect"},
		{name: "stopafterdisconnect number", in: `{"stopafterdisconnect":30}`, wantIn: []string{"stopafterdisconnect", "string"}},
		{name: "repairinterval not a duration", in: `{"repairinterval":"often"}`, wantField: "repairinterval", wantIn: []string{"repairinterval", "often"}},
		{name: "repairinterval too short", in: `{"repairinterval":"500ms"}`, wantField: "repairinterval", wantIn: []string{"at least 1s", "500ms"}},
		{name: "repairinterval zero", in: `{"repairinterval":"0"}`, wantField: "repairinterval"},
		{name: "repairinterval number", in: `{"repairinterval":30}`, wantIn: []string{"repairinterval"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := master.ParseConfig([]byte(tt.in))
			if err == nil {
				t.Fatalf("ParseConfig(%s) = nil error", tt.in)
			}
			if tt.wantField != "" {
				var fe *needs.FieldError
				if !errors.As(err, &fe) {
					t.Fatalf("ParseConfig(%s) = %T %v, want *needs.FieldError", tt.in, err, err)
				}
				if fe.Field != tt.wantField {
					t.Errorf("Field = %q, want %q (err: %v)", fe.Field, tt.wantField, err)
				}
				if !errors.Is(err, needs.ErrInvalid) {
					t.Errorf("errors.Is(%v, ErrInvalid) = false", err)
				}
			}
			for _, s := range tt.wantIn {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("error %q does not mention %q", err, s)
				}
			}
		})
	}
}

func TestLinkURL(t *testing.T) {
	tests := []struct {
		addr    string
		want    string
		wantErr bool
	}{
		{addr: "127.0.0.1", want: "ws://127.0.0.1:23552/v1/link"},
		{addr: " 127.0.0.1 ", want: "ws://127.0.0.1:23552/v1/link"},
		{addr: "host:9000", want: "ws://host:9000/v1/link"},
		{addr: "host", want: "ws://host:23552/v1/link"},
		{addr: "http://h:1", want: "ws://h:1/v1/link"},
		{addr: "https://h", want: "wss://h:23552/v1/link"},
		{addr: "ws://h:2/ignored/path", want: "ws://h:2/v1/link"},
		{addr: "wss://h", want: "wss://h:23552/v1/link"},
		{addr: "::1", want: "ws://[::1]:23552/v1/link"},
		{addr: "[::1]", want: "ws://[::1]:23552/v1/link"},
		{addr: "[::1]:7000", want: "ws://[::1]:7000/v1/link"},
		{addr: "ftp://x", wantErr: true},
		{addr: "", wantErr: true},
		{addr: "   ", wantErr: true},
		{addr: "http://", wantErr: true},
		{addr: "host:0", wantErr: true},
		{addr: "host:70000", wantErr: true},
		{addr: "ws://h:99999", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.addr, func(t *testing.T) {
			got, err := master.Config{LanManagerAddress: tt.addr}.LinkURL()
			if tt.wantErr {
				if err == nil {
					t.Fatalf("LinkURL(%q) = %q, want an error", tt.addr, got)
				}
				return
			}
			if err != nil {
				t.Fatalf("LinkURL(%q): %v", tt.addr, err)
			}
			if got != tt.want {
				t.Errorf("LinkURL(%q) = %q, want %q", tt.addr, got, tt.want)
			}
		})
	}
}

func TestLoadConfigCreatesDefaults(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "masterconfig.json")
	// LoadConfig (master ps) writes nothing.
	if _, err := master.LoadConfig(path); !errors.Is(err, os.ErrNotExist) || !strings.Contains(err.Error(), path) {
		t.Fatalf("LoadConfig of a missing file = %v, want a not-exist error naming it", err)
	}
	if _, err := os.Stat(path); err == nil {
		t.Fatal("LoadConfig created the file")
	}
	cfg, created, err := master.LoadOrCreateConfig(path)
	if err != nil || !created {
		t.Fatalf("LoadOrCreateConfig: %v, created %v; want the defaults written", err, created)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatalf("config file not created: %v", err)
	}
	if mode := fi.Mode().Perm(); mode != 0o600 {
		t.Errorf("config file mode = %o, want 600", mode)
	}
	want := master.DefaultConfig()
	want.RuntimeDirectory = filepath.Join(dir, ".berth")
	if !reflect.DeepEqual(cfg, want) {
		t.Errorf("LoadConfig = %+v, want %+v", cfg, want)
	}
	if !filepath.IsAbs(cfg.RuntimeDirectory) {
		t.Errorf("RuntimeDirectory %q is not absolute", cfg.RuntimeDirectory)
	}

	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	back, err := master.ParseConfig(b)
	if err != nil {
		t.Fatalf("ParseConfig(written file): %v\n%s", err, b)
	}
	if !reflect.DeepEqual(back, master.DefaultConfig()) {
		t.Errorf("written file parses to %+v, want defaults %+v", back, master.DefaultConfig())
	}

	// Loading again reads the file rather than rewriting it.
	again, created, err := master.LoadOrCreateConfig(path)
	if err != nil || created {
		t.Fatalf("second LoadOrCreateConfig: %v, created %v", err, created)
	}
	if !reflect.DeepEqual(again, cfg) {
		t.Errorf("second LoadConfig = %+v, want %+v", again, cfg)
	}
}

func TestLoadConfigRuntimeDirectory(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) string {
		t.Helper()
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}

	rel := write("rel.json", `{"runtimedirectory":"state/run"}`)
	cfg, err := master.LoadConfig(rel)
	if err != nil {
		t.Fatalf("LoadConfig: %v", err)
	}
	if want := filepath.Join(dir, "state", "run"); cfg.RuntimeDirectory != want {
		t.Errorf("relative runtimedirectory = %q, want %q", cfg.RuntimeDirectory, want)
	}

	absDir := filepath.Join(t.TempDir(), "elsewhere")
	abs := write("abs.json", `{"runtimedirectory":"`+absDir+`"}`)
	cfg, err = master.LoadConfig(abs)
	if err != nil {
		t.Fatalf("LoadConfig: %v", err)
	}
	if cfg.RuntimeDirectory != absDir {
		t.Errorf("absolute runtimedirectory = %q, want %q", cfg.RuntimeDirectory, absDir)
	}

	// A config path relative to the working directory still yields an
	// absolute runtime directory next to the file.
	t.Chdir(dir)
	cfg, err = master.LoadConfig("rel.json")
	if err != nil {
		t.Fatalf("LoadConfig(relative path): %v", err)
	}
	if want := filepath.Join(dir, "state", "run"); cfg.RuntimeDirectory != want {
		t.Errorf("runtimedirectory via relative path = %q, want %q", cfg.RuntimeDirectory, want)
	}

	// The plugins directory defaults to <runtime>/plugins, and a relative
	// one is taken relative to the file as well.
	if want := filepath.Join(dir, "state", "run", "plugins"); cfg.PluginsDir() != want {
		t.Errorf("default plugins directory = %q, want %q", cfg.PluginsDir(), want)
	}
	cfg, err = master.LoadConfig(write("plugins.json", `{"pluginsdirectory":"drivers"}`))
	if err != nil {
		t.Fatalf("LoadConfig: %v", err)
	}
	if want := filepath.Join(dir, "drivers"); cfg.PluginsDir() != want {
		t.Errorf("relative pluginsdirectory = %q, want %q", cfg.PluginsDir(), want)
	}

	bad := write("bad.json", `{"portrangesize":0}`)
	if _, err := master.LoadConfig(bad); err == nil || !strings.Contains(err.Error(), bad) || !strings.Contains(err.Error(), "portrangesize") {
		t.Errorf("LoadConfig(bad) = %v, want an error naming the file and portrangesize", err)
	}
	if _, err := master.LoadConfig(filepath.Join(dir, "no", "such", "dir", "c.json")); err == nil {
		t.Error("LoadConfig in a missing directory succeeded, want an error")
	}
}

// TestConfigTokenProtected: a masterconfig.json that holds the API token is
// refused while other users may read it (the README had users write one
// with the default umask, 0644); without a token, or at 0600, it loads.
func TestConfigTokenProtected(t *testing.T) {
	dir := t.TempDir()
	for _, tt := range []struct {
		body string
		mode os.FileMode
		ok   bool
	}{
		{`{"token": "T"}`, 0o644, false},
		{`{"token": "T"}`, 0o640, false},
		{`{"token": "T"}`, 0o604, false},
		{`{"token": "T"}`, 0o600, true},
		{`{"token": "T"}`, 0o400, true},
		{`{}`, 0o644, true},
	} {
		path := filepath.Join(dir, "masterconfig.json")
		os.Remove(path)
		if err := os.WriteFile(path, []byte(tt.body), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(path, tt.mode); err != nil {
			t.Fatal(err)
		}
		before, _ := os.ReadFile(path)
		cfg, err := master.LoadConfig(path)
		if err == nil {
			err = master.CheckTokenFile(path, cfg)
		}
		switch {
		case tt.ok && err != nil:
			t.Errorf("%s at %04o: %v", tt.body, tt.mode, err)
		case !tt.ok && (err == nil || !strings.Contains(err.Error(), "chmod 600 "+path) || !strings.Contains(err.Error(), "token")):
			t.Errorf("%s at %04o: err %v, want one naming the token and chmod 600 %s", tt.body, tt.mode, err, path)
		case tt.ok && cfg.Token != strings.Trim(strings.TrimPrefix(strings.Trim(tt.body, "{}"), `"token": `), `"`):
			t.Errorf("%s: token %q", tt.body, cfg.Token)
		}
		after, _ := os.ReadFile(path)
		fi, _ := os.Stat(path)
		if string(after) != string(before) || fi.Mode().Perm() != tt.mode {
			t.Errorf("%s at %04o: the file was changed (now %04o)", tt.body, tt.mode, fi.Mode().Perm())
		}
	}
}
