package spawn

import (
	"slices"
	"testing"
)

func TestExpandArgs(t *testing.T) {
	env := []string{"BERTH_PORT_HTTP=8080", "NAME=web.0", "NAME=web.1", "EMPTY=", "EQ=a=b"}
	tests := []struct{ in, want string }{
		{"plain", "plain"},
		{"--port=${BERTH_PORT_HTTP}", "--port=8080"},
		{"--port=$BERTH_PORT_HTTP", "--port=$BERTH_PORT_HTTP"}, // braces only
		{"${NAME}", "web.1"},                                   // the last definition wins
		{"${NAME}x${NAME}", "web.1xweb.1"},
		{"<${UNKNOWN}>", "<${UNKNOWN}>"}, // not ours: left for the program
		{"<${EMPTY}>", "<>"},
		{"${EQ}", "a=b"},
		{"$${NAME}", "${NAME}"},
		{"echo $! $1 $? $$", "echo $! $1 $? $$"},
		{"${NAME", "${NAME"},
		{"${}", "${}"},
		{"cost: 5$", "cost: 5$"},
		{"", ""},
	}
	var in, want []string
	for _, tt := range tests {
		in = append(in, tt.in)
		want = append(want, tt.want)
		if got := ExpandArgs([]string{tt.in}, env); !slices.Equal(got, []string{tt.want}) {
			t.Errorf("ExpandArgs(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
	orig := slices.Clone(in)
	if got := ExpandArgs(in, env); !slices.Equal(got, want) {
		t.Errorf("all at once: %q", got)
	}
	if !slices.Equal(in, orig) {
		t.Errorf("ExpandArgs modified its input")
	}
	if got := ExpandArgs(nil, env); len(got) != 0 {
		t.Errorf("ExpandArgs(nil) = %q", got)
	}
}
