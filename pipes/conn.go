package pipes

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"time"
)

// Version is the envelope version this package speaks.
const Version = 1

// MaxFrame is the default and largest frame a connection accepts.
const MaxFrame = 1 << 20

// Msg is one envelope.
type Msg struct {
	V     int             `json:"v"`
	Type  string          `json:"type"`
	ID    uint64          `json:"id,omitempty"`
	Body  json.RawMessage `json:"body,omitempty"`
	Error *Error          `json:"error,omitempty"`
}

// Decode unmarshals the body into v, naming the message type on error.
func (m *Msg) Decode(v any) error {
	if len(m.Body) == 0 {
		return &Error{Code: CodeInvalid, Message: m.Type + ": missing body"}
	}
	if err := json.Unmarshal(m.Body, v); err != nil {
		return &Error{Code: CodeInvalid, Message: fmt.Sprintf("%s: body: %v", m.Type, err)}
	}
	if val, ok := v.(interface{ Validate() error }); ok {
		if err := val.Validate(); err != nil {
			return &Error{Code: CodeInvalid, Message: fmt.Sprintf("%s: %v", m.Type, err)}
		}
	}
	return nil
}

// New builds a message of type typ with body v.
func New(typ string, v any) (*Msg, error) {
	m := &Msg{V: Version, Type: typ}
	if v != nil {
		b, err := json.Marshal(v)
		if err != nil {
			return nil, fmt.Errorf("encode %s body: %w", typ, err)
		}
		m.Body = b
	}
	return m, nil
}

// Encode appends the frame for m to dst.
func Encode(dst []byte, m *Msg) ([]byte, error) {
	if err := validType(m.Type); err != nil {
		return dst, err
	}
	if m.V == 0 {
		c := *m // do not write to a message that may be shared
		c.V = Version
		m = &c
	}
	b, err := json.Marshal(m)
	if err != nil {
		return dst, fmt.Errorf("encode %s: %w", m.Type, err)
	}
	if len(b) > MaxFrame {
		return dst, fmt.Errorf("encode %s: %w (%d bytes)", m.Type, ErrFrameTooLarge, len(b))
	}
	dst = binary.BigEndian.AppendUint32(dst, uint32(len(b)))
	return append(dst, b...), nil
}

// Decode reads one frame from r, refusing frames longer than max (MaxFrame
// if max <= 0) before allocating.
func Decode(r io.Reader, max int) (*Msg, error) {
	if max <= 0 || max > MaxFrame {
		max = MaxFrame
	}
	var hdr [4]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return nil, err
	}
	n := binary.BigEndian.Uint32(hdr[:])
	if n > uint32(max) {
		return nil, fmt.Errorf("%w: %d bytes, limit %d", ErrFrameTooLarge, n, max)
	}
	if n < 2 {
		// Consume the frame so the stream stays in step; the caller decides
		// whether to go on.
		io.CopyN(io.Discard, r, int64(n))
		return nil, fmt.Errorf("%w: length %d", ErrBadFrame, n)
	}
	buf := make([]byte, n)
	if _, err := io.ReadFull(r, buf); err != nil {
		if errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		return nil, err
	}
	return Unmarshal(buf)
}

// Unmarshal decodes and checks an envelope.
func Unmarshal(b []byte) (*Msg, error) {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	var m Msg
	if err := dec.Decode(&m); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadFrame, err)
	}
	// Only JSON whitespace may follow (dec.More misses a trailing '}' or ']').
	if len(bytes.TrimLeft(b[dec.InputOffset():], " \t\r\n")) > 0 {
		return nil, fmt.Errorf("%w: trailing data after envelope", ErrBadFrame)
	}
	if m.V != Version {
		return nil, &VersionError{V: m.V, Type: m.Type, ID: m.ID}
	}
	if err := validType(m.Type); err != nil {
		return nil, err
	}
	if m.Error != nil {
		if err := m.Error.Code.Validate(); err != nil {
			return nil, err
		}
	}
	return &m, nil
}

func validType(t string) error {
	if t == "" || len(t) > 64 {
		return fmt.Errorf("%w: type must be 1-64 bytes, got %d", ErrBadFrame, len(t))
	}
	for i := 0; i < len(t); i++ {
		c := t[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '_' || c == '-' || c == '.') {
			return fmt.Errorf("%w: type %q has a character outside [a-z0-9_.-]", ErrBadFrame, t)
		}
	}
	return nil
}

// Conn is a framed, bidirectional message connection.
// Send and Close may be called concurrently; Recv must be called from one
// goroutine at a time.
type Conn struct {
	rwc io.ReadWriteCloser
	br  *bufio.Reader
	max int

	wmu          sync.Mutex // Protects following.
	buf          []byte
	writeTimeout time.Duration

	closeOnce sync.Once
	closeErr  error
	done      chan struct{} // closed by Close
}

// NewConn frames messages over rwc; max bounds incoming frames (<= 0 means
// MaxFrame).
func NewConn(rwc io.ReadWriteCloser, max int) *Conn {
	return &Conn{rwc: rwc, br: bufio.NewReader(rwc), max: max, done: make(chan struct{})}
}

// Done is closed once Close has been called.
func (c *Conn) Done() <-chan struct{} { return c.done }

// SetWriteTimeout bounds every later write: one that has not finished d
// after it began fails, and on a WebSocket link the connection can write
// no more (a peer that reads nothing for that long is taken as gone). 0,
// the default, sets no bound; so does a connection without write
// deadlines.
func (c *Conn) SetWriteTimeout(d time.Duration) {
	c.wmu.Lock()
	c.writeTimeout = max(d, 0)
	c.wmu.Unlock()
}

// write writes b, under c.wmu.
func (c *Conn) write(b []byte) error {
	var deadline time.Time
	if c.writeTimeout > 0 {
		if dl, ok := c.rwc.(interface{ SetWriteDeadline(time.Time) error }); ok {
			deadline = time.Now().Add(c.writeTimeout)
			if err := dl.SetWriteDeadline(deadline); err != nil {
				return err
			}
		}
	}
	_, err := c.rwc.Write(b)
	if err != nil && !deadline.IsZero() && !time.Now().Before(deadline) && !errors.Is(err, os.ErrDeadlineExceeded) {
		// A WebSocket's deadline cancels the write: say why.
		err = fmt.Errorf("%w: the peer read nothing for %v (%v)", os.ErrDeadlineExceeded, c.writeTimeout, err)
	}
	return err
}

// Send writes one message.
func (c *Conn) Send(m *Msg) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	var err error
	c.buf, err = Encode(c.buf[:0], m)
	if err != nil {
		return err
	}
	err = c.write(c.buf)
	if cap(c.buf) > 64<<10 {
		c.buf = nil
	}
	return err
}

// Batch gathers frames to be written to c together, with one write (on
// a WebSocket link, one message: the frames are a byte stream inside
// binary messages, so a peer reads them as if sent one by one). It
// belongs to one goroutine; Flush may be called concurrently with Send.
type Batch struct {
	c   *Conn
	buf []byte
}

// batchFlushAt is how many bytes a Batch holds before Add writes them.
const batchFlushAt = 64 << 10

// NewBatch returns an empty batch for c.
func (c *Conn) NewBatch() *Batch { return &Batch{c: c} }

// Retarget points an empty batch at c, keeping its buffer: one goroutine
// writing many connections in turn needs one batch, not one each.
func (b *Batch) Retarget(c *Conn) error {
	if len(b.buf) > 0 {
		return fmt.Errorf("pipes: batch retargeted with %d bytes not flushed", len(b.buf))
	}
	b.c = c
	return nil
}

// Add encodes m into the batch; it writes the batch first when it holds
// batchFlushAt bytes or more.
func (b *Batch) Add(m *Msg) error {
	if len(b.buf) >= batchFlushAt {
		if err := b.Flush(); err != nil {
			return err
		}
	}
	var err error
	b.buf, err = Encode(b.buf, m)
	return err
}

// AddPrepared adds a prepared frame to the batch, as Add does.
func (b *Batch) AddPrepared(p *Prepared) error {
	if len(b.buf) >= batchFlushAt {
		if err := b.Flush(); err != nil {
			return err
		}
	}
	b.buf = append(b.buf, p.frame...)
	return nil
}

// Reset drops the frames added since the last Flush.
func (b *Batch) Reset() { b.buf = b.buf[:0] }

// Len is the number of bytes waiting in the batch.
func (b *Batch) Len() int { return len(b.buf) }

// Flush writes the frames added since the last Flush, if any, in one
// write.
func (b *Batch) Flush() error {
	if len(b.buf) == 0 {
		return nil
	}
	b.c.wmu.Lock()
	err := b.c.write(b.buf)
	b.c.wmu.Unlock()
	b.buf = b.buf[:0]
	if cap(b.buf) > 4*batchFlushAt {
		b.buf = nil
	}
	return err
}

// Prepared is a frame encoded once, to be sent on many connections
// (the same set of services to every master). It is never changed.
type Prepared struct {
	Type  string
	frame []byte
}

// Prepare encodes m for SendPrepared.
func Prepare(m *Msg) (*Prepared, error) {
	b, err := Encode(nil, m)
	if err != nil {
		return nil, err
	}
	return &Prepared{Type: m.Type, frame: b}, nil
}

// Size is the frame's length in bytes, header included.
func (p *Prepared) Size() int { return len(p.frame) }

// SendPrepared writes a prepared frame.
func (c *Conn) SendPrepared(p *Prepared) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	return c.write(p.frame)
}

// SendBody builds and sends a message of type typ with body v and id.
func (c *Conn) SendBody(typ string, id uint64, v any) error {
	m, err := New(typ, v)
	if err != nil {
		return err
	}
	m.ID = id
	return c.Send(m)
}

// SendError answers request id with err.
func (c *Conn) SendError(id uint64, err error) error {
	return c.Send(&Msg{V: Version, Type: "error", ID: id, Error: ErrorFrom(err)})
}

// Recv reads the next message. A frame of another protocol version is
// answered with an "unsupported" error frame (unless it is an error frame
// itself) and returned as a *VersionError: the caller closes the
// connection, since it cannot know what else such a peer will send.
func (c *Conn) Recv() (*Msg, error) {
	m, err := Decode(c.br, c.max)
	var ve *VersionError
	if errors.As(err, &ve) && ve.Type != TypeError {
		c.SendError(ve.ID, err)
	}
	return m, err
}

// VersionError is a frame of a protocol version this peer does not speak.
type VersionError struct {
	V    int    // the frame's version
	Type string // its type, as far as it could be read
	ID   uint64
}

func (e *VersionError) Error() string {
	return fmt.Sprintf("%s: envelope version %d, want %d", ErrUnsupported, e.V, Version)
}

// Unwrap makes a VersionError match ErrUnsupported.
func (e *VersionError) Unwrap() error { return ErrUnsupported }

// Close closes the underlying connection; it is idempotent.
func (c *Conn) Close() error {
	c.closeOnce.Do(func() {
		c.closeErr = c.rwc.Close()
		close(c.done)
	})
	return c.closeErr
}
