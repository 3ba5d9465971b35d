package portoffice_test

import (
	"fmt"
	"log"
	"os"
	"path/filepath"

	"berth/needs"
	"berth/portoffice"
)

func Example() {
	dir, err := os.MkdirTemp("", "portoffice")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)

	office, err := portoffice.Open(filepath.Join(dir, "ports.db"), portoffice.Options{
		Ranges: map[needs.Protocol]portoffice.Range{
			needs.HTTP: {Start: 16000, Size: 1000},
			needs.TCP:  {Start: 17000, Size: 100},
		},
		Host: "127.0.0.1",
		// Say every port binds, so this example's ports are predictable.
		// Leave Probe nil to check for real.
		Probe: func(host string, port int) error { return nil },
	})
	if err != nil {
		log.Fatal(err)
	}
	defer office.Close()

	a, err := office.Lease("alloc-a", []needs.Protocol{needs.HTTP, needs.TCP})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("alloc-a:", a[needs.HTTP], a[needs.TCP])

	b, err := office.Lease("alloc-b", []needs.Protocol{needs.HTTP})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("alloc-b:", b[needs.HTTP])

	released, err := office.Release("alloc-a")
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("released:", released)
	fmt.Println("free http ports:", office.Free(needs.HTTP))

	c, err := office.Lease("alloc-c", []needs.Protocol{needs.HTTP})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("alloc-c:", c[needs.HTTP])

	// Output:
	// alloc-a: 16000 17000
	// alloc-b: 16001
	// released: [16000 17000]
	// free http ports: 999
	// alloc-c: 16000
}
