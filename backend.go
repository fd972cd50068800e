package sse

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// Errors that mean a client missed events that cannot be replayed. All of
// them wrap [ErrEventsLost]; the broker then tells the client, with the
// [LostEventName] event and the [HeaderEventsLost] header, instead of
// skipping events silently.
var (
	// ErrEventsLost is wrapped by every error that means a client missed
	// events that cannot be replayed.
	ErrEventsLost = errors.New("sse: events were lost")
	// ErrHistoryExpired reports a Last-Event-ID older than the history
	// kept: events after it were dropped.
	ErrHistoryExpired = fmt.Errorf("%w: Last-Event-ID is older than the history kept", ErrEventsLost)
	// ErrUnknownEventID reports a Last-Event-ID this broker or backend
	// never gave out, such as one from before a restart of an in-memory
	// broker.
	ErrUnknownEventID = fmt.Errorf("%w: Last-Event-ID is unknown", ErrEventsLost)
	// ErrMalformedEventID reports a Last-Event-ID that no backend could
	// have given out (control characters, or longer than 256 bytes).
	ErrMalformedEventID = fmt.Errorf("%w: Last-Event-ID is malformed", ErrEventsLost)
	// ErrOverrun reports a stream that fell behind the history kept while
	// it was connected: the events it had not read yet were dropped.
	ErrOverrun = fmt.Errorf("%w: the stream fell behind the history kept", ErrEventsLost)
	// ErrDuplicateID reports a published event whose own ID is already in
	// the history.
	ErrDuplicateID = errors.New("sse: event id already in the history")
	// ErrBackendStarted reports a second Start: a backend serves one
	// broker.
	ErrBackendStarted = errors.New("sse: backend already started by another broker")
	// ErrBackendClosed reports a call on a closed backend.
	ErrBackendClosed = errors.New("sse: backend closed")
)

// Message is one published event as a [Backend] stores and carries it.
type Message struct {
	// ID is the event's id: the one it was published with, or one the
	// backend gave it.
	ID string
	// Topics are the topics it was published to.
	Topics []string
	// Body is the event's wire encoding without its "id:" line, ending
	// with the blank line. The broker encodes it once per publish. It is
	// read only.
	Body []byte
	// Time is when the backend stored it.
	Time time.Time
}

// Backend stores published events and carries them to every broker that
// shares it, so that brokers in several processes share topics, ids and
// replay (see package github.com/gin-sse/sse/redis). Without one, a broker
// keeps its events in memory only.
//
// A broker keeps the recent events its backend delivers in its own logs,
// as it does without a backend, and asks the backend only for history
// older than they hold.
//
// Ids are ordered by the backend: every message delivered has a later id
// than the one before it.
type Backend interface {
	// Start begins delivery: every message published from now on, by
	// this process or another, is passed to deliver once (with all its
	// topics), after it is stored, in publish order, with no concurrent
	// calls. It returns the id of the last message stored before delivery
	// began, which Replay accepts as after or until ("" when the backend
	// has no such position). Start is called once, by [NewBroker].
	Start(deliver func(Message)) (position string, err error)
	// Publish stores an event for topics and returns its message. id is
	// the event's own id, or "" for the backend to give one. body is the
	// wire encoding without an "id:" line.
	Publish(ctx context.Context, topics []string, id string, body []byte) (Message, error)
	// Replay returns the stored messages on any of topics published after
	// the one with id after, up to and including the one with id until,
	// in publish order. It returns an error wrapping [ErrEventsLost] when
	// after is unknown or older than the history kept.
	Replay(ctx context.Context, topics []string, after, until string) ([]Message, error)
	// Close stops delivery and releases the backend.
	Close() error
}

// IDComparer is implemented by a [Backend] whose ids are ordered across
// processes (as Redis stream ids are) and whose delivery to a process may
// lag behind what another process already sent a client. CompareIDs
// returns -1, 0 or +1 as a is before, equal to or after b. The broker uses
// it when a client reconnects with an id its process has not delivered
// yet, to skip those events instead of sending them twice.
type IDComparer interface {
	CompareIDs(a, b string) (int, error)
}
