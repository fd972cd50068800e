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
	// ErrDataLoss reports events that the backend's store lost (a
	// restart without persistence, a flush, a failover to a replica that
	// lacked writes): a client's Last-Event-ID that the store no longer
	// knows, or a hole in what it delivers.
	ErrDataLoss = fmt.Errorf("%w: the store lost events", ErrEventsLost)
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
	// ID is the event's id: its position in the backend's history of each
	// of its topics (one id for all of them), given by the backend.
	ID string
	// Topic is the topic whose log a delivered message goes to; a message
	// published to several topics is delivered once for each of them.
	Topic string
	// Topics are the topics it was published to.
	Topics []string
	// Body is the event's wire encoding without its "id:" line, ending
	// with the blank line. The broker encodes it once per publish. It is
	// read only.
	Body []byte
	// Time is when the backend stored it.
	Time time.Time
	// Lost, when not nil, makes the message a gap instead of an event: the
	// events of Topic after the one delivered before it were lost (an
	// error wrapping [ErrEventsLost], such as [ErrDataLoss]), and delivery
	// goes on after ID. Its streams get the [LostEventName] signal.
	Lost error
}

// Backend stores published events and carries them to every broker that
// shares it, so that brokers in several processes share topics, ids and
// replay (see package github.com/gin-sse/sse/redis). Without one, a broker
// keeps its events in memory only.
//
// Each topic has its own history in the backend, ordered by id. A broker
// watches the topics it has subscribers for and keeps what the backend
// delivers in its own logs, as it does without a backend; it asks the
// backend only for history older than they hold, one topic at a time. A
// stream on several topics gets ids that list its position in each (see
// [Broker.Handler]), so a backend's ids must not contain a comma.
type Backend interface {
	// Start begins delivery: from now on, each message stored for a
	// watched topic, by this process or another, is passed to deliver
	// once for that topic, after it is stored, in the topic's order. Calls
	// for one topic do not overlap; calls for different topics may. Start
	// does not wait for the store: a store that cannot be reached yet is
	// retried in the background.
	Start(deliver func(Message)) error
	// Watch begins delivery of topic. It returns its position: the id of
	// the last message of topic stored before delivery began ("" when it
	// has none), which Replay accepts as until. Deliveries may come before
	// Watch returns; the broker keeps those after the position. The broker
	// calls it once before it serves a topic, and Unwatch once it no
	// longer does, or when Watch failed.
	Watch(ctx context.Context, topic string) (position string, err error)
	// Unwatch ends delivery of topic. It must not block or call deliver.
	Unwatch(topic string)
	// Publish stores an event for topics and returns its message. id is
	// the event's own id, or "" for the backend to give one. body is the
	// wire encoding without an "id:" line.
	Publish(ctx context.Context, topics []string, id string, body []byte) (Message, error)
	// Replay returns at most limit stored messages of topic published
	// after the one with id after ("" for the start of its history) up to
	// and including the one with id until, in order. It returns an error
	// wrapping [ErrEventsLost] when the history after after cannot be
	// replayed whole: after is unknown, or events after it were dropped or
	// lost. With until "" or equal to after, it only checks after.
	Replay(ctx context.Context, topic, after, until string, limit int) ([]Message, error)
	// CompareIDs returns -1, 0 or +1 as a is before, equal to or after b
	// in the history of one topic. "" is before every id.
	CompareIDs(a, b string) (int, error)
	// Close stops delivery and releases the backend.
	Close() error
}
