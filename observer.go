package sse

import "time"

// Observer receives what a broker does, for metrics: the module
// github.com/gin-sse/sse/metrics turns it into Prometheus collectors. Set
// it with [WithObserver]; a broker without one does no work for it.
//
// The broker calls it from the goroutine doing the work, with no lock
// held: its methods must be quick and safe for concurrent use. Embed
// [NopObserver] to implement only some of them.
type Observer interface {
	// Subscribed reports a subscriber that joined: an HTTP stream about
	// to send its first event, or a Go subscription.
	Subscribed(info SubscriberInfo)
	// Unsubscribed reports a subscriber that left, after Subscribed.
	// reason is why: an error wrapping [ErrClientGone] when the client
	// left, [ErrBrokerClosed] on shutdown, the write's error
	// ([ErrWriteTimeout], [ErrWriteFailed]) when the client stopped
	// reading, the context's cause when a Subscribe's context ended, and
	// nil when the subscription was closed or the done channel of
	// [WithDone] closed.
	Unsubscribed(info SubscriberInfo, reason error)
	// Published reports a Publish or PublishTopics call that returned:
	// its topics, how long it took (with a backend, the round trip to the
	// store), and its error, or nil.
	Published(topics []string, took time.Duration, err error)
	// Delivered reports n events written to one stream (or handed to one
	// Go subscription).
	Delivered(n int)
	// Lost reports an [LostEventName] signal sent to a stream; reason wraps
	// [ErrEventsLost] (and [ErrHistoryExpired], [ErrUnknownEventID],
	// [ErrMalformedEventID], [ErrOverrun] or [ErrDataLoss]).
	Lost(reason error)
	// BackendError reports a call to the backend that failed: op is
	// "publish", "replay", "watch" or "presence".
	BackendError(op string, err error)
	// BackendDelivered reports a message the backend delivered to this
	// process, lag after it was published (by the store's clock, as the
	// [Message].Time gives it). A backend delivers an event once for each
	// of its topics this process serves, so an event published to two of
	// them is reported twice.
	BackendDelivered(lag time.Duration)
}

// NopObserver is an [Observer] that does nothing, to embed in one that
// implements only some methods.
type NopObserver struct{}

// Subscribed does nothing.
func (NopObserver) Subscribed(SubscriberInfo) {}

// Unsubscribed does nothing.
func (NopObserver) Unsubscribed(SubscriberInfo, error) {}

// Published does nothing.
func (NopObserver) Published([]string, time.Duration, error) {}

// Delivered does nothing.
func (NopObserver) Delivered(int) {}

// Lost does nothing.
func (NopObserver) Lost(error) {}

// BackendError does nothing.
func (NopObserver) BackendError(string, error) {}

// BackendDelivered does nothing.
func (NopObserver) BackendDelivered(time.Duration) {}

var _ Observer = NopObserver{}

// signalLost counts a loss signal sent to a stream.
func (b *Broker) signalLost(reason error) {
	b.lost.Add(1)
	if o := b.cfg.observer; o != nil {
		o.Lost(reason)
	}
}

// joined runs the subscribe hooks of s.
func (b *Broker) joined(s *stream) {
	b.presenceChanged(s, 1)
	if hook := b.cfg.onSubscribe; hook != nil {
		hook(s.info)
	}
	if o := b.cfg.observer; o != nil {
		o.Subscribed(s.info)
	}
}

// left runs the unsubscribe hooks of s.
func (b *Broker) left(s *stream, reason error) {
	b.presenceChanged(s, -1)
	if hook := b.cfg.onUnsubscribe; hook != nil {
		hook(s.info)
	}
	if o := b.cfg.observer; o != nil {
		o.Unsubscribed(s.info, reason)
	}
}

// backendFailed reports a failed call to the backend.
func (b *Broker) backendFailed(op string, err error) {
	if o := b.cfg.observer; o != nil {
		o.BackendError(op, err)
	}
}
