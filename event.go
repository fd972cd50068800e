package sse

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"
	"unsafe"
)

// ErrInvalidEvent reports an [Event] that cannot be encoded: an id with
// CR, LF or NUL, a name with CR or LF (a browser would split either into
// several fields, so they are refused rather than rewritten), both ID and
// ResetID, a negative Retry, or Data that encoding/json cannot encode
// (whose error is wrapped too). The message says which. Nothing is written
// when it is returned.
var ErrInvalidEvent = errors.New("sse: invalid event")

// Event is one server-sent event.
//
// The zero value of each field means "leave that field out": an event with
// no ID writes no "id:" line, so the client's last event ID stays as it was.
type Event struct {
	// ID becomes the client's last event ID, sent back as Last-Event-ID
	// when it reconnects. It may not contain CR, LF or NUL.
	ID string
	// ResetID writes an empty "id:" line, which clears the client's last
	// event ID. It may not be combined with a non-empty ID.
	ResetID bool
	// Event is the event name; a browser dispatches it to listeners added
	// with addEventListener(name). Empty means the default "message"
	// event. It may not contain CR or LF.
	Event string
	// Data is the payload. A string, []byte or json.RawMessage is sent as
	// it is; any other value is encoded with encoding/json. Data that
	// contains line breaks (LF, CR or CRLF) is sent as several "data:"
	// lines, which a browser joins with LF. A nil Data writes no "data:"
	// line at all, and browsers do not dispatch an event without data: use
	// "" for an event with an empty payload.
	Data any
	// Retry asks the client to wait this long before reconnecting. It is
	// sent in whole milliseconds (truncated, but at least 1); zero writes
	// no "retry:" line.
	Retry time.Duration
	// Comment is written first as comment lines, which clients ignore.
	// Line breaks in it start new comment lines.
	Comment string
}

// Validate reports whether e can be encoded, without encoding its Data.
func (e Event) Validate() error {
	if containsAny(e.ID, true) {
		return fmt.Errorf("%w: id %q contains CR, LF or NUL", ErrInvalidEvent, e.ID)
	}
	if containsAny(e.Event, false) {
		return fmt.Errorf("%w: name %q contains CR or LF", ErrInvalidEvent, e.Event)
	}
	if e.ResetID && e.ID != "" {
		return fmt.Errorf("%w: both ID and ResetID are set", ErrInvalidEvent)
	}
	if e.Retry < 0 {
		return fmt.Errorf("%w: negative retry %v", ErrInvalidEvent, e.Retry)
	}
	return nil
}

// containsAny reports whether s holds CR or LF, or NUL when nul is set.
// Ids and names are short, so a plain loop beats several IndexByte calls.
func containsAny(s string, nul bool) bool {
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case '\r', '\n':
			return true
		case 0:
			if nul {
				return true
			}
		}
	}
	return false
}

// AppendTo appends the wire encoding of e, ending with the blank line that
// dispatches it, to dst and returns the extended slice. On error it returns
// dst unchanged and an error wrapping [ErrInvalidEvent].
//
// String and []byte data are encoded without allocating.
func (e Event) AppendTo(dst []byte) ([]byte, error) {
	if err := e.Validate(); err != nil {
		return dst, err
	}
	orig := len(dst)
	if e.Comment != "" {
		dst = appendLines(dst, ": ", e.Comment)
	}
	if e.ID != "" || e.ResetID {
		dst = append(dst, "id: "...)
		dst = append(dst, e.ID...)
		dst = append(dst, '\n')
	}
	if e.Event != "" {
		dst = append(dst, "event: "...)
		dst = append(dst, e.Event...)
		dst = append(dst, '\n')
	}
	if e.Retry > 0 {
		dst = append(dst, "retry: "...)
		dst = strconv.AppendInt(dst, max(e.Retry.Milliseconds(), 1), 10)
		dst = append(dst, '\n')
	}
	switch d := e.Data.(type) {
	case nil:
	case string:
		dst = appendLines(dst, "data: ", d)
	case []byte:
		dst = appendLines(dst, "data: ", bytesView(d))
	case json.RawMessage:
		dst = appendLines(dst, "data: ", bytesView(d))
	default:
		b, err := json.Marshal(d)
		if err != nil {
			return dst[:orig], fmt.Errorf("%w: data cannot be encoded as JSON: %w", ErrInvalidEvent, err)
		}
		dst = appendLines(dst, "data: ", bytesView(b))
	}
	return append(dst, '\n'), nil
}

// sizeHint returns the length of e's encoding or a little more, to size
// its buffer: an upper bound for string and []byte data, a guess for data
// encoded as JSON.
func (e *Event) sizeHint() int {
	n := len("\n") // the blank line that ends the event
	if e.Comment != "" {
		n += linesLen(e.Comment, len(": "))
	}
	if e.ID != "" || e.ResetID {
		n += len("id: \n") + len(e.ID)
	}
	if e.Event != "" {
		n += len("event: \n") + len(e.Event)
	}
	if e.Retry > 0 {
		n += len("retry: \n") + 20
	}
	switch d := e.Data.(type) {
	case nil:
	case string:
		n += linesLen(d, len("data: "))
	case []byte:
		n += linesLen(bytesView(d), len("data: "))
	case json.RawMessage:
		n += linesLen(bytesView(d), len("data: "))
	default:
		n += len("data: \n") + 64
	}
	return n
}

// linesLen is at least the length of appendLines(dst, prefix, s) minus
// len(dst), for a prefix of p bytes: every LF, CR or CRLF may start a line.
func linesLen(s string, p int) int {
	if len(s) <= shortText && !hasBreak(s) {
		return len(s) + p + len("\n")
	}
	lines := 1 + strings.Count(s, "\n")
	if cr := strings.Count(s, "\r"); cr > 0 {
		lines += cr - strings.Count(s, "\r\n")
	}
	return len(s) + lines*(p+len("\n"))
}

// WriteTo writes the encoding of e to w. It implements [io.WriterTo]. An
// invalid event writes nothing.
func (e Event) WriteTo(w io.Writer) (int64, error) {
	b, err := e.AppendTo(nil)
	if err != nil {
		return 0, err
	}
	n, err := w.Write(b)
	return int64(n), err
}

// String returns the wire encoding of e, or a description of why it cannot
// be encoded.
func (e Event) String() string {
	b, err := e.AppendTo(nil)
	if err != nil {
		return "<invalid event: " + err.Error() + ">"
	}
	return string(b)
}

// AppendComment appends text as comment lines (": text") to dst. Line
// breaks in text start new comment lines, so a comment can never become a
// field.
func AppendComment(dst []byte, text string) []byte {
	return appendLines(dst, ": ", text)
}

// appendLines appends s to dst as one "prefix line\n" per line of s, where
// lines end at LF, CR or CRLF. An empty s is one empty line. Each byte is
// scanned at most once for CR and once for LF, so CR-only text stays
// linear.
func appendLines(dst []byte, prefix, s string) []byte {
	if len(s) <= shortText && !hasBreak(s) {
		dst = append(dst, prefix...)
		dst = append(dst, s...)
		return append(dst, '\n')
	}
	start, lf := 0, strings.IndexByte(s, '\n') // lf: next LF at or after start, or -1
	for {
		if lf >= 0 && lf < start {
			if lf = strings.IndexByte(s[start:], '\n'); lf >= 0 {
				lf += start
			}
		}
		end := len(s)
		if lf >= 0 {
			end = lf
		}
		i := lf
		if cr := strings.IndexByte(s[start:end], '\r'); cr >= 0 {
			i = start + cr
		}
		dst = append(dst, prefix...)
		if i < 0 {
			dst = append(dst, s[start:]...)
			return append(dst, '\n')
		}
		dst = append(dst, s[start:i]...)
		dst = append(dst, '\n')
		if s[i] == '\r' && i+1 < len(s) && s[i+1] == '\n' {
			i++
		}
		start = i + 1
	}
}

// shortText is the longest text that hasBreak scans: for short texts one
// pass of it costs less than the calls of strings.Count and IndexByte
// (one each for CR and LF) that longer texts take.
const shortText = 64

// hasBreak reports whether s holds a CR or LF, looking at 8 bytes at a
// time: a byte of a word w equal to c makes (w^c…c) hold a zero byte, which
// (x-0x01…01) &^ x & 0x80…80 detects.
func hasBreak(s string) bool {
	const ones, highs = 0x0101010101010101, 0x8080808080808080
	i := 0
	for ; i+8 <= len(s); i += 8 {
		t := s[i : i+8]
		w := uint64(t[0]) | uint64(t[1])<<8 | uint64(t[2])<<16 | uint64(t[3])<<24 |
			uint64(t[4])<<32 | uint64(t[5])<<40 | uint64(t[6])<<48 | uint64(t[7])<<56
		lf, cr := w^(ones*'\n'), w^(ones*'\r')
		if ((lf-ones)&^lf|(cr-ones)&^cr)&highs != 0 {
			return true
		}
	}
	for ; i < len(s); i++ {
		if s[i] == '\n' || s[i] == '\r' {
			return true
		}
	}
	return false
}

// bytesView returns the bytes of b as a string without copying. The string
// is only read while b is not modified.
func bytesView(b []byte) string {
	return unsafe.String(unsafe.SliceData(b), len(b))
}
