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
	// keys are in different Redis Cluster hash slots, or on different
	// shards of a [redis.Ring]. Topics whose text up to their first "}"
	// is the same share a slot and a shard: publish to "{room1}chat" and
	// "{room1}typing" at once.
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
	b := &Backend{instance: newInstanceID(), client: client, cfg: cfg, topics: make(map[string]*topicState), shards: make(map[string]*shard)}
	b.cluster, _ = client.(*redis.ClusterClient)
	b.ring, _ = client.(*redis.Ring)
	return b
}

// Key returns the key of topic's stream; its shard channel has the same
// name. The keys of its epoch and of recent publishes add ":e" and ":u:"
// to it.
func (b *Backend) Key(topic string) string { return b.cfg.prefix + "{" + topic + "}" }

// unavailable wraps a Redis error.
func unavailable(op string, err error) error {
	return fmt.Errorf("%w: %s: %w", ErrUnavailable, op, err)
}

// failed wraps the error of a call to Redis. With a cluster, it has the
// client read the cluster's slots again: after a failover, go-redis keeps
// calling the master that died until it does.
func (b *Backend) failed(op string, err error) error {
	if b.cluster != nil {
		b.cluster.ReloadState(context.Background())
	}
	return unavailable(op, err)
}

// call returns ctx bounded by the backend's timeout.
func (b *Backend) call(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, b.cfg.timeout)
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
	if b.ring != nil && len(topics) > 1 {
		// Redis checks the slots of a script's keys on a Cluster only.
		first, err := b.ring.GetShardClientForKey(keys[1])
		for i := 3; err == nil && i < len(keys); i += 2 {
			var c *redis.Client
			if c, err = b.ring.GetShardClientForKey(keys[i]); err == nil && c != first {
				return sse.Message{}, fmt.Errorf("%w: %q are on different shards of the ring", ErrCrossSlot, topics)
			}
		}
		if err != nil {
			return sse.Message{}, b.failed("publish", err)
		}
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
		return sse.Message{}, b.failed("publish", err)
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
		info = xinfoStream(ctx, p, key)
		exists = p.XRangeN(ctx, key, after, after, 1)
		if end != "" && limit > 0 {
			rng = p.XRangeN(ctx, key, "("+after, end, int64(limit))
		}
		return nil
	})
	if err != nil && !isNoSuchKey(err) {
		return nil, b.failed("replay", err)
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
			return nil, b.failed("replay", err)
		}
	}
}

// xinfoStream queues XINFO STREAM key on p. go-redis cannot tell the key
// of this command by itself (its COMMAND info names none, and its guess
// is the word STREAM): on a Cluster it went to a random master, came back
// MOVED and was sent again after a back-off, 10 ms or more per topic.
func xinfoStream(ctx context.Context, p redis.Pipeliner, key string) *redis.XInfoStreamCmd {
	cmd := redis.NewXInfoStreamCmd(ctx, key)
	cmd.SetFirstKeyPos(2)
	_ = p.Process(ctx, cmd)
	return cmd
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
