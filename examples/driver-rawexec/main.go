// Command driver-rawexec is the smallest useful berth driver: it runs each
// task as a plain process, as the built-in exec driver does, but from a
// separate driver process reached through go-plugin. It is the example of
// docs/drivers.md and the driver the tests run.
//
// Install it as <pluginsdirectory>/berth-driver-rawexec and start needs
// with `need add ... --driver rawexec`.
package main

import (
	"os"

	"berth/driverplugin"
	"berth/spawn"
)

func main() {
	driverplugin.Logger().Info("rawexec driver serving", "pid", os.Getpid())
	driverplugin.Serve(driverplugin.NewProcessDriver(driverplugin.Fingerprint{
		Name: "rawexec", Version: "1.0.0", Available: true, Signals: true,
	}, spawn.Exec))
}
