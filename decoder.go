package sse

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math"
	"time"
)

// ErrEventTooLarge is returned by [Decoder.Decode] when one event (all its
// lines, comments included) exceeds the decoder's maximum size. The decoder
// cannot find the next event boundary reliably after it, so the error is
// final.
var ErrEventTooLarge = errors.New("sse: event exceeds the maximum size")

// Decoder reads events from an event stream as the WHATWG HTML standard's
// "interpret an event stream" algorithm does: a leading byte order mark is
// skipped, lines end at CR, LF or CRLF, comments and unknown fields are
// ignored, one space after the colon is removed, an id containing NUL is
// ignored, retry accepts ASCII digits only, a blank line dispatches the
// event unless its data is empty, and an event cut off by the end of the
// stream is discarded. There is no limit on line length apart from the
// maximum event size ([WithMaxEventSize]).
//
// Bytes are passed through as they are: invalid UTF-8 is not replaced with
// U+FFFD as a browser would.
type Decoder struct {
	r    io.Reader
	rerr error // read error, returned once buffered input is used up
	err  error // sticky decode error

	buf        []byte // read buffer; buf[start:end] is unread
	start, end int
	line       []byte // a line that spans reads
	skipLF     bool   // the previous line ended with CR: skip one LF
	lf         int    // index in buf of the next LF, or -1 for none before end
	lfKnown    bool   // lf is valid for the current buffer
	started    bool   // the byte order mark was checked

	max     int
	size    int // bytes of the current event so far
	pending bool

	data      []byte
	hasData   bool
	event     string
	idBuf     string // the last event ID buffer
	lastID    string // the stream's last event ID, set at each blank line
	retry     time.Duration
	sawRetry  bool
	retrySeen bool
}

// ReceivedEvent is an event as a client receives it: what a browser's
// EventSource hands to its listeners. [Decoder], package client, package
// ssetest and [Subscription] return it.
type ReceivedEvent struct {
	// ID is the stream's last event ID when the event was dispatched: ids
	// persist across events, as in a browser, so an event without an "id:"
	// line carries the one before it.
	ID string
	// Event is the event name from the stream, or "" when none was given
	// (a browser dispatches it as "message"; see [ReceivedEvent.Type]).
	Event string
	// Data is the payload: the event's "data:" lines joined with LF.
	Data string
	// Retry is the reconnection time of a valid "retry:" field among the
	// event's own lines, or zero.
	Retry time.Duration
}

// Type returns the event type a browser dispatches: the event name, or
// "message" for an event without one.
func (e ReceivedEvent) Type() string {
	if e.Event == "" {
		return "message"
	}
	return e.Event
}

// NewDecoder returns a Decoder reading from r.
func NewDecoder(r io.Reader, opts ...DecoderOption) *Decoder {
	cfg := decoderConfig{maxEventSize: DefaultMaxEventSize}
	for _, o := range opts {
		if o != nil {
			o.applyDecoder(&cfg)
		}
	}
	return &Decoder{r: r, buf: make([]byte, 4096), max: cfg.maxEventSize, idBuf: cfg.lastEventID, lastID: cfg.lastEventID}
}

// LastEventID returns the stream's last event ID, as a browser would send
// it in Last-Event-ID when reconnecting: an id takes effect at the blank
// line that ends its event, so an event cut off by the end of the stream
// does not move it.
func (d *Decoder) LastEventID() string { return d.lastID }

// Retry returns the reconnection time the stream last set with a valid
// "retry:" field, and whether it set one.
func (d *Decoder) Retry() (time.Duration, bool) { return d.retry, d.retrySeen }

// Decode returns the next dispatched event.
//
// At the end of the stream Decode returns [io.EOF], or
// [io.ErrUnexpectedEOF] when the stream ended inside an event, which is
// then discarded. Read errors are returned as they are.
func (d *Decoder) Decode() (ReceivedEvent, error) {
	if d.err != nil {
		return ReceivedEvent{}, d.err
	}
	for {
		line, err := d.readLine()
		if err != nil {
			if err == io.EOF && (d.pending || len(d.line) > 0) {
				err = io.ErrUnexpectedEOF
			}
			d.err = err
			return ReceivedEvent{}, err
		}
		if len(line) == 0 {
			if ev, ok := d.dispatch(); ok {
				return ev, nil
			}
			continue
		}
		d.field(line)
	}
}

// field processes one non-empty line.
func (d *Decoder) field(line []byte) {
	if line[0] == ':' {
		return
	}
	d.pending = true
	name, value := line, []byte(nil)
	if i := bytes.IndexByte(line, ':'); i >= 0 {
		name, value = line[:i], line[i+1:]
		if len(value) > 0 && value[0] == ' ' {
			value = value[1:]
		}
	}
	switch string(name) {
	case "event":
		d.event = string(value)
	case "data":
		d.data = append(d.data, value...)
		d.data = append(d.data, '\n')
		d.hasData = true
	case "id":
		if bytes.IndexByte(value, 0) < 0 {
			d.idBuf = string(value)
		}
	case "retry":
		if ms, ok := parseRetry(value); ok {
			d.retry, d.retrySeen, d.sawRetry = ms, true, true
		}
	}
}

// parseRetry parses ASCII digits as milliseconds. Values too large for a
// time.Duration are refused like any other invalid value.
func parseRetry(v []byte) (time.Duration, bool) {
	if len(v) == 0 {
		return 0, false
	}
	var n int64
	for _, c := range v {
		if c < '0' || c > '9' {
			return 0, false
		}
		if n > (math.MaxInt64/int64(time.Millisecond)-9)/10 {
			return 0, false
		}
		n = n*10 + int64(c-'0')
	}
	return time.Duration(n) * time.Millisecond, true
}

// dispatch ends the current event, as a blank line does.
func (d *Decoder) dispatch() (ReceivedEvent, bool) {
	d.lastID = d.idBuf
	var ev ReceivedEvent
	ok := d.hasData
	if ok {
		ev = ReceivedEvent{
			ID:    d.lastID,
			Event: d.event,
			Data:  string(d.data[:len(d.data)-1]),
		}
		if d.sawRetry {
			ev.Retry = d.retry
		}
	}
	d.data, d.hasData, d.event, d.sawRetry = d.data[:0], false, "", false
	d.size, d.pending = 0, false
	return ev, ok
}

// readLine returns the next line without its line ending. The slice is
// valid until the next call.
func (d *Decoder) readLine() ([]byte, error) {
	d.line = d.line[:0]
	for {
		if d.start == d.end {
			if err := d.fill(); err != nil {
				return nil, err
			}
			continue
		}
		chunk := d.buf[d.start:d.end]
		if d.skipLF {
			d.skipLF = false
			if chunk[0] == '\n' {
				d.start++
				continue
			}
		}
		i := d.indexBreak()
		n := i + 1 // the line and its line break; a blank line counts nothing
		if i < 0 {
			n = len(chunk)
		} else if i == 0 && len(d.line) == 0 {
			n = 0
		}
		if err := d.grow(n); err != nil {
			return nil, err
		}
		if i < 0 {
			d.line = append(d.line, chunk...)
			d.start = d.end
			continue
		}
		d.start += i + 1
		d.skipLF = chunk[i] == '\r'
		if len(d.line) == 0 {
			return chunk[:i], nil
		}
		d.line = append(d.line, chunk[:i]...)
		return d.line, nil
	}
}

// indexBreak returns the index in buf[start:end] of the first CR or LF, or
// -1. The position of the next LF is kept between calls, so that text with
// CR line ends is not searched for LF again at every line.
func (d *Decoder) indexBreak() int {
	if !d.lfKnown || (d.lf >= 0 && d.lf < d.start) {
		d.lf, d.lfKnown = bytes.IndexByte(d.buf[d.start:d.end], '\n'), true
		if d.lf >= 0 {
			d.lf += d.start
		}
	}
	limit := d.end
	if d.lf >= 0 {
		limit = d.lf
	}
	if cr := bytes.IndexByte(d.buf[d.start:limit], '\r'); cr >= 0 {
		return cr
	}
	if d.lf < 0 {
		return -1
	}
	return d.lf - d.start
}

// grow accounts n more bytes to the current event.
func (d *Decoder) grow(n int) error {
	d.size += n
	if d.max > 0 && d.size > d.max {
		d.err = fmt.Errorf("%w (%d bytes)", ErrEventTooLarge, d.max)
		return d.err
	}
	return nil
}

// fill reads more input into the empty buffer, skipping a leading byte
// order mark on the first read.
func (d *Decoder) fill() error {
	if d.rerr != nil {
		return d.rerr
	}
	d.start, d.end, d.lfKnown = 0, 0, false
	for empty := 0; d.end == 0 || (!d.started && d.end < 3); {
		n, err := d.r.Read(d.buf[d.end:])
		d.end += n
		if err != nil {
			d.rerr = err
			break
		}
		if n == 0 {
			if empty++; empty == 100 {
				d.rerr = io.ErrNoProgress
				break
			}
		}
	}
	if !d.started {
		d.started = true
		if bytes.HasPrefix(d.buf[:d.end], []byte("\xEF\xBB\xBF")) {
			d.start = 3
		}
	}
	if d.start == d.end && d.rerr != nil {
		return d.rerr
	}
	return nil
}
