package boltfile

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"runtime/debug"
	"time"

	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"
)

// MaxCheckSize is the size up to which a file's every page is checked:
// [Check] walks the page tree and [Open] runs [bolt.Tx.Check]. Larger files
// get the meta page checks only. Measured cost: see the package tests'
// BenchmarkOpen.
const MaxCheckSize = 64 << 20

// Check reports whether the bbolt file at path is whole: see the package
// doc. A missing or empty file is fine. A damaged one gives a
// [*DamagedError]. Check only reads the file; it takes no lock.
func Check(path string) error {
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("check %s: %w", path, err)
	}
	defer f.Close()
	_, err = check(f, path)
	return err
}

// check checks the open file f, named path. whole reports whether the
// file's every page was checked and both its meta pages are valid, which
// bbolt's Tx.Check needs to run without a panic.
func check(f *os.File, path string) (whole bool, err error) {
	fi, err := f.Stat()
	if err != nil {
		return false, fmt.Errorf("check %s: %w", path, err)
	}
	if !fi.Mode().IsRegular() {
		return false, &DamagedError{Path: path, Reason: "not a regular file: " + fi.Mode().String()}
	}
	if fi.Size() == 0 {
		return false, nil
	}
	whole, err = checkReader(f, fi.Size())
	if err != nil {
		return false, &DamagedError{Path: path, Reason: err.Error(), Err: err}
	}
	return whole, nil
}

// checkReader checks the bbolt file of size bytes read from r: its meta
// page and, for a file of at most MaxCheckSize, its pages. whole is as for
// check.
func checkReader(r io.ReaderAt, size int64) (whole bool, err error) {
	m, both, err := checkMeta(r, size)
	if err != nil || size > MaxCheckSize {
		return false, err
	}
	data := make([]byte, size)
	if _, err := r.ReadAt(data, 0); err != nil {
		return false, fmt.Errorf("read: %w", err)
	}
	return both, checkPages(data, m)
}

// Open checks the bbolt file at path and opens it with bolt.Open. The
// checks run under the same file lock bbolt takes (shared when
// opts.ReadOnly is set, exclusive otherwise), so a file that another
// process has open gives bolt's ErrTimeout after opts.Timeout, as bolt.Open
// does, and never a false "damaged". A damaged file gives a
// [*DamagedError] and is left closed and unchanged.
func Open(path string, mode os.FileMode, opts *bolt.Options) (*bolt.DB, error) {
	if opts == nil {
		opts = bolt.DefaultOptions
	}
	whole, err := checkLocked(path, opts)
	if err != nil {
		return nil, err
	}
	db, err := openGuarded(path, mode, opts)
	if err != nil {
		return nil, err
	}
	if !whole {
		return db, nil
	}
	if err := checkTx(db); err != nil {
		db.Close()
		return nil, &DamagedError{Path: path, Reason: err.Error(), Err: err}
	}
	return db, nil
}

// checkLocked runs check on path under the file lock, waiting for it as
// bolt.Open does.
func checkLocked(path string, opts *bolt.Options) (whole bool, err error) {
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("open %s: %w", path, err)
	}
	defer f.Close()
	deadline := time.Now().Add(opts.Timeout)
	for {
		ok, err := tryLock(f, !opts.ReadOnly)
		if err != nil {
			return false, fmt.Errorf("lock %s: %w", path, err)
		}
		if ok {
			break
		}
		if opts.Timeout > 0 && time.Now().After(deadline) {
			return false, fmt.Errorf("lock %s: %w", path, berrors.ErrTimeout)
		}
		time.Sleep(50 * time.Millisecond) // bbolt's own flock retry interval
	}
	defer unlock(f)
	return check(f, path)
}

// openGuarded calls bolt.Open with faults and panics turned into a
// DamagedError.
func openGuarded(path string, mode os.FileMode, opts *bolt.Options) (db *bolt.DB, err error) {
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer func() {
		if r := recover(); r != nil {
			db, err = nil, &DamagedError{Path: path, Reason: fmt.Sprintf("bbolt cannot read it: %v", r)}
		}
	}()
	return bolt.Open(path, mode, opts)
}

// checkTx runs bolt's Tx.Check on a file whose pages check has walked,
// and returns the first of its findings with their count.
func checkTx(db *bolt.DB) (err error) {
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("bbolt cannot read it: %v", r)
		}
	}()
	return db.View(func(tx *bolt.Tx) error {
		var first error
		n := 0
		for err := range tx.Check() { // read to the end: Check's goroutine waits for us
			if first == nil {
				first = err
			}
			n++
		}
		if n > 1 {
			return fmt.Errorf("%w (and %d more problems)", first, n-1)
		}
		return first
	})
}
