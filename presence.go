package sse

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"slices"
	"sync"
	"time"

	"github.com/gin-gonic/gin"
)

// Presence is who is subscribed to a topic: on every instance when the
// broker's backend shares presence ([PresenceBackend], as the Redis one
// does), else on this one.
type Presence struct {
	// Subscribers counts the streams on the topic, anonymous ones
	// included.
	Subscribers int `json:"subscribers"`
	// Users are the identified users (see [WithPresence]), each once
	// however many streams (tabs, devices, instances) they have, sorted
	// by ID.
	Users []PresentUser `json:"users"`
}

// PresentUser is one user present on a topic.
type PresentUser struct {
	ID string `json:"id"`
	// Info is what the identify function of [WithPresence] returned for
	// one of the user's streams, as JSON.
	Info    json.RawMessage `json:"info,omitempty"`
	Streams int             `json:"streams"`
}

// PresenceBackend is implemented by backends that share presence between
// the instances of an application.
type PresenceBackend interface {
	// SetPresence stores this instance's presence on topic, replacing
	// what it stored before, for ttl: an instance that stops refreshing
	// it (a crash) drops out after ttl. A presence without subscribers
	// removes this instance's entry.
	SetPresence(ctx context.Context, topic string, p Presence, ttl time.Duration) error
	// Presence returns the presence on topic over every instance whose
	// entry has not expired, merged.
	Presence(ctx context.Context, topic string) (Presence, error)
}

// DefaultPresenceTTL is how long an instance's presence lasts in a shared
// backend without a refresh; instances refresh it every third of it.
const DefaultPresenceTTL = 15 * time.Second

// presence is the broker's record of who is subscribed where, on this
// instance, and what it still has to tell the backend and the topics.
type presence struct {
	mu       sync.Mutex
	topics   map[string]*topicPresence
	dirty    map[string]bool     // to write and announce: true after a change here, false for a refresh
	last     map[string]string   // the presence announced last on each topic, as JSON
	written  map[string]struct{} // topics with an entry of this instance in the backend
	flushing bool
	flushed  chan struct{} // closed when the flusher under way ends
	timer    *time.Timer   // refreshes the backend's entries
	armed    bool
	stopped  bool
}

type topicPresence struct {
	streams int
	users   map[string]*PresentUser
}

// WithPresence makes the broker keep who is subscribed to each topic, for
// [Broker.Presence]: the number of streams of [Broker.Handler] and, when
// identify is not nil, the users it returns for each request (a user id,
// "" for an anonymous stream, and info to show, say a name; it must encode
// as JSON). A user with several streams (tabs, devices) counts once. Go
// subscriptions ([Broker.Subscribe]) are not clients: they do not count.
//
// With a backend that shares presence (the Redis one), each instance
// stores its own entries there for a time to live ([DefaultPresenceTTL],
// or that of [WithPresenceTTL]) and refreshes them every third of it: a
// crashed instance's users vanish within that time, and a join or leave
// anywhere shows everywhere within a round trip.
func WithPresence(identify func(c *gin.Context) (user string, info any)) BrokerOption {
	return brokerOpt(func(c *brokerConfig) {
		c.presence = true
		c.identify = identify
	})
}

// WithPresenceEvents makes the broker publish the presence of a topic, as
// an event named name whose data is the [Presence] as JSON, on the topic
// itself whenever it changes: a join, a leave, or (with a shared backend)
// an instance's entries expiring. topics chooses the topics that get them
// (nil: every topic); leave out those whose streams have a format of
// their own, such as the answers of package llm. It implies [WithPresence]
// (without identify, unless given it too). With a shared backend, a
// presence is announced once, by the instance where it changed (or, for
// an expiry, the first to see it); the others see the event on the topic
// and do not repeat it.
func WithPresenceEvents(name string, topics func(topic string) bool) BrokerOption {
	return brokerOpt(func(c *brokerConfig) {
		c.presence = true
		c.presenceEvent = name
		c.presenceTopics = topics
	})
}

// WithPresenceTTL sets how long this instance's presence entries last in
// a shared backend without a refresh (default [DefaultPresenceTTL]); they
// are refreshed every third of it. A shorter one drops a crashed
// instance's users sooner, for more writes: one per topic with streams
// here, each refresh. Zero or less keeps the default.
func WithPresenceTTL(ttl time.Duration) BrokerOption {
	return brokerOpt(func(c *brokerConfig) { c.presenceTTL = ttl })
}

// Presence returns the presence on topic (see [WithPresence]; without it,
// the subscribers of this instance only, as [Broker.Subscribers] counts
// them, Go subscriptions included, and no users). With a backend that
// shares presence, ctx bounds the call to it, and its error is returned.
func (b *Broker) Presence(ctx context.Context, topic string) (Presence, error) {
	if pb, ok := b.backend.(PresenceBackend); ok && b.cfg.presence {
		p, err := pb.Presence(ctx, topic)
		if err != nil {
			b.backendFailed("presence", err)
		}
		return p, err
	}
	if !b.cfg.presence {
		return Presence{Subscribers: b.Subscribers(topic), Users: []PresentUser{}}, nil
	}
	return b.pres.local(topic), nil
}

// local returns this instance's presence on topic.
func (p *presence) local(topic string) Presence {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := Presence{Users: []PresentUser{}}
	tp := p.topics[topic]
	if tp == nil {
		return out
	}
	out.Subscribers = tp.streams
	for _, u := range tp.users {
		out.Users = append(out.Users, *u)
	}
	slices.SortFunc(out.Users, func(a, b PresentUser) int { return cmp.Compare(a.ID, b.ID) })
	return out
}

// presenceChanged records s joining (+1) or leaving (-1) its topics.
func (b *Broker) presenceChanged(s *stream, delta int) {
	if !b.cfg.presence || s.w == nil { // a Go subscription
		return
	}
	var info json.RawMessage
	if s.info.User != "" && s.info.UserInfo != nil && delta > 0 {
		info, _ = json.Marshal(s.info.UserInfo)
	}
	p := &b.pres
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, t := range s.info.Topics {
		tp := p.topics[t]
		if tp == nil {
			tp = &topicPresence{users: map[string]*PresentUser{}}
			p.topics[t] = tp
		}
		tp.streams += delta
		if u := s.info.User; u != "" {
			pu := tp.users[u]
			if pu == nil {
				pu = &PresentUser{ID: u, Info: info}
				tp.users[u] = pu
			}
			if pu.Streams += delta; pu.Streams <= 0 {
				delete(tp.users, u)
			}
		}
		if tp.streams <= 0 {
			delete(p.topics, t)
		}
		p.dirty[t] = true
	}
	b.flushLocked()
}

// announces reports whether topic gets presence events.
func (b *Broker) announces(topic string) bool {
	return b.cfg.presenceEvent != "" && (b.cfg.presenceTopics == nil || b.cfg.presenceTopics(topic))
}

// flushLocked starts the goroutine that writes and announces the dirty
// topics, unless it runs. p.mu is held.
func (b *Broker) flushLocked() {
	p := &b.pres
	if p.flushing || p.stopped || len(p.dirty) == 0 {
		return
	}
	_, shared := b.backend.(PresenceBackend)
	if !shared && b.cfg.presenceEvent == "" {
		clear(p.dirty) // nothing to write nor to announce
		return
	}
	p.flushing = true
	p.flushed = make(chan struct{})
	go b.flushPresence(p.flushed)
}

// flushPresence writes this instance's presence on each dirty topic to the
// backend and announces the topics' new presence, until none is dirty; it
// coalesces a burst of joins into few writes. It is the only writer, so
// writes of one topic never cross. It closes done when it ends.
func (b *Broker) flushPresence(done chan struct{}) {
	defer close(done)
	p := &b.pres
	for {
		p.mu.Lock()
		if len(p.dirty) == 0 || p.stopped {
			p.flushing = false
			p.mu.Unlock()
			b.armPresenceRefresh()
			return
		}
		topics := make(map[string]bool, len(p.dirty))
		for t, force := range p.dirty {
			topics[t] = force
		}
		clear(p.dirty)
		p.mu.Unlock()
		b.syncPresence(topics)
	}
}

// presenceWorkers bounds the topics whose presence is written and
// announced at once. One after the other, each topic costs the round
// trips of its write and its read: 10,000 topics took longer than a
// refresh period with a store a millisecond away.
const presenceWorkers = 16

// syncPresence writes this instance's presence on topics to a shared
// backend and, with WithPresenceEvents, publishes each topic's presence if
// it changed since it was last announced on the topic, or always when its
// value in topics is true (a change here: the joining stream gets it
// too). Topics are synced by up to presenceWorkers goroutines, each topic
// by one of them; it returns once all are.
func (b *Broker) syncPresence(topics map[string]bool) {
	work := make(chan string)
	var wg sync.WaitGroup
	for range min(len(topics), presenceWorkers) {
		wg.Go(func() {
			for t := range work {
				b.syncTopicPresence(t, topics[t])
			}
		})
	}
	for t := range topics {
		work <- t
	}
	close(work)
	wg.Wait()
}

// syncTopicPresence is syncPresence for topic t.
func (b *Broker) syncTopicPresence(t string, force bool) {
	ttl := b.cfg.presenceTTLOrDefault()
	ctx, cancel := context.WithTimeout(context.Background(), ttl/3)
	defer cancel()
	if pb, shared := b.backend.(PresenceBackend); shared {
		local := b.pres.local(t)
		if err := pb.SetPresence(ctx, t, local, ttl); err != nil {
			b.backendFailed("presence", err)
		} else {
			b.pres.mu.Lock()
			if local.Subscribers > 0 {
				b.pres.written[t] = struct{}{}
			} else {
				delete(b.pres.written, t)
			}
			b.pres.mu.Unlock()
		}
	}
	if !b.announces(t) {
		return
	}
	cur, err := b.Presence(ctx, t)
	if err != nil {
		return
	}
	data, _ := json.Marshal(cur)
	if b.pres.announced(t, string(data), cur.Subscribers == 0) || force {
		// Not through Publish: the observer hears of the application's
		// publishes, not of these.
		_, _ = b.publish(ctx, t, nil, Event{Event: b.cfg.presenceEvent, Data: json.RawMessage(data)})
	}
}

// announced records data as the presence last announced on topic, and
// reports whether it differs from the one before; empty forgets it.
func (p *presence) announced(topic, data string, empty bool) (changed bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	changed = p.last[topic] != data
	if empty {
		delete(p.last, topic)
	} else {
		p.last[topic] = data
	}
	return changed
}

// observeAnnouncement records the presence event another instance
// announced on topic (body is a message the backend delivered), so that
// this one does not announce the same presence again at its next refresh.
func (b *Broker) observeAnnouncement(topic string, body []byte) {
	name := b.cfg.presenceEvent
	if name == "" || !b.announces(topic) {
		return
	}
	rest, ok := bytes.CutPrefix(body, []byte("event: "+name+"\ndata: "))
	if !ok {
		return
	}
	data, ok := bytes.CutSuffix(rest, []byte("\n\n"))
	if !ok || bytes.IndexByte(data, '\n') >= 0 {
		return
	}
	var p Presence
	if json.Unmarshal(data, &p) != nil {
		return
	}
	b.pres.announced(topic, string(data), p.Subscribers == 0)
}

// armPresenceRefresh has the backend's entries of this instance refreshed
// every third of their time to live, while it has any: at a steady pace,
// which writes here do not put off.
func (b *Broker) armPresenceRefresh() {
	if _, shared := b.backend.(PresenceBackend); !shared {
		return
	}
	p := &b.pres
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.armed || p.stopped || (len(p.topics) == 0 && len(p.last) == 0 && len(p.written) == 0) {
		return
	}
	p.armed = true
	if p.timer == nil {
		p.timer = time.AfterFunc(b.cfg.presenceTTLOrDefault()/3, b.refreshPresence)
	} else {
		p.timer.Reset(b.cfg.presenceTTLOrDefault() / 3)
	}
}

// refreshPresence has the flusher write again this instance's entries,
// and announce the topics whose presence changed elsewhere (an instance's
// entries expired).
func (b *Broker) refreshPresence() {
	p := &b.pres
	p.mu.Lock()
	defer p.mu.Unlock()
	p.armed = false
	mark := func(t string) {
		if !p.dirty[t] {
			p.dirty[t] = false
		}
	}
	for t := range p.written {
		mark(t)
	}
	for t := range p.last {
		mark(t)
	}
	for t := range p.topics {
		mark(t)
	}
	b.flushLocked() // a flusher under way takes them and arms the next refresh
}

// haltLocked ends the refreshes of the backend's entries. p.mu is held.
func (p *presence) haltLocked() {
	p.stopped = true
	if p.timer != nil {
		p.timer.Stop()
	}
}

// stopPresence ends the refreshes, at shutdown, once every stream left,
// and takes this instance's entries out of the backend (they would expire
// anyway).
func (b *Broker) stopPresence(ctx context.Context) {
	p := &b.pres
	p.mu.Lock()
	p.haltLocked()
	if p.flushing { // let the write under way end first
		done := p.flushed
		p.mu.Unlock()
		select {
		case <-done:
		case <-ctx.Done():
		}
		p.mu.Lock()
	}
	written := make([]string, 0, len(p.written))
	for t := range p.written {
		written = append(written, t)
	}
	p.mu.Unlock()
	if pb, ok := b.backend.(PresenceBackend); ok {
		for _, t := range written {
			_ = pb.SetPresence(ctx, t, Presence{}, b.cfg.presenceTTLOrDefault())
		}
	}
}
