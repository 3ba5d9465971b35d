//go:build !unix

package boltfile

import "os"

// tryLock does nothing where bbolt does not use flock: the checks then run
// without the lock.
func tryLock(*os.File, bool) (bool, error) { return true, nil }

func unlock(*os.File) {}
