package sandbox

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
)

func TestParseOptions(t *testing.T) {
	for _, tt := range []struct {
		in      []string
		want    Options
		wantErr error  // nil: no error
		naming  string // the option the error must name
	}{
		{in: nil, want: Options{}},
		{in: []string{"bind=/srv/data", "bind=/srv/logs/", "ro-bind=/opt//conf", "tmpfs=/home"},
			want: Options{Bind: []string{"/srv/data", "/srv/logs"}, ROBind: []string{"/opt/conf"}, Tmpfs: []string{"/home"}}},
		{in: []string{"bind=/a=b"}, want: Options{Bind: []string{"/a=b"}}},
		{in: []string{"bind=/tmp/x"}, want: Options{Bind: []string{"/tmp/x"}}},
		{in: []string{"rw=/srv"}, wantErr: ErrUnknownOption, naming: "rw=/srv"},
		{in: []string{"bind"}, wantErr: errors.New("want key=value"), naming: "bind"},
		{in: []string{"bind="}, wantErr: ErrBadPath, naming: "bind="},
		{in: []string{"bind=srv/data"}, wantErr: ErrBadPath, naming: "bind=srv/data"},
		{in: []string{"bind=/srv/../etc"}, wantErr: ErrBadPath, naming: "bind=/srv/../etc"},
		{in: []string{"ro-bind=/srv/.."}, wantErr: ErrBadPath, naming: "ro-bind=/srv/.."},
		{in: []string{"bind=/"}, wantErr: ErrBadPath, naming: "bind=/"},
		{in: []string{"bind=//"}, wantErr: ErrBadPath, naming: "bind=//"},
		{in: []string{"tmpfs=/proc/sys"}, wantErr: ErrBadPath, naming: "tmpfs=/proc/sys"},
		{in: []string{"bind=/dev"}, wantErr: ErrBadPath, naming: "bind=/dev"},
		{in: []string{"bind=/a\x00b"}, wantErr: ErrBadPath, naming: "bind=/a\x00b"},
		{in: []string{"bind=/srv", "ro-bind=/srv/"}, wantErr: ErrDuplicatePath, naming: "ro-bind=/srv/"},
		{in: []string{"bind=/devices"}, want: Options{Bind: []string{"/devices"}}},
	} {
		got, err := ParseOptions(tt.in)
		if tt.wantErr == nil {
			if err != nil || !equalOptions(got, tt.want) {
				t.Errorf("ParseOptions(%q) = %+v, %v; want %+v", tt.in, got, err, tt.want)
			}
			continue
		}
		oe, ok := errors.AsType[*OptionError](err)
		if !ok || oe.Option != tt.naming || !strings.Contains(err.Error(), tt.wantErr.Error()) {
			t.Errorf("ParseOptions(%q) error %v; want an *OptionError naming %q with %q", tt.in, err, tt.naming, tt.wantErr)
		}
		if !errors.Is(err, tt.wantErr) && (tt.wantErr == ErrUnknownOption || tt.wantErr == ErrBadPath || tt.wantErr == ErrDuplicatePath) {
			t.Errorf("ParseOptions(%q) error %v does not wrap %v", tt.in, err, tt.wantErr)
		}
	}
}

func equalOptions(a, b Options) bool {
	return slices.Equal(a.Bind, b.Bind) && slices.Equal(a.ROBind, b.ROBind) && slices.Equal(a.Tmpfs, b.Tmpfs)
}

func TestCheck(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "f")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := (Options{Bind: []string{dir, file}, ROBind: []string{file + "x"}}).Check(); !errors.Is(err, syscall.ENOENT) ||
		err.Error() != `driver option "ro-bind=`+file+`x": no such file or directory` {
		t.Errorf("a missing ro-bind: %v", err)
	}
	if err := (Options{Tmpfs: []string{file}}).Check(); err == nil || !strings.Contains(err.Error(), `"tmpfs=`+file+`": not a directory`) {
		t.Errorf("tmpfs on a file: %v", err)
	}
	if err := (Options{Bind: []string{file}, ROBind: []string{dir}, Tmpfs: []string{dir}}).Check(); err != nil {
		t.Errorf("existing paths: %v", err)
	}
}

// TestMountOrder: shallower mounts first, so that a deeper one lands on
// top of the one that covers it; what a tmpfs hides and the child needs
// comes back read-only, and nothing else is added.
func TestMountOrder(t *testing.T) {
	r := t.TempDir() // under /tmp, which the sandbox hides
	for _, d := range []string{"home/u/bin", "srv/app/data/x", "srv/app/secret", "run/sock"} {
		if err := os.MkdirAll(filepath.Join(r, d), 0o700); err != nil {
			t.Fatal(err)
		}
	}
	ms := newMounts(Options{Bind: []string{r + "/srv/app/data"}, ROBind: []string{r + "/srv"}, Tmpfs: []string{r + "/srv/app/secret", r + "/home"}}, nil)
	for _, p := range []string{r + "/home/u/bin", r + "/srv/app/data/x", r + "/srv/app", r + "/run/sock"} {
		if err := ms.reach(p); err != nil {
			t.Fatal(err)
		}
	}
	got := strings.Join(ms.args(), " ")
	want := strings.ReplaceAll("--ro-bind / / --dev /dev --proc /proc --tmpfs /tmp "+
		"--tmpfs R/home --ro-bind R/srv R/srv --ro-bind R/run/sock R/run/sock "+
		"--tmpfs R/srv/app/secret --bind R/srv/app/data R/srv/app/data --ro-bind R/home/u/bin R/home/u/bin", "R", r)
	if got != want {
		t.Errorf("mounts\n got %s\nwant %s", got, want)
	}
	// A link to a path already visible adds nothing.
	if err := os.Symlink(r+"/run/sock", r+"/lnk"); err != nil {
		t.Fatal(err)
	}
	if err := ms.reach(r + "/lnk"); err != nil || len(ms.args()) != len(strings.Fields(want)) {
		t.Errorf("reach a link to a bound path: %v; mounts %q", err, ms.args())
	}
	if err := ms.reach("/dev/shm"); err == nil || !strings.Contains(err.Error(), "/dev/shm: under /dev or /proc") {
		t.Errorf("reach /dev/shm: %v", err)
	}
	if err := ms.reach(r + "/nothing"); !errors.Is(err, syscall.ENOENT) {
		t.Errorf("reach a missing path: %v", err)
	}
}

// FuzzParseOptions: options come from users (need add --driver-opt):
// never a panic, and what parses is clean, absolute, unique and parses
// again to the same.
func FuzzParseOptions(f *testing.F) {
	for _, s := range []string{"bind=/srv/data", "ro-bind=/opt/conf", "tmpfs=/home", "bind=/a/../b", "x=/y", "bind=", "bind=//", "tmpfs=/proc"} {
		f.Add(s, "bind=/srv/data/")
	}
	f.Fuzz(func(t *testing.T, a, b string) {
		o, err := ParseOptions([]string{a, b})
		if err != nil {
			if _, ok := errors.AsType[*OptionError](err); !ok {
				t.Fatalf("error %v is not an *OptionError", err)
			}
			return
		}
		all := slices.Concat(o.Bind, o.ROBind, o.Tmpfs)
		seen := map[string]bool{}
		for _, p := range all {
			if !filepath.IsAbs(p) || filepath.Clean(p) != p || p == "/" || seen[p] || slices.Contains(strings.Split(p, "/"), "..") {
				t.Fatalf("ParseOptions(%q, %q) gave path %q", a, b, p)
			}
			seen[p] = true
		}
		again, err := ParseOptions(o.Strings())
		if err != nil || !equalOptions(again, o) {
			t.Fatalf("round trip of %+v: %+v, %v", o, again, err)
		}
	})
}
