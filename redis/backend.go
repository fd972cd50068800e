// Package sseredis is a Redis Streams [sse.Backend] for the broker of
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
// Every event goes to one stream key (prefix + "events") with XADD; its id
// is the Redis stream id "<milliseconds>-<sequence>", the same on every
// server and across restarts of the servers. One goroutine per Backend
// reads the stream with a blocking XREAD on one connection and hands every
// entry to the broker, which fans it out to its local subscribers. Replay
// is an XRANGE filtered by topic, so a subscription to several topics
// replays them merged in publish order.
package sseredis

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gin-sse/sse"
	"github.com/redis/go-redis/v9"
)

// Errors of the Redis backend. Test for them with [errors.Is].
var (
	// ErrUnavailable is wrapped (together with the Redis error) by the
	// errors of Publish, Replay and Start when Redis cannot be reached or
	// does not answer.
	ErrUnavailable = errors.New("sseredis: redis unavailable")
	// ErrOwnID reports an event published with its own ID: the Redis
	// backend gives every event the stream id Redis assigns.
	ErrOwnID = errors.New("sseredis: events cannot have their own ID with the Redis backend")
	// ErrInvalidTopic reports a topic containing a line feed, the
	// separator of topics in a stream entry. The broker never passes one.
	ErrInvalidTopic = errors.New("sseredis: topic contains a line feed")
)

// Defaults of [New].
const (
	DefaultPrefix     = "sse:"
	DefaultMaxLen     = 10000
	DefaultBlock      = 2 * time.Second
	DefaultMinBackoff = 100 * time.Millisecond
	DefaultMaxBackoff = 5 * time.Second
)

// Names of the fields of a stream entry.
const (
	fieldTopics = "topics" // the topics, joined by topicSep
	fieldBody   = "body"   // sse.Message.Body
	fieldPrev   = "prev"   // id of the entry before this one ("0-0" for the first)
	topicSep    = "\n"
)

type config struct {
	prefix                 string
	maxLen                 int64
	maxAge                 time.Duration
	block                  time.Duration
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

// WithPrefix sets the prefix of the Redis keys (default "sse:"); the stream
// is prefix + "events". Brokers share events when they use the same Redis
// and prefix.
func WithPrefix(prefix string) Option {
	return optionFunc(func(c *config) { c.prefix = prefix })
}

// WithMaxLen bounds the history to about n events (XADD MAXLEN ~ n; Redis
// trims whole nodes of its radix tree, so it keeps at least n and a few
// more). Zero means no bound by count. Default 10,000.
func WithMaxLen(n int64) Option {
	return optionFunc(func(c *config) { c.maxLen = max(n, 0) })
}

// WithMaxAge drops events older than d, on each publish (XTRIM MINID ~,
// from Redis's clock; the newest event is always kept). Zero, the default,
// means no bound by age.
func WithMaxAge(d time.Duration) Option {
	return optionFunc(func(c *config) { c.maxAge = max(d, 0) })
}

// WithBlock sets how long each blocking XREAD waits for new entries before
// it is sent again (default 2 s). With a [redis.Client], Close unblocks the
// reader at once; with other clients it may wait this long.
func WithBlock(d time.Duration) Option {
	return optionFunc(func(c *config) {
		if d > 0 {
			c.block = d
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

// Backend is an [sse.Backend] over a Redis stream. Create it with [New] and
// give it to one broker with [sse.WithBackend]; the broker calls Start and,
// on Shutdown, Close. Close does not close the Redis client.
type Backend struct {
	client redis.UniversalClient
	cfg    config
	key    string

	mu      sync.Mutex
	started bool
	closed  bool
	cancel  context.CancelFunc
	done    chan struct{}

	readerID atomic.Int64 // CLIENT ID of the reader's connection, 0 if none
}

var _ sse.Backend = (*Backend)(nil)

// New returns a backend storing events in Redis through client.
func New(client redis.UniversalClient, opts ...Option) *Backend {
	cfg := config{
		prefix:     DefaultPrefix,
		maxLen:     DefaultMaxLen,
		block:      DefaultBlock,
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
	return &Backend{client: client, cfg: cfg, key: cfg.prefix + "events"}
}

// Key returns the key of the Redis stream.
func (b *Backend) Key() string { return b.key }

// unavailable wraps a Redis error.
func unavailable(op string, err error) error {
	return fmt.Errorf("%w: %s: %w", ErrUnavailable, op, err)
}

// Start implements [sse.Backend]: it reads the stream's last id, returns it
// as the position and starts the reader. It fails, wrapping
// [ErrUnavailable], when Redis cannot be reached.
func (b *Backend) Start(deliver func(sse.Message)) (string, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return "", sse.ErrBackendClosed
	}
	if b.started {
		return "", sse.ErrBackendStarted
	}
	st, err := b.state(context.Background())
	if err != nil {
		return "", unavailable("start", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	b.started, b.cancel, b.done = true, cancel, make(chan struct{})
	go b.run(ctx, st.last, deliver)
	return st.last, nil
}

// streamState is what Replay and Start need to know of the stream.
type streamState struct {
	last   string // last id given out, "0-0" for none
	length int64
	first  redis.XMessage // valid when length > 0
}

func (b *Backend) state(ctx context.Context) (streamState, error) {
	info, err := b.client.XInfoStream(ctx, b.key).Result()
	if err != nil {
		if isNoSuchKey(err) {
			return streamState{last: "0-0"}, nil
		}
		return streamState{}, err
	}
	return streamState{last: info.LastGeneratedID, length: info.Length, first: info.FirstEntry}, nil
}

func isNoSuchKey(err error) bool {
	var rerr redis.Error
	return errors.As(err, &rerr) && strings.Contains(err.Error(), "no such key")
}

// publishScript adds an entry recording the id of the entry before it, so
// that Replay can tell whether entries after a client's last id were
// trimmed, and trims the history.
//
// KEYS[1]: stream; ARGV: topics, body, maxlen (0: none), max age in ms (0: none).
var publishScript = redis.NewScript(`
local prev = '0-0'
local last = redis.call('XREVRANGE', KEYS[1], '+', '-', 'COUNT', 1)
if #last > 0 then
	prev = last[1][1]
elseif redis.call('EXISTS', KEYS[1]) == 1 then
	local info = redis.call('XINFO', 'STREAM', KEYS[1])
	for i = 1, #info, 2 do
		if info[i] == 'last-generated-id' then prev = info[i + 1] end
	end
end
local id
if ARGV[3] ~= '0' then
	id = redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[3], '*', 'topics', ARGV[1], 'body', ARGV[2], 'prev', prev)
else
	id = redis.call('XADD', KEYS[1], '*', 'topics', ARGV[1], 'body', ARGV[2], 'prev', prev)
end
if ARGV[4] ~= '0' then
	local t = redis.call('TIME')
	local ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) - tonumber(ARGV[4])
	if ms > 0 then
		redis.call('XTRIM', KEYS[1], 'MINID', '~', string.format('%.0f', ms))
	end
end
return id
`)

// Publish implements [sse.Backend]. The event gets the id Redis gives its
// stream entry; an own id is refused with [ErrOwnID]. Delivery, also to
// this process's broker, comes from the reader. When Redis cannot be
// reached the error wraps [ErrUnavailable].
func (b *Backend) Publish(ctx context.Context, topics []string, id string, body []byte) (sse.Message, error) {
	if id != "" {
		return sse.Message{}, fmt.Errorf("%w: %q", ErrOwnID, id)
	}
	for _, t := range topics {
		if strings.Contains(t, topicSep) {
			return sse.Message{}, fmt.Errorf("%w: %q", ErrInvalidTopic, t)
		}
	}
	if b.isClosed() {
		return sse.Message{}, sse.ErrBackendClosed
	}
	maxAge := int64(b.cfg.maxAge / time.Millisecond)
	if b.cfg.maxAge > 0 {
		maxAge = max(maxAge, 1)
	}
	res, err := publishScript.Run(ctx, b.client, []string{b.key},
		strings.Join(topics, topicSep), body, b.cfg.maxLen, maxAge).Text()
	if err != nil {
		return sse.Message{}, unavailable("publish", err)
	}
	return sse.Message{ID: res, Topics: topics, Body: body, Time: idTime(res)}, nil
}

func (b *Backend) isClosed() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.closed
}

// Replay implements [sse.Backend]. It reads the entries after after up to
// until (XRANGE) in one transaction with what it needs to check after:
//   - not a stream id: [sse.ErrMalformedEventID];
//   - newer than the last id of the stream, or an id that the stream never
//     gave out (such as one from a Redis that lost its data): [sse.ErrUnknownEventID];
//   - older than the entry before the first one kept (entries after it
//     were trimmed): [sse.ErrHistoryExpired].
//
// When Redis cannot be reached the error wraps [ErrUnavailable] (and is an
// [*sse.StatusError] with status 503 for direct callers). The broker's
// handler then answers a stream holding only a "retry:" field, so that the
// client comes back later with the same Last-Event-ID ([sse.ErrReplayFailed]).
func (b *Backend) Replay(ctx context.Context, topics []string, after, until string) ([]sse.Message, error) {
	if b.isClosed() {
		return nil, sse.ErrBackendClosed
	}
	from, ok := parseID(after)
	if !ok {
		return nil, fmt.Errorf("%w: %q is not a Redis stream id", sse.ErrMalformedEventID, after)
	}
	end := "+"
	if until != "" {
		to, ok := parseID(until)
		if !ok {
			return nil, fmt.Errorf("sseredis: replay up to %q: not a Redis stream id", until)
		}
		if to.cmp(from) <= 0 {
			end = "" // nothing to read, but after is still checked
		} else {
			end = until
		}
	}
	var info *redis.XInfoStreamCmd
	var exists, rng *redis.XMessageSliceCmd
	_, err := b.client.TxPipelined(ctx, func(p redis.Pipeliner) error {
		info = p.XInfoStream(ctx, b.key)
		exists = p.XRangeN(ctx, b.key, after, after, 1)
		if end != "" {
			rng = p.XRange(ctx, b.key, "("+after, end)
		}
		return nil
	})
	if err != nil && !isNoSuchKey(err) {
		// The broker's handler asks the client to retry later.
		return nil, &sse.StatusError{StatusCode: http.StatusServiceUnavailable, Err: unavailable("replay", err)}
	}
	st := streamState{last: "0-0"}
	if i, err := info.Result(); err == nil {
		st = streamState{last: i.LastGeneratedID, length: i.Length, first: i.FirstEntry}
	}
	last, _ := parseID(st.last)
	if from.cmp(last) > 0 {
		return nil, fmt.Errorf("%w: %q is newer than the stream's last id %s", sse.ErrUnknownEventID, after, st.last)
	}
	switch first, _ := parseID(st.first.ID); {
	case st.length == 0:
		if from.cmp(last) < 0 {
			return nil, fmt.Errorf("%w: %q (the history is empty)", sse.ErrHistoryExpired, after)
		}
	case from.cmp(first) < 0:
		prevID, _ := st.first.Values[fieldPrev].(string)
		prev, ok := parseID(prevID)
		switch {
		case !ok || from.cmp(prev) < 0:
			return nil, fmt.Errorf("%w: %q (the oldest event kept is %s)", sse.ErrHistoryExpired, after, st.first.ID)
		case from.cmp(prev) > 0:
			return nil, fmt.Errorf("%w: %q is not an id of this stream", sse.ErrUnknownEventID, after)
		}
	default:
		if len(exists.Val()) == 0 {
			return nil, fmt.Errorf("%w: %q is not an id of this stream", sse.ErrUnknownEventID, after)
		}
	}
	if rng == nil {
		return nil, nil
	}
	var out []sse.Message
	for _, x := range rng.Val() {
		msg, ok := decode(x)
		if ok && slices.ContainsFunc(msg.Topics, func(t string) bool { return slices.Contains(topics, t) }) {
			out = append(out, msg)
		}
	}
	return out, nil
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
	done := b.done
	if b.cancel != nil {
		b.cancel()
	}
	b.mu.Unlock()
	if done == nil {
		return nil
	}
	t := time.NewTimer(0)
	defer t.Stop()
	for {
		select {
		case <-done:
			return nil
		case <-t.C:
			// A blocked XREAD does not see the context: unblock it.
			if id := b.readerID.Load(); id != 0 {
				ctx, cancel := context.WithTimeout(context.Background(), time.Second)
				_ = b.client.ClientUnblock(ctx, id).Err()
				cancel()
			}
			t.Reset(20 * time.Millisecond)
		}
	}
}

// run is the reader: it delivers every entry after last, in order, until
// ctx is done, retrying with backoff on errors.
func (b *Backend) run(ctx context.Context, last string, deliver func(sse.Message)) {
	defer close(b.done)
	var conn *redis.Conn
	defer func() {
		if conn != nil {
			_ = conn.Close()
		}
	}()
	backoff := b.cfg.minBackoff
	for ctx.Err() == nil {
		if c, ok := b.client.(*redis.Client); ok && conn == nil {
			conn = c.Conn()
			id, err := conn.ClientID(ctx).Result()
			if err != nil {
				_ = conn.Close()
				conn = nil
				if !b.pause(ctx, err, &backoff) {
					return
				}
				continue
			}
			b.readerID.Store(id)
		}
		var reader redis.Cmdable = b.client
		if conn != nil {
			reader = conn
		}
		streams, err := reader.XRead(ctx, &redis.XReadArgs{
			Streams: []string{b.key, last},
			Count:   1000,
			Block:   b.cfg.block,
		}).Result()
		if ctx.Err() != nil {
			return
		}
		if errors.Is(err, redis.Nil) {
			backoff = b.cfg.minBackoff
			continue
		}
		if err != nil {
			var rerr redis.Error
			if conn != nil && !errors.As(err, &rerr) { // connection broken: get another
				b.readerID.Store(0)
				_ = conn.Close()
				conn = nil
			}
			if !b.pause(ctx, err, &backoff) {
				return
			}
			continue
		}
		backoff = b.cfg.minBackoff
		for _, s := range streams {
			for _, x := range s.Messages {
				last = x.ID
				msg, ok := decode(x)
				if !ok {
					b.cfg.onError(fmt.Errorf("sseredis: skipping entry %s of %s: no %q field", x.ID, b.key, fieldBody))
					continue
				}
				deliver(msg)
			}
		}
	}
}

// pause reports err and waits for the backoff, doubling it. It returns
// false when ctx is done.
func (b *Backend) pause(ctx context.Context, err error, backoff *time.Duration) bool {
	b.cfg.onError(unavailable("read", err))
	t := time.NewTimer(*backoff)
	defer t.Stop()
	*backoff = min(2**backoff, b.cfg.maxBackoff)
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

func decode(x redis.XMessage) (sse.Message, bool) {
	body, ok := x.Values[fieldBody].(string)
	if !ok {
		return sse.Message{}, false
	}
	topics, _ := x.Values[fieldTopics].(string)
	return sse.Message{
		ID:     x.ID,
		Topics: strings.Split(topics, topicSep),
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

// CompareIDs orders two event ids of this backend (Redis stream ids),
// returning -1, 0 or +1. It implements [sse.IDComparer], which lets a
// broker whose reader lags behind another server skip the events a
// reconnecting client already got there.
func (b *Backend) CompareIDs(x, y string) (int, error) {
	a, ok1 := parseID(x)
	c, ok2 := parseID(y)
	if !ok1 || !ok2 {
		return 0, fmt.Errorf("%w: %q, %q", sse.ErrMalformedEventID, x, y)
	}
	return a.cmp(c), nil
}

var _ sse.IDComparer = (*Backend)(nil)
