package mesh_test

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	"berth/internal/leakcheck"
)

// TestMain fails the tests if they leave goroutines running. Started with
// BERTH_MESH_TEST_ECHO=1, the test binary is instead an echo server in a
// process of its own (the tests that need a backend outside their own
// scheduler): it prints its address and echoes until its stdin closes.
// With BERTH_MESH_TEST_LOAD=ADDR it is a load generator of its own: 4
// connections to ADDR, each sending a line and reading its echo back to
// back, until its stdin closes or for a minute at most.
func TestMain(m *testing.M) {
	if os.Getenv("BERTH_MESH_TEST_ECHO") == "1" {
		echoMain()
		return
	}
	if addr := os.Getenv("BERTH_MESH_TEST_LOAD"); addr != "" {
		loadMain(addr)
		return
	}
	os.Exit(leakcheck.Run(m))
}

func loadMain(addr string) {
	stop := time.Now().Add(time.Minute)
	for range 4 {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		c.SetDeadline(stop)
		go func() {
			r := bufio.NewReader(c)
			line := strings.Repeat("x", 63) + "\n"
			for time.Now().Before(stop) {
				if _, err := io.WriteString(c, line); err != nil {
					return
				}
				if _, err := r.ReadString('\n'); err != nil {
					return
				}
			}
		}()
	}
	fmt.Println("loading")
	done := make(chan struct{})
	go func() { bufio.NewReader(os.Stdin).ReadString('\n'); close(done) }()
	select {
	case <-done:
	case <-time.After(time.Until(stop)):
	}
}

func echoMain() {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	fmt.Println(ln.Addr())
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() { io.Copy(c, c); c.Close() }()
		}
	}()
	bufio.NewReader(os.Stdin).ReadString('\n') // until the test closes it, or dies
}
