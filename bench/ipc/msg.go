package main

import "time"

// msgSize is the size of every message the load sends: the payload that
// reaches the receiver, hub or NATS framing not counted.
const msgSize = 64

// A message is msgSize bytes of ASCII, so that it passes as a WebSocket text
// frame and is the same bytes on both buses:
//
//	bytes  0-15  stamp: nanoseconds since the run's base time at which the
//	             sender handed the message to its client, 16 hex digits
//	bytes 16-19  the sending peer's index, 4 hex digits
//	bytes 20-31  the sender's sequence number, from 0, 12 hex digits
//	bytes 32-63  '.'
const (
	stampLen  = 16
	senderLen = 4
	seqLen    = 12
)

const hexDigits = "0123456789abcdef"

// clock gives nanoseconds since its base on the monotonic clock. Senders and
// receivers share one clock, so that a stamp read at receipt measures the hop.
type clock struct{ base time.Time }

func newClock() clock { return clock{base: time.Now()} }

func (c clock) now() int64 { return int64(time.Since(c.base)) }

// putMsg writes a message into b, which has msgSize bytes.
func putMsg(b []byte, stamp int64, sender int, seq int64) {
	putHex(b[:stampLen], uint64(stamp))
	putHex(b[stampLen:stampLen+senderLen], uint64(sender))
	putHex(b[stampLen+senderLen:stampLen+senderLen+seqLen], uint64(seq))
	for i := stampLen + senderLen + seqLen; i < msgSize; i++ {
		b[i] = '.'
	}
}

// parseMsg reads a message; ok is false for anything else (the hub's
// connect: and disconnect: notices, say).
func parseMsg(b []byte) (stamp int64, sender int, seq int64, ok bool) {
	if len(b) != msgSize {
		return 0, 0, 0, false
	}
	st, ok1 := getHex(b[:stampLen])
	se, ok2 := getHex(b[stampLen : stampLen+senderLen])
	sq, ok3 := getHex(b[stampLen+senderLen : stampLen+senderLen+seqLen])
	if !ok1 || !ok2 || !ok3 {
		return 0, 0, 0, false
	}
	return int64(st), int(se), int64(sq), true
}

// putHex writes v as len(b) hex digits, most significant first; higher
// digits are lost.
func putHex(b []byte, v uint64) {
	for i := len(b) - 1; i >= 0; i-- {
		b[i] = hexDigits[v&0xf]
		v >>= 4
	}
}

func getHex(b []byte) (uint64, bool) {
	var v uint64
	for _, c := range b {
		var d byte
		switch {
		case c >= '0' && c <= '9':
			d = c - '0'
		case c >= 'a' && c <= 'f':
			d = c - 'a' + 10
		default:
			return 0, false
		}
		v = v<<4 | uint64(d)
	}
	return v, true
}
