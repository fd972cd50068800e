// Package sseredis is a Redis [sse.Backend] for the broker of
// github.com/gin-sse/sse: brokers in several processes that share one Redis
// share topics, event ids and Last-Event-ID replay.
//
// The import path is github.com/gin-sse/sse/redis; the package is named
// sseredis so that it does not clash with go-redis's package redis:
//
//	rdb := redis.NewClient(&redis.Options{Addr: "localhost:6379"})
//	backend := sseredis.New(rdb, sseredis.WithPrefix("myapp:sse:"))
//	broker, err := sse.NewBroker(sse.WithBackend(backend))
//
// Each topic has its own stream key, prefix + "{" + topic + "}", so that a
// topic's keys share a Redis Cluster hash slot. An event's id is its
// stream id "<milliseconds>-<sequence>"; an event published to several
// topics has the same id in each. Publish is one Lua script that appends
// the event to its topics' streams and announces it on each stream's shard
// channel (SPUBLISH). An instance subscribes (SSUBSCRIBE) to the channels
// of the topics it has subscribers for only, and reads a stream only to
// catch up: after a reconnect, or when an entry's link to the one before
// it shows it missed some. Replay reads the missed entries of one topic at
// a time, a page at a time.
package sseredis

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/gin-sse/sse"
	"github.com/redis/go-redis/v9"
)

// Errors of the Redis backend. Test for them with [errors.Is].
var (
	// ErrUnavailable is wrapped (together with the Redis error) by the
	// errors of Publish, Replay and Watch when Redis cannot be reached or
	// does not answer within the timeout ([WithTimeout]).
	ErrUnavailable = errors.New("sseredis: redis unavailable")
	// ErrOwnID reports an event published with its own ID: the Redis
	// backend gives every event the stream id of its entries.
	ErrOwnID = errors.New("sseredis: events cannot have their own ID with the Redis backend")
	// ErrInvalidTopic reports a topic with a control character. The
	// broker never passes one.
	ErrInvalidTopic = errors.New("sseredis: topic contains a control character")
	// ErrInvalidPrefix reports a key prefix with a brace, which would
	// change the hash slot of every key.
	ErrInvalidPrefix = errors.New("sseredis: key prefix contains a brace")
	// ErrCrossSlot reports an event published to several topics whose
	// keys are in different Redis Cluster hash slots. Topics whose text up
	// to their first "}" is the same share a slot: publish to
	// "{room1}chat" and "{room1}typing" at once.
	ErrCrossSlot = errors.New("sseredis: the topics of one event must share a hash slot")
)

// Defaults of [New].
const (
	DefaultPrefix     = "sse:"
	DefaultMaxLen     = 1000
	DefaultTimeout    = 5 * time.Second
	DefaultMinBackoff = 100 * time.Millisecond
	DefaultMaxBackoff = 5 * time.Second
)

// Names of the fields of a stream entry.
const (
	fieldBody   = "b" // sse.Message.Body
	fieldPrev   = "p" // id of the entry before this one in its stream ("0-0" for the first)
	fieldTopics = "t" // the topics, joined by topicSep, when more than one
	topicSep    = "\t"
	noID        = "0-0"
)

type config struct {
	prefix                 string
	maxLen                 int64
	maxAge                 time.Duration
	timeout                time.Duration
	minBackoff, maxBackoff time.Duration
	onError                func(error)
}

// Option configures a [Backend].
type Option interface {
	apply(*config)
}

// optionFunc is an Option that is a function.
type optionFunc func(*config)

func (f optionFunc) apply(c *config) { f(c) }

// WithPrefix sets the prefix of the Redis keys (default "sse:"). Brokers
// share events when they use the same Redis and prefix. It must not
// contain a brace.
func WithPrefix(prefix string) Option {
	return optionFunc(func(c *config) { c.prefix = prefix })
}

// WithMaxLen bounds each topic's history to about n events (XADD MAXLEN ~
// n; Redis trims whole nodes of its radix tree, so it keeps at least n and
// a few more). Zero means no bound by count. Default 1,000.
func WithMaxLen(n int64) Option {
	return optionFunc(func(c *config) { c.maxLen = max(n, 0) })
}

// WithMaxAge drops a topic's events older than d, on each publish to it
// (XTRIM MINID ~, by Redis's clock; the newest event is always kept).
// Zero, the default, means no bound by age.
func WithMaxAge(d time.Duration) Option {
	return optionFunc(func(c *config) { c.maxAge = max(d, 0) })
}

// WithTimeout bounds each call to Redis of Publish, Replay and Watch
// (default 5 s), besides their context.
func WithTimeout(d time.Duration) Option {
	return optionFunc(func(c *config) {
		if d > 0 {
			c.timeout = d
		}
	})
}

// WithBackoff sets the wait of the reader after a Redis error: it starts
// at minimum and doubles up to maximum while errors repeat (default
// 100 ms to 5 s).
func WithBackoff(minimum, maximum time.Duration) Option {
	return optionFunc(func(c *config) {
		if minimum > 0 {
			c.minBackoff = minimum
		}
		c.maxBackoff = max(maximum, c.minBackoff)
	})
}

// WithErrorHandler sets a function called with the errors of the reader
// goroutine (Redis unreachable, an entry it cannot decode). By default
// they are logged with [slog.Warn]. It must not block for long.
func WithErrorHandler(fn func(error)) Option {
	return optionFunc(func(c *config) { c.onError = fn })
}

// Backend is an [sse.Backend] over Redis streams. Create it with [New] and
// give it to one broker with [sse.WithBackend]; the broker calls Start and,
// on Shutdown, Close. Close does not close the Redis client.
type Backend struct {
	client redis.UniversalClient
	cfg    config

	mu      sync.Mutex
	started bool
	closed  bool
	deliver func(sse.Message)
	topics  map[string]*topicState // watched, by stream key
	ops     []subOp                // subscription changes for the control goroutine
	opsCh   chan struct{}          // signals ops
	ps      *redis.PubSub
	cancel  context.CancelFunc
	done    sync.WaitGroup
	readErr error // of the reader's connection, until it works again
}

// topicState is a watched topic. last and epoch belong to the reader
// goroutine; Watch reads last once ready is closed.
type topicState struct {
	topic, key string
	ready      chan struct{} // closed once pos is set
	pos        string        // where delivery started: the last id when watched
	last       string        // id of the last entry delivered (or known when watched)
	epoch      string        // of the topic's keys, as of the last entry read
	dirty      bool          // must catch up from the stream
	busy       bool          // being caught up, or delivering an entry of several topics
}

// subOp is a subscription change of a stream's shard channel.
type subOp struct {
	key string
	sub bool
}

var _ sse.Backend = (*Backend)(nil)

// New returns a backend storing events in Redis through client.
func New(client redis.UniversalClient, opts ...Option) *Backend {
	cfg := config{
		prefix:     DefaultPrefix,
		maxLen:     DefaultMaxLen,
		timeout:    DefaultTimeout,
		minBackoff: DefaultMinBackoff,
		maxBackoff: DefaultMaxBackoff,
	}
	for _, o := range opts {
		if o != nil {
			o.apply(&cfg)
		}
	}
	if cfg.onError == nil {
		cfg.onError = func(err error) { slog.Warn("sseredis", "err", err) }
	}
	return &Backend{client: client, cfg: cfg, topics: make(map[string]*topicState), opsCh: make(chan struct{}, 1)}
}

// Key returns the key of topic's stream; its shard channel has the same
// name. The keys of its epoch and of recent publishes add ":e" and ":u:"
// to it.
func (b *Backend) Key(topic string) string { return b.cfg.prefix + "{" + topic + "}" }

// unavailable wraps a Redis error.
func unavailable(op string, err error) error {
	return fmt.Errorf("%w: %s: %w", ErrUnavailable, op, err)
}

// call returns ctx bounded by the backend's timeout.
func (b *Backend) call(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, b.cfg.timeout)
}

// Start implements [sse.Backend]: it starts the reader, which connects to
// Redis when it can. It fails only on a closed or started backend, or an
// invalid prefix.
func (b *Backend) Start(deliver func(sse.Message)) error {
	if strings.ContainsAny(b.cfg.prefix, "{}") {
		return fmt.Errorf("%w: %q", ErrInvalidPrefix, b.cfg.prefix)
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return sse.ErrBackendClosed
	}
	if b.started {
		return sse.ErrBackendStarted
	}
	ctx, cancel := context.WithCancel(context.Background())
	b.started, b.cancel, b.deliver = true, cancel, deliver
	b.ps = b.client.SSubscribe(ctx)
	b.done.Add(2)
	go b.read(ctx)
	go b.control(ctx)
	return nil
}

// Ready reports whether the backend works: Redis answers, and the reader
// is connected. Expose it as the app's readiness check, so that a load
// balancer sends clients elsewhere while it fails:
//
//	r.GET("/readyz", func(c *gin.Context) {
//		if err := backend.Ready(c.Request.Context()); err != nil {
//			c.String(http.StatusServiceUnavailable, err.Error())
//			return
//		}
//		c.String(http.StatusOK, "ok")
//	})
//
// Its error wraps [ErrUnavailable], or is [sse.ErrBackendClosed].
func (b *Backend) Ready(ctx context.Context) error {
	b.mu.Lock()
	closed, started, readErr := b.closed, b.started, b.readErr
	b.mu.Unlock()
	switch {
	case closed:
		return sse.ErrBackendClosed
	case !started:
		return fmt.Errorf("%w: not started", ErrUnavailable)
	}
	ctx, cancel := b.call(ctx)
	defer cancel()
	if err := b.client.Ping(ctx).Err(); err != nil {
		return unavailable("ping", err)
	}
	if readErr != nil {
		return unavailable("reader", readErr)
	}
	return nil
}

// setReadErr records the state of the reader's connection.
func (b *Backend) setReadErr(err error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.readErr = err
}

// Watch implements [sse.Backend]: it subscribes to topic's shard channel
// and, once subscribed, reads the id of its stream's last entry: the
// position returned, after which the reader delivers every entry.
func (b *Backend) Watch(ctx context.Context, topic string) (string, error) {
	if err := checkTopic(topic); err != nil {
		return "", err
	}
	st := &topicState{topic: topic, key: b.Key(topic), ready: make(chan struct{})}
	b.mu.Lock()
	if b.closed || !b.started {
		b.mu.Unlock()
		return "", sse.ErrBackendClosed
	}
	b.topics[st.key] = st
	b.queue(subOp{key: st.key, sub: true})
	b.mu.Unlock()
	ctx, cancel := b.call(ctx)
	defer cancel()
	select {
	case <-st.ready:
		if st.pos == noID {
			return "", nil
		}
		return st.pos, nil
	case <-ctx.Done():
		return "", unavailable("watch "+topic, ctx.Err())
	}
}

// Unwatch implements [sse.Backend].
func (b *Backend) Unwatch(topic string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	key := b.Key(topic)
	if _, ok := b.topics[key]; ok && !b.closed {
		delete(b.topics, key)
		b.queue(subOp{key: key})
	}
}

// queue adds a subscription change for the control goroutine. b.mu is held.
func (b *Backend) queue(op subOp) {
	b.ops = append(b.ops, op)
	select {
	case b.opsCh <- struct{}{}:
	default:
	}
}

// control makes the subscription changes, in order: a topic unwatched and
// watched again is subscribed at the end. go-redis keeps the channels of
// a PubSub and subscribes to them again on every new connection.
func (b *Backend) control(ctx context.Context) {
	defer b.done.Done()
	for {
		select {
		case <-ctx.Done():
			return
		case <-b.opsCh:
		}
		b.mu.Lock()
		ops := b.ops
		b.ops = nil
		b.mu.Unlock()
		for _, op := range ops {
			cctx, cancel := b.call(ctx)
			var err error
			if op.sub {
				err = b.ps.SSubscribe(cctx, op.key)
			} else {
				err = b.ps.SUnsubscribe(cctx, op.key)
			}
			cancel()
			if err != nil && ctx.Err() == nil {
				b.cfg.onError(unavailable("subscribe", err)) // done again on reconnect
			}
		}
	}
}

func checkTopic(t string) error {
	for i := 0; i < len(t); i++ {
		if t[i] < 0x20 || t[i] == 0x7f {
			return fmt.Errorf("%w: %q", ErrInvalidTopic, t)
		}
	}
	return nil
}

// publishScript appends an event to the streams of its topics with one id
// for all of them, each entry linked to the one before it in its stream;
// trims them; announces each entry on its stream's shard channel; and
// remembers the id for a while under the publish's own key, so that a
// retried call (go-redis retries a call that timed out) stores nothing
// twice and returns the same id.
//
// KEYS[1]: the publish's key; then for each topic its stream and its epoch
// key. ARGV: body, topics field ("" for one topic), maxlen (0: none), max
// age in ms (0: none), ms to remember the publish, a new epoch.
var publishScript = redis.NewScript(`
local done = redis.call('GET', KEYS[1])
if done then return done end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ms, seq = now, 0
local n = (#KEYS - 1) / 2
local prev, epoch = {}, {}
for i = 1, n do
	local key = KEYS[2 * i]
	local last = '0-0'
	local e = redis.call('XREVRANGE', key, '+', '-', 'COUNT', 1)
	if #e > 0 then
		last = e[1][1]
	elseif redis.call('EXISTS', key) == 1 then
		local info = redis.call('XINFO', 'STREAM', key)
		for j = 1, #info, 2 do
			if info[j] == 'last-generated-id' then last = info[j + 1] end
		end
	end
	prev[i] = last
	local dash = string.find(last, '-', 1, true)
	local lms, lseq = tonumber(string.sub(last, 1, dash - 1)), tonumber(string.sub(last, dash + 1))
	if lms > ms or (lms == ms and lseq >= seq) then
		ms, seq = lms, lseq + 1
	end
	epoch[i] = redis.call('GET', KEYS[2 * i + 1])
	if not epoch[i] then
		epoch[i] = ARGV[6]
		redis.call('SET', KEYS[2 * i + 1], epoch[i])
	end
end
local id = string.format('%.0f-%.0f', ms, seq)
for i = 1, n do
	local key = KEYS[2 * i]
	local args = {'XADD', key}
	if ARGV[3] ~= '0' then
		table.insert(args, 'MAXLEN')
		table.insert(args, '~')
		table.insert(args, ARGV[3])
	end
	table.insert(args, id)
	table.insert(args, 'b')
	table.insert(args, ARGV[1])
	table.insert(args, 'p')
	table.insert(args, prev[i])
	if ARGV[2] ~= '' then
		table.insert(args, 't')
		table.insert(args, ARGV[2])
	end
	redis.call(unpack(args))
	if ARGV[4] ~= '0' and now > tonumber(ARGV[4]) then
		redis.call('XTRIM', key, 'MINID', '~', string.format('%.0f', now - tonumber(ARGV[4])))
	end
	redis.call('SPUBLISH', key, id .. '\n' .. prev[i] .. '\n' .. epoch[i] .. '\n' .. ARGV[2] .. '\n' .. ARGV[1])
end
redis.call('SET', KEYS[1], id, 'PX', ARGV[5])
return id
`)

// Publish implements [sse.Backend]. The event gets one stream id for all
// its topics; an own id is refused with [ErrOwnID]. Delivery, also to this
// process's broker, comes from the reader. A call that does not complete
// within the timeout fails wrapping [ErrUnavailable]; the event may still
// have been stored then, once. go-redis's own retries of the call store
// nothing twice.
func (b *Backend) Publish(ctx context.Context, topics []string, id string, body []byte) (sse.Message, error) {
	if id != "" {
		return sse.Message{}, fmt.Errorf("%w: %q", ErrOwnID, id)
	}
	if len(topics) == 0 {
		return sse.Message{}, sse.ErrNoTopics
	}
	keys := make([]string, 1, 1+2*len(topics))
	for _, t := range topics {
		if err := checkTopic(t); err != nil {
			return sse.Message{}, err
		}
		keys = append(keys, b.Key(t), b.Key(t)+":e")
	}
	keys[0] = b.Key(topics[0]) + ":u:" + strconv.FormatUint(rand.Uint64(), 36) + strconv.FormatUint(rand.Uint64(), 36)
	if b.isClosed() {
		return sse.Message{}, sse.ErrBackendClosed
	}
	field := ""
	if len(topics) > 1 {
		field = strings.Join(topics, topicSep)
	}
	maxAge := int64(b.cfg.maxAge / time.Millisecond)
	if b.cfg.maxAge > 0 {
		maxAge = max(maxAge, 1)
	}
	remember := max(2*b.cfg.timeout, 10*time.Second).Milliseconds()
	ctx, cancel := b.call(ctx)
	defer cancel()
	res, err := publishScript.Run(ctx, b.client, keys, body, field, b.cfg.maxLen, maxAge, remember,
		strconv.FormatUint(rand.Uint64(), 36)).Text()
	if err != nil {
		if strings.Contains(err.Error(), "CROSSSLOT") {
			return sse.Message{}, fmt.Errorf("%w: %q: %w", ErrCrossSlot, topics, err)
		}
		return sse.Message{}, unavailable("publish", err)
	}
	return sse.Message{ID: res, Topics: topics, Body: body, Time: idTime(res)}, nil
}

func (b *Backend) isClosed() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.closed
}

// Replay implements [sse.Backend]. It reads, in one round trip, the
// entries of topic's stream after after up to until (XRANGE, at most
// limit; none when until is "") with what it needs to check after:
//   - not a stream id: [sse.ErrMalformedEventID];
//   - older than the entry before the first one kept (entries after it
//     were trimmed): [sse.ErrHistoryExpired];
//   - newer than the stream's last id, or not an id of the stream (Redis
//     lost the entries it was part of): [sse.ErrDataLoss].
//
// When Redis cannot be reached the error wraps [ErrUnavailable].
func (b *Backend) Replay(ctx context.Context, topic, after, until string, limit int) ([]sse.Message, error) {
	if b.isClosed() {
		return nil, sse.ErrBackendClosed
	}
	if after == "" {
		after = noID
	}
	from, ok := parseID(after)
	if !ok {
		return nil, fmt.Errorf("%w: %q is not a Redis stream id", sse.ErrMalformedEventID, after)
	}
	end := "" // nothing to read, but after is still checked
	if until != "" {
		to, ok := parseID(until)
		if !ok {
			return nil, fmt.Errorf("sseredis: replay up to %q: not a Redis stream id", until)
		}
		if to.cmp(from) > 0 {
			end = until
		}
	}
	key := b.Key(topic)
	ctx, cancel := b.call(ctx)
	defer cancel()
	var info *redis.XInfoStreamCmd
	var exists, rng *redis.XMessageSliceCmd
	_, err := b.client.Pipelined(ctx, func(p redis.Pipeliner) error {
		info = p.XInfoStream(ctx, key)
		exists = p.XRangeN(ctx, key, after, after, 1)
		if end != "" && limit > 0 {
			rng = p.XRangeN(ctx, key, "("+after, end, int64(limit))
		}
		return nil
	})
	if err != nil && !isNoSuchKey(err) {
		return nil, unavailable("replay", err)
	}
	if err := b.check(topic, after, info, exists); err != nil {
		return nil, err
	}
	if rng == nil {
		return nil, nil
	}
	page, want := rng.Val(), limit
	out := make([]sse.Message, 0, len(page))
	for {
		for _, x := range page {
			if msg, ok := decode(topic, x); ok {
				out = append(out, msg)
			}
		}
		if len(out) == limit || len(page) < want {
			return out, nil
		}
		// Entries that do not decode were skipped: fill the page, so
		// that a short one still means the end.
		want = limit - len(out)
		if page, err = b.client.XRangeN(ctx, key, "("+page[len(page)-1].ID, end, int64(want)).Result(); err != nil {
			return nil, unavailable("replay", err)
		}
	}
}

// check returns why the entries of topic after after cannot be replayed
// whole, or nil.
func (b *Backend) check(topic, after string, info *redis.XInfoStreamCmd, exists *redis.XMessageSliceCmd) error {
	from, _ := parseID(after)
	last, first, length := noID, redis.XMessage{}, int64(0)
	if i, err := info.Result(); err == nil {
		last, first, length = i.LastGeneratedID, i.FirstEntry, i.Length
	}
	lastID, _ := parseID(last)
	if from.cmp(lastID) > 0 {
		return fmt.Errorf("%w: %q is newer than the last id %s of topic %q", sse.ErrDataLoss, after, last, topic)
	}
	if length == 0 {
		if from.cmp(lastID) < 0 {
			return fmt.Errorf("%w: %q (the history of %q is empty)", sse.ErrHistoryExpired, after, topic)
		}
		return nil
	}
	firstID, _ := parseID(first.ID)
	if from.cmp(firstID) >= 0 {
		if len(exists.Val()) == 0 {
			return fmt.Errorf("%w: %q is not an id of topic %q", sse.ErrDataLoss, after, topic)
		}
		return nil
	}
	prevID, _ := first.Values[fieldPrev].(string)
	prev, ok := parseID(prevID)
	switch {
	case !ok || from.cmp(prev) < 0:
		return fmt.Errorf("%w: %q (the oldest event of %q kept is %s)", sse.ErrHistoryExpired, after, topic, first.ID)
	case from.cmp(prev) > 0:
		return fmt.Errorf("%w: %q is not an id of topic %q", sse.ErrDataLoss, after, topic)
	}
	return nil
}

func isNoSuchKey(err error) bool {
	var rerr redis.Error
	return errors.As(err, &rerr) && strings.Contains(err.Error(), "no such key")
}

// Close implements [sse.Backend]: it stops the reader and waits for it.
// It does not close the Redis client.
func (b *Backend) Close() error {
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return nil
	}
	b.closed = true
	started := b.started
	if started {
		b.cancel()
	}
	b.mu.Unlock()
	if !started {
		return nil
	}
	err := b.ps.Close() // ends a Receive under way
	b.done.Wait()
	if err != nil && !errors.Is(err, redis.ErrClosed) {
		return err
	}
	return nil
}

// read is the reader: it receives the entries announced on the channels of
// the watched topics and delivers them, catching up from the streams when
// it missed some, until ctx is done.
func (b *Backend) read(ctx context.Context) {
	defer b.done.Done()
	backoff := b.cfg.minBackoff
	for ctx.Err() == nil {
		timeout := time.Duration(0)
		if b.hasDirty() {
			timeout = backoff
		}
		msg, err := b.ps.ReceiveTimeout(ctx, timeout)
		if ctx.Err() != nil {
			return
		}
		var nerr interface{ Timeout() bool }
		switch {
		case err == nil, errors.As(err, &nerr) && nerr.Timeout(): // connected
			backoff = b.cfg.minBackoff
			b.setReadErr(nil)
		default:
			b.setReadErr(err)
			b.cfg.onError(unavailable("read", err))
			if !sleep(ctx, backoff) {
				return
			}
			backoff = min(2*backoff, b.cfg.maxBackoff)
			continue
		}
		switch m := msg.(type) {
		case *redis.Subscription:
			if m.Kind == "ssubscribe" {
				if st := b.watched(m.Channel); st != nil {
					b.catchUp(ctx, st, "")
				}
			}
		case *redis.Message:
			b.receive(ctx, m)
		}
		b.cleanDirty(ctx)
	}
}

func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// watched returns the state of the topic of a stream key, or nil.
func (b *Backend) watched(key string) *topicState {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.topics[key]
}

// hasDirty reports whether the reader has something to try again: a
// topic to catch up, or a connection to check.
func (b *Backend) hasDirty() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.readErr != nil {
		return true
	}
	for _, st := range b.topics {
		if st.dirty {
			return true
		}
	}
	return false
}

// cleanDirty catches up the topics that could not.
func (b *Backend) cleanDirty(ctx context.Context) {
	var dirty []*topicState
	b.mu.Lock()
	for _, st := range b.topics {
		if st.dirty {
			dirty = append(dirty, st)
		}
	}
	b.mu.Unlock()
	for _, st := range dirty {
		b.catchUp(ctx, st, "")
	}
}

// receive handles an entry announced on a topic's channel: the payload is
// its id, the id before it, the topic's epoch, its topics field and body,
// separated by line feeds.
func (b *Backend) receive(ctx context.Context, m *redis.Message) {
	st := b.watched(m.Channel)
	if st == nil || st.last == "" {
		return // not watched, or not yet known where it starts
	}
	parts := strings.SplitN(m.Payload, "\n", 5)
	id, ok := parseID(parts[0])
	if len(parts) < 5 || !ok {
		b.cfg.onError(fmt.Errorf("sseredis: skipping a malformed message on %s", m.Channel))
		return
	}
	last, _ := parseID(st.last)
	switch {
	case parts[2] != st.epoch && st.epoch != "":
		b.catchUp(ctx, st, "") // the topic's keys were lost and made again
	case id.cmp(last) <= 0:
		// Read already from the stream.
	case parts[1] != st.last:
		b.catchUp(ctx, st, parts[0]) // missed some
	default:
		st.epoch = parts[2]
		b.deliverEntry(ctx, st, sse.Message{ID: parts[0], Topic: st.topic, Topics: splitTopics(st.topic, parts[3]), Body: []byte(parts[4]), Time: idTime(parts[0])})
	}
}

// deliverEntry delivers msg, the entry of st's topic after the last one
// delivered, unless it was delivered meanwhile. An entry of several topics
// comes after every earlier entry of its other watched topics, which it
// catches up first: a stream on several of them gets each topic's events
// in order, whichever announcement arrives first.
func (b *Backend) deliverEntry(ctx context.Context, st *topicState, msg sse.Message) {
	if len(msg.Topics) > 1 {
		st.busy = true
		for _, t := range msg.Topics {
			if o := b.watched(b.Key(t)); o != nil && o != st && !o.busy && o.last != "" && cmpIDs(o.last, msg.ID) < 0 {
				b.catchUp(ctx, o, msg.ID)
			}
		}
		st.busy = false
	}
	if cmpIDs(msg.ID, st.last) <= 0 {
		return
	}
	st.last = msg.ID
	b.deliver(msg)
}

// cmpIDs compares two stream ids; one that does not parse is the first.
func cmpIDs(x, y string) int {
	a, _ := parseID(x)
	c, _ := parseID(y)
	return a.cmp(c)
}

// catchUp reads the entries of st's stream after the last one delivered,
// up to until ("" for all), and delivers them. The first time, it only
// reads where the stream ends. Where the link of an entry to the one
// before it does not match, it delivers a gap first: the entries between
// were trimmed (sse.ErrOverrun) or lost by Redis (sse.ErrDataLoss). On a
// Redis error it marks st, to try again.
func (b *Backend) catchUp(ctx context.Context, st *topicState, until string) {
	st.busy = true
	err := b.catchUpOnce(ctx, st, until)
	st.busy = false
	b.mu.Lock()
	st.dirty = err != nil
	b.mu.Unlock()
	if err != nil && ctx.Err() == nil {
		b.cfg.onError(unavailable("catch up "+st.topic, err))
	}
}

func (b *Backend) catchUpOnce(ctx context.Context, st *topicState, until string) error {
	cctx, cancel := b.call(ctx)
	defer cancel()
	var info *redis.XInfoStreamCmd
	var epoch *redis.StringCmd
	_, err := b.client.Pipelined(cctx, func(p redis.Pipeliner) error {
		info = p.XInfoStream(cctx, st.key)
		epoch = p.Get(cctx, st.key+":e")
		return nil
	})
	if err != nil && !isNoSuchKey(err) && !errors.Is(err, redis.Nil) {
		return err
	}
	lastGen := noID
	if i, err := info.Result(); err == nil {
		lastGen = i.LastGeneratedID
	}
	if st.last == "" { // watched just now: delivery starts after the last entry
		st.last, st.pos, st.epoch = lastGen, lastGen, epoch.Val()
		close(st.ready)
		return nil
	}
	lg, _ := parseID(lastGen)
	last, _ := parseID(st.last)
	switch e := epoch.Val(); {
	case st.epoch != "" && e != st.epoch:
		b.gap(st, noID, sse.ErrDataLoss) // the topic's keys are not those read before: Redis lost them
	case lg.cmp(last) < 0:
		b.gap(st, lastGen, sse.ErrDataLoss) // Redis lost the last entries delivered: go on after what it has
	}
	st.epoch = epoch.Val()
	end := "+"
	if until != "" {
		end = until
	}
	for {
		page, err := b.client.XRangeN(cctx, st.key, "("+st.last, end, 256).Result()
		if err != nil {
			return err
		}
		for _, x := range page {
			if cmpIDs(x.ID, st.last) <= 0 {
				continue // delivered meanwhile, before an entry of several topics
			}
			msg, ok := decode(st.topic, x)
			if !ok {
				b.cfg.onError(fmt.Errorf("sseredis: skipping entry %s of %s: no %q field", x.ID, st.key, fieldBody))
				st.last = x.ID
				continue
			}
			if prev, _ := x.Values[fieldPrev].(string); prev != st.last {
				p, _ := parseID(prev)
				last, _ := parseID(st.last)
				reason := sse.ErrOverrun // trimmed before it was read
				if p.cmp(last) < 0 {
					reason = sse.ErrDataLoss
				}
				b.gap(st, prev, reason)
			}
			b.deliverEntry(ctx, st, msg)
		}
		if len(page) < 256 {
			return nil
		}
	}
}

// gap delivers a gap of st, after which delivery goes on after id.
func (b *Backend) gap(st *topicState, id string, reason error) {
	st.last = id
	if id == noID {
		id = ""
	}
	b.deliver(sse.Message{ID: id, Topic: st.topic, Topics: []string{st.topic}, Lost: reason})
}

func splitTopics(topic, field string) []string {
	if field == "" {
		return []string{topic}
	}
	return strings.Split(field, topicSep)
}

func decode(topic string, x redis.XMessage) (sse.Message, bool) {
	body, ok := x.Values[fieldBody].(string)
	if !ok {
		return sse.Message{}, false
	}
	field, _ := x.Values[fieldTopics].(string)
	return sse.Message{
		ID:     x.ID,
		Topic:  topic,
		Topics: splitTopics(topic, field),
		Body:   []byte(body),
		Time:   idTime(x.ID),
	}, true
}

// streamID is a parsed Redis stream id.
type streamID struct{ ms, seq uint64 }

func parseID(s string) (streamID, bool) {
	a, b, ok := strings.Cut(s, "-")
	if !ok || !digits(a) || !digits(b) {
		return streamID{}, false
	}
	ms, err1 := strconv.ParseUint(a, 10, 64)
	seq, err2 := strconv.ParseUint(b, 10, 64)
	return streamID{ms, seq}, err1 == nil && err2 == nil
}

func digits(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

func (a streamID) cmp(b streamID) int {
	switch {
	case a.ms != b.ms:
		if a.ms < b.ms {
			return -1
		}
		return 1
	case a.seq < b.seq:
		return -1
	case a.seq > b.seq:
		return 1
	}
	return 0
}

// idTime is the time in a stream id.
func idTime(id string) time.Time {
	if x, ok := parseID(id); ok && x.ms <= 1<<62 {
		return time.UnixMilli(int64(x.ms))
	}
	return time.Time{}
}

// CompareIDs implements [sse.Backend]: it orders two stream ids; "" is
// the first of all.
func (b *Backend) CompareIDs(x, y string) (int, error) {
	if x == "" {
		x = noID
	}
	if y == "" {
		y = noID
	}
	a, ok1 := parseID(x)
	c, ok2 := parseID(y)
	if !ok1 || !ok2 {
		return 0, fmt.Errorf("%w: %q, %q", sse.ErrMalformedEventID, x, y)
	}
	return a.cmp(c), nil
}
