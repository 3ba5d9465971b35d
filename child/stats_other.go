//go:build !linux

package child

import "errors"

// On other systems there is no /proc to read: heartbeats carry the Go heap
// figures only.

const clockTicks = 100

func cpuTicks() (uint64, error) { return 0, errors.ErrUnsupported }

func rssBytes() (uint64, error) { return 0, errors.ErrUnsupported }
