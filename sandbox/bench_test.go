package sandbox

import (
	"testing"

	"berth/spawn"
)

// BenchmarkStart starts /bin/true and waits for it to be gone, with the
// exec driver and in a sandbox: the sandbox's start-up cost.
func BenchmarkStart(b *testing.B) {
	requireSandbox(b)
	for _, bb := range []struct {
		name string
		d    spawn.Driver
	}{{"exec", spawn.Exec}, {"bwrap", Driver{}}} {
		b.Run(bb.name, func(b *testing.B) {
			spec := spawn.Spec{Command: []string{"/bin/true"}, Dir: "/"}
			for b.Loop() {
				c, err := spawn.Start(b.Context(), bb.d, spec)
				if err != nil {
					b.Fatal(err)
				}
				<-c.Done()
				if ex := c.Exit(); ex.Code != 0 {
					b.Fatal(ex)
				}
			}
		})
	}
}
