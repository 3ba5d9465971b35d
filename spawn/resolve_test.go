package spawn

import (
	"errors"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// TestResolveCommand: the command a need declares, expanded and resolved
// against the child's environment, and Start with the same Spec agreeing
// with ResolveCommand on every case: it runs the file ResolveCommand names,
// or fails with the same error.
func TestResolveCommand(t *testing.T) {
	bin := t.TempDir()
	prog := filepath.Join(bin, "berth-resolve-prog")
	if err := os.WriteFile(prog, []byte("#!/bin/sh\necho \"ran $0\"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	plain := filepath.Join(bin, "plain")
	if err := os.WriteFile(plain, []byte("#!/bin/sh\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := exec.LookPath("berth-resolve-prog"); err == nil {
		t.Fatal("berth-resolve-prog is in the test's own PATH")
	}
	if _, err := exec.LookPath("sh"); err != nil {
		t.Fatalf("sh is not in the test's PATH: %v", err)
	}
	empty := t.TempDir()
	tests := []struct {
		name    string
		command []string // as the need declares it
		env     []string
		dir     string
		want    string // the file run
		wantErr error
	}{
		{"bare name in the child's PATH only", []string{"berth-resolve-prog"}, []string{"PATH=" + empty + ":" + bin}, "", prog, nil},
		{"bare name in our PATH only", []string{"sh", "-c", "exit 0"}, []string{"PATH=" + empty}, "", "", exec.ErrNotFound},
		{"no PATH", []string{"sh"}, nil, "", "", exec.ErrNotFound},
		{"relative PATH entry skipped", []string{"berth-resolve-prog"}, []string{"PATH=.:" + bin}, bin, prog, nil},
		{"last PATH wins", []string{"berth-resolve-prog"}, []string{"PATH=" + empty, "PATH=" + bin}, "", prog, nil},
		{"${NAME} from the child's env", []string{"${BIN}/berth-resolve-prog"}, []string{"BIN=" + bin}, "", prog, nil},
		{"$NAME stays literal", []string{"$BIN/berth-resolve-prog"}, []string{"BIN=" + bin, "PATH=" + bin}, "", "", syscall.ENOENT},
		{"${NAME} undefined stays literal", []string{"${NOPE}/berth-resolve-prog"}, []string{"PATH=" + bin}, "", "", syscall.ENOENT},
		{"$${ is a literal ${", []string{"$${BIN}/berth-resolve-prog"}, []string{"BIN=" + bin}, "", "", syscall.ENOENT},
		{"relative to Dir", []string{"./berth-resolve-prog"}, nil, bin, "./berth-resolve-prog", nil},
		{"relative, missing", []string{"./berth-resolve-prog"}, nil, empty, "", syscall.ENOENT},
		{"relative, Dir missing", []string{"./berth-resolve-prog"}, nil, filepath.Join(empty, "nodir"), "", fs.ErrNotExist},
		{"not executable", []string{plain}, nil, "", "", syscall.EACCES},
		{"a directory", []string{bin}, nil, "", "", syscall.EACCES},
		{"empty", nil, nil, "", "", ErrEmptyCommand},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			command := ExpandArgs(tt.command, tt.env)
			got, err := ResolveCommand(command, tt.env, tt.dir)
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) {
					t.Errorf("ResolveCommand = %q, %v; want %v", got, err, tt.wantErr)
				}
			} else if err != nil || got != tt.want {
				t.Errorf("ResolveCommand = %q, %v; want %q", got, err, tt.want)
			}

			spec := Spec{Instance: "web.0", Command: command, Env: tt.env, Dir: tt.dir, LogPath: filepath.Join(t.TempDir(), "child.log")}
			c, err := Start(t.Context(), nil, spec)
			if tt.wantErr != nil {
				if err == nil {
					c.Stop(t.Context(), 0)
					t.Fatalf("Start ran %q, which ResolveCommand refuses", command)
				}
				if !errors.Is(err, tt.wantErr) {
					t.Errorf("Start: %v, want %v as ResolveCommand", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("Start: %v, but ResolveCommand found %q", err, got)
			}
			if ex := waitDone(t, c); ex.Code != 0 {
				t.Fatalf("exit %+v", ex)
			}
			b, _ := os.ReadFile(spec.LogPath)
			if strings.TrimSpace(string(b)) != "ran "+tt.want {
				t.Errorf("child printed %q, want \"ran %s\"", b, tt.want)
			}
		})
	}
}
