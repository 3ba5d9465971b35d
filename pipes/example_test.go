package pipes_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"os"
	"path/filepath"

	"berth/needs"
	"berth/pipes"
)

// A master listens on a control socket; a child dials it, introduces itself
// and reports a bad message, which the master answers with a wire error.
func Example() {
	dir, err := os.MkdirTemp("", "pp")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)

	l, err := pipes.Listen(filepath.Join(dir, "child.sock"))
	if err != nil {
		log.Fatal(err)
	}
	defer l.Close()

	// The master's side: read frames, validate bodies, answer bad ones.
	done := make(chan struct{})
	go func() {
		defer close(done)
		c, err := l.AcceptConn()
		if err != nil {
			log.Fatal(err)
		}
		defer c.Close()
		for {
			m, err := c.Recv()
			if err != nil {
				return // the child hung up
			}
			var h pipes.ChildHello
			if err := m.Decode(&h); err != nil {
				c.SendError(m.ID, err)
				continue
			}
			fmt.Printf("master received %s from pid %d\n", m.Type, h.PID)
		}
	}()

	// The child's side.
	c, err := pipes.Dial(context.Background(), l.Path())
	if err != nil {
		log.Fatal(err)
	}
	if err := c.SendBody(pipes.TypeChildHello, 0, pipes.ChildHello{PID: 4242}); err != nil {
		log.Fatal(err)
	}
	if err := c.SendBody(pipes.TypeChildHello, 7, pipes.ChildHello{PID: 0}); err != nil {
		log.Fatal(err)
	}
	answer, err := c.Recv()
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("child got %s for request %d: %q (%s), invalid: %t\n",
		answer.Type, answer.ID, answer.Error.Message, answer.Error.Code, errors.Is(answer.Error, needs.ErrInvalid))
	c.Close()
	<-done

	// Output:
	// master received child.hello from pid 4242
	// child got error for request 7: "child.hello: pid: must be > 0" (invalid), invalid: true
}
