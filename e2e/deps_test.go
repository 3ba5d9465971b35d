package e2e

import (
	"os/exec"
	"strings"
	"testing"
)

// TestDependencyArrows keeps the import graph pointing one way: needs at
// the bottom, the leaf packages apart from one another, cmd on top.
func TestDependencyArrows(t *testing.T) {
	bad := map[string]map[string]string{ // package => forbidden dependency => why
		"berth/needs":      {"berth/pipes": "needs imports nothing of ours", "berth/portoffice": "needs imports nothing of ours", "berth/spawn": "needs imports nothing of ours", "berth/lan": "needs imports nothing of ours", "berth/master": "needs imports nothing of ours"},
		"berth/portoffice": {"berth/spawn": "leaves do not know each other", "berth/pipes": "leaves do not know each other", "berth/lan": "arrows point down", "berth/master": "arrows point down"},
		"berth/spawn":      {"berth/portoffice": "leaves do not know each other", "berth/pipes": "leaves do not know each other", "berth/lan": "arrows point down", "berth/master": "arrows point down"},
		"berth/pipes":      {"berth/portoffice": "leaves do not know each other", "berth/spawn": "leaves do not know each other", "berth/lan": "arrows point down", "berth/master": "arrows point down"},
		"berth/lan":        {"berth/master": "the lanmanager does not run children", "berth/spawn": "the lanmanager does not run children", "berth/portoffice": "ports are the master's"},
		"berth/master":     {"berth/lan": "masters speak to the lanmanager only over the wire"},
		"berth/child":      {"berth/master": "children link only the SDK", "berth/lan": "children link only the SDK", "berth/spawn": "children link only the SDK", "berth/portoffice": "children link only the SDK"},
		"berth/boltfile":   {"berth/needs": "boltfile knows bbolt only", "berth/pipes": "boltfile knows bbolt only", "berth/portoffice": "boltfile knows bbolt only", "berth/spawn": "boltfile knows bbolt only", "berth/lan": "boltfile knows bbolt only", "berth/master": "boltfile knows bbolt only"},
	}
	for pkg, forbidden := range bad {
		out, err := exec.Command("go", "list", "-deps", pkg).Output()
		if err != nil {
			t.Fatalf("go list -deps %s: %v", pkg, err)
		}
		for _, dep := range strings.Fields(string(out)) {
			if why, ok := forbidden[dep]; ok {
				t.Errorf("%s depends on %s: %s", pkg, dep, why)
			}
		}
	}
}
