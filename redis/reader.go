package sseredis

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/gin-sse/sse"
	"github.com/redis/go-redis/v9"
)

// Backend is an [sse.Backend] over Redis streams. Create it with [New] and
// give it to one broker with [sse.WithBackend]; the broker calls Start and,
// on Shutdown, Close. Close does not close the Redis client.
//
// It reads with one pub/sub connection per Redis server: one with a
// [redis.Client] (or a failover client), one per master node with a
// [redis.ClusterClient], one per shard with a [redis.Ring], each with a
// goroutine of its own.
type Backend struct {
	instance string // names its presence entries
	client   redis.UniversalClient
	cluster  *redis.ClusterClient // client, when it is one
	ring     *redis.Ring          // client, when it is one
	cfg      config

	mu      sync.Mutex
	started bool
	closed  bool
	ctx     context.Context // of the readers, ended by Close
	cancel  context.CancelFunc
	deliver func(sse.Message)
	topics  map[string]*topicState // watched, by stream key
	shards  map[string]*shard      // by the address of their server ("" without a cluster)
	done    sync.WaitGroup
}

// shard is the pub/sub connection to one Redis server, read by a
// goroutine of its own, and changed (subscriptions) by another, so that a
// server that hangs holds up only its own topics. Its topics are the
// topicStates whose shard it is. Its fields other than addr and client
// are guarded by b.mu.
type shard struct {
	addr    string
	client  redis.UniversalClient // of its server
	ps      *redis.PubSub         // replaced by the reader after an error
	readErr error                 // of its connection, until it works again
	dirty   map[*topicState]struct{}
	ops     []subOp       // subscription changes for its control goroutine
	opsCh   chan struct{} // signals ops
}

// topicState is a watched topic. Its fields other than shard and pos
// belong to the reader of its shard; Watch reads pos once ready is
// closed. shard is guarded by b.mu.
type topicState struct {
	topic, key string
	shard      *shard
	ready      chan struct{} // closed once pos is set
	pos        string        // where delivery started: the last id when watched
	last       string        // id of the last entry delivered (or known when watched)
	epoch      string        // of the topic's keys, as of the last entry read
	busy       bool          // being caught up, or delivering an entry of several topics
}

// subOp is a subscription change of a stream's shard channel.
type subOp struct {
	key   string
	shard *shard
	sub   bool
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
	b.ctx, b.cancel = context.WithCancel(context.Background())
	b.started, b.deliver = true, deliver
	if !b.sharded() {
		b.shardLocked("", b.client)
	}
	return nil
}

// sharded reports whether the topics are spread over several Redis
// servers (a Cluster's masters or a Ring's shards), between which they
// can move.
func (b *Backend) sharded() bool { return b.cluster != nil || b.ring != nil }

// shardLocked returns the shard of the server at addr, started with client
// on first use. b.mu is held.
func (b *Backend) shardLocked(addr string, client redis.UniversalClient) *shard {
	if sh := b.shards[addr]; sh != nil {
		return sh
	}
	sh := &shard{addr: addr, client: client, ps: client.SSubscribe(b.ctx), dirty: make(map[*topicState]struct{}), opsCh: make(chan struct{}, 1)}
	b.shards[addr] = sh
	b.done.Add(2)
	go b.read(sh)
	go b.control(sh)
	return sh
}

// shardFor returns the shard of the server that holds key: with a cluster,
// the master of its slot, and with a ring the shard of its hash tag, as
// the client knows them.
func (b *Backend) shardFor(ctx context.Context, key string) (*shard, error) {
	var node *redis.Client
	var err error
	switch {
	case b.cluster != nil:
		node, err = b.cluster.MasterForKey(ctx, key)
	case b.ring != nil:
		node, err = b.ring.GetShardClientForKey(key)
	default:
		b.mu.Lock()
		defer b.mu.Unlock()
		return b.shards[""], nil
	}
	if err != nil {
		return nil, err
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return nil, sse.ErrBackendClosed
	}
	return b.shardLocked(node.Options().Addr, node), nil
}

// Ready reports whether the backend works: Redis answers, and the readers
// are connected. Expose it as the app's readiness check, so that a load
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
	closed, started := b.closed, b.started
	var readErr error
	for _, sh := range b.shards {
		if sh.readErr != nil {
			readErr = fmt.Errorf("%s: %w", cmp.Or(sh.addr, "reader"), sh.readErr)
		}
	}
	b.mu.Unlock()
	switch {
	case closed:
		return sse.ErrBackendClosed
	case !started:
		return fmt.Errorf("%w: not started", ErrUnavailable)
	}
	ctx, cancel := b.call(ctx)
	defer cancel()
	var err error
	if b.ring != nil {
		err = b.ring.ForEachShard(ctx, func(ctx context.Context, c *redis.Client) error { return c.Ping(ctx).Err() })
	} else {
		err = b.client.Ping(ctx).Err()
	}
	if err != nil {
		return b.failed("ping", err)
	}
	if readErr != nil {
		return unavailable("reader", readErr)
	}
	return nil
}

// Watch implements [sse.Backend]: it subscribes to topic's shard channel
// and, once subscribed, reads the id of its stream's last entry: the
// position returned, after which the reader delivers every entry.
func (b *Backend) Watch(ctx context.Context, topic string) (string, error) {
	if err := checkTopic(topic); err != nil {
		return "", err
	}
	if !b.isStarted() {
		return "", sse.ErrBackendClosed
	}
	ctx, cancel := b.call(ctx)
	defer cancel()
	st := &topicState{topic: topic, key: b.Key(topic), ready: make(chan struct{})}
	sh, err := b.shardFor(ctx, st.key)
	if err != nil {
		return "", b.failed("watch "+topic, err)
	}
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return "", sse.ErrBackendClosed
	}
	if b.shards[sh.addr] != sh { // closed meanwhile: its server lost its slots
		b.mu.Unlock()
		return "", unavailable("watch "+topic, errors.New("the cluster is changing"))
	}
	st.shard = sh
	b.topics[st.key] = st
	b.queueLocked(subOp{key: st.key, shard: sh, sub: true})
	b.mu.Unlock()
	select {
	case <-st.ready:
		if st.pos == noID {
			return "", nil
		}
		return st.pos, nil
	case <-b.ctx.Done():
		return "", sse.ErrBackendClosed
	case <-ctx.Done():
		return "", unavailable("watch "+topic, ctx.Err())
	}
}

func (b *Backend) isStarted() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.started && !b.closed
}

// Unwatch implements [sse.Backend].
func (b *Backend) Unwatch(topic string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	key := b.Key(topic)
	if st, ok := b.topics[key]; ok && !b.closed {
		delete(b.topics, key)
		delete(st.shard.dirty, st)
		b.queueLocked(subOp{key: key, shard: st.shard})
	}
}

// queueLocked adds a subscription change for the control goroutine of its
// shard. b.mu is held.
func (b *Backend) queueLocked(op subOp) {
	sh := op.shard
	sh.ops = append(sh.ops, op)
	select {
	case sh.opsCh <- struct{}{}:
	default:
	}
}

// control makes the subscription changes of sh, in order: a topic
// unwatched and watched again is subscribed at the end. Each channel is
// subscribed on its own: on a cluster, the channels of a server are in
// several slots, which one SSUBSCRIBE cannot take.
func (b *Backend) control(sh *shard) {
	defer b.done.Done()
	for {
		select {
		case <-b.ctx.Done():
			return
		case <-sh.opsCh:
		}
		b.mu.Lock()
		ops, ps := sh.ops, sh.ps
		sh.ops = nil
		b.mu.Unlock()
		for _, op := range ops {
			ctx, cancel := b.call(b.ctx)
			var err error
			if op.sub {
				err = ps.SSubscribe(ctx, op.key)
			} else {
				err = ps.SUnsubscribe(ctx, op.key)
			}
			cancel()
			if err != nil && b.ctx.Err() == nil {
				b.cfg.onError(unavailable("subscribe", err)) // the reader starts again
			}
		}
	}
}

// Close implements [sse.Backend]: it stops the readers and waits for them.
// It does not close the Redis client.
func (b *Backend) Close() error {
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return nil
	}
	b.closed = true
	var open []*redis.PubSub
	if b.started {
		b.cancel()
		for _, sh := range b.shards {
			open = append(open, sh.ps)
		}
	}
	b.mu.Unlock()
	var errs []error
	for _, ps := range open {
		if err := ps.Close(); err != nil && !errors.Is(err, redis.ErrClosed) {
			errs = append(errs, err) // Close ends a Receive under way
		}
	}
	b.done.Wait()
	return errors.Join(errs...)
}

// read is the reader of sh: it receives the entries announced on the
// channels of its topics and delivers them, catching up from the streams
// when it missed some, until the backend closes. When its connection
// fails, or does not answer a ping, it starts again on a new one (see
// restart).
func (b *Backend) read(sh *shard) {
	defer b.done.Done()
	ctx := b.ctx
	backoff := b.cfg.minBackoff
	// How long a connection may be silent before a ping, and a ping or a
	// new connection unanswered before the server counts as failed.
	check := min(max(b.cfg.timeout, 250*time.Millisecond), 2*time.Second)
	active, pinged := time.Now(), time.Time{}
	heard := false // from the server since the connection started
	routed := time.Now()
	for ctx.Err() == nil {
		// A Ring moves keys between its shards as they go down and come
		// back, and tells nobody: look where the topics are now.
		if b.ring != nil && time.Since(routed) >= check {
			b.reroute(ctx, sh, true)
			routed = time.Now()
		}
		timeout := check
		if b.hasDirty(sh) {
			timeout = backoff
		}
		b.mu.Lock()
		ps := sh.ps
		b.mu.Unlock()
		msg, err := ps.ReceiveTimeout(ctx, timeout)
		if ctx.Err() != nil {
			return
		}
		var nerr interface{ Timeout() bool }
		switch {
		case err == nil:
			active, pinged, heard = time.Now(), time.Time{}, true
			backoff = b.cfg.minBackoff
			b.setReadErr(sh, nil)
		case errors.As(err, &nerr) && nerr.Timeout():
			// A wait without messages, or a connection that does not
			// complete (go-redis makes both timeouts): a server that
			// does not answer for check is a failed one.
			switch {
			case !heard && time.Since(active) >= check && b.hasTopics(sh):
				err = errors.New("no answer from the server")
			case !pinged.IsZero() && time.Since(pinged) >= check:
				err = errors.New("no answer to a ping")
			case pinged.IsZero() && time.Since(active) >= check:
				pinged = time.Now()
				_ = ps.Ping(ctx) // its answer comes as a message
			}
		}
		switch m := msg.(type) {
		case *redis.Subscription:
			st := b.watched(sh, m.Channel)
			switch {
			case st == nil:
			case m.Kind == "ssubscribe":
				b.catchUp(ctx, st, "")
			case m.Kind == "sunsubscribe": // not asked for: the topic's slot moved to another server
				err = fmt.Errorf("redis unsubscribed %s", m.Channel)
			}
		case *redis.Message:
			b.receive(ctx, sh, m)
		}
		if err != nil && !(errors.As(err, &nerr) && nerr.Timeout()) {
			b.setReadErr(sh, err)
			b.cfg.onError(unavailable("read", err))
			if b.cluster != nil {
				b.cluster.ReloadState(ctx) // in the background, while the reader waits
			}
			if !sleep(ctx, backoff) {
				return
			}
			backoff = min(2*backoff, b.cfg.maxBackoff)
			if b.restart(ctx, sh) {
				return // a cluster's server that no longer serves a topic
			}
			active, pinged, heard = time.Now(), time.Time{}, false
			continue
		}
		b.cleanDirty(ctx, sh)
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

// restart starts sh again after its connection failed: with a cluster
// (whose slots the client was told to read again), it gives the topics whose
// slot has another master now (after a failover, a resharding) to that
// master's shard; then it replaces the connection and subscribes to each
// of its topics again, each on its own (go-redis would subscribe to all of
// them at once, which a cluster refuses for several slots). Each
// subscription's confirmation makes the reader catch its topic up. It
// reports whether sh, a cluster's, has no topic left and was closed.
func (b *Backend) restart(ctx context.Context, sh *shard) (closed bool) {
	if b.sharded() {
		b.reroute(ctx, sh, false)
	}
	b.mu.Lock()
	if b.closed { // Close closes sh.ps
		b.mu.Unlock()
		return true
	}
	old := sh.ps
	var left []*topicState
	for _, st := range b.topics {
		if st.shard == sh {
			left = append(left, st)
		}
	}
	if b.sharded() && len(left) == 0 {
		delete(b.shards, sh.addr)
		b.mu.Unlock()
		_ = old.Close()
		return true
	}
	sh.ps = sh.client.SSubscribe(b.ctx)
	sh.ops = sh.ops[:0]
	for _, st := range left {
		b.queueLocked(subOp{key: st.key, shard: sh, sub: true})
	}
	b.mu.Unlock()
	_ = old.Close()
	return false
}

// reroute moves each topic of sh that the client now places on another
// server to that server's shard, where its subscription's confirmation
// has the reader catch it up (and find its keys there are not those it
// read: a loss it signals). With unsubscribe, sh's connection, which goes
// on, unsubscribes from the topics that moved.
func (b *Backend) reroute(ctx context.Context, sh *shard, unsubscribe bool) {
	b.mu.Lock()
	var mine []*topicState
	for _, st := range b.topics {
		if st.shard == sh {
			mine = append(mine, st)
		}
	}
	b.mu.Unlock()
	for _, st := range mine {
		to, err := b.shardFor(ctx, st.key)
		if err != nil || to == sh {
			continue
		}
		b.mu.Lock()
		if b.topics[st.key] == st {
			delete(sh.dirty, st)
			st.shard = to
			if unsubscribe {
				b.queueLocked(subOp{key: st.key, shard: sh})
			}
			b.queueLocked(subOp{key: st.key, shard: to, sub: true})
		}
		b.mu.Unlock()
	}
}

// hasTopics reports whether sh reads a topic.
func (b *Backend) hasTopics(sh *shard) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, st := range b.topics {
		if st.shard == sh {
			return true
		}
	}
	return false
}

func (b *Backend) setReadErr(sh *shard, err error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	sh.readErr = err
}

// watched returns the state of the topic of a stream key if sh reads it,
// or nil.
func (b *Backend) watched(sh *shard, key string) *topicState {
	b.mu.Lock()
	defer b.mu.Unlock()
	if st := b.topics[key]; st != nil && st.shard == sh {
		return st
	}
	return nil
}

// hasDirty reports whether the reader of sh has something to try again: a
// topic to catch up, or its connection to check.
func (b *Backend) hasDirty(sh *shard) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return sh.readErr != nil || len(sh.dirty) > 0
}

// cleanDirty catches up the topics of sh that could not.
func (b *Backend) cleanDirty(ctx context.Context, sh *shard) {
	b.mu.Lock()
	if len(sh.dirty) == 0 {
		b.mu.Unlock()
		return
	}
	dirty := make([]*topicState, 0, len(sh.dirty))
	for st := range sh.dirty {
		if b.topics[st.key] == st && st.shard == sh {
			dirty = append(dirty, st)
		}
		delete(sh.dirty, st)
	}
	b.mu.Unlock()
	for _, st := range dirty {
		b.catchUp(ctx, st, "")
	}
}

// receive handles an entry announced on a topic's channel: the payload is
// its id, the id before it, the topic's epoch, its topics field and body,
// separated by line feeds.
func (b *Backend) receive(ctx context.Context, sh *shard, m *redis.Message) {
	st := b.watched(sh, m.Channel)
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
// in order, whichever announcement arrives first. (Its topics share a
// slot, so the same reader reads them.)
func (b *Backend) deliverEntry(ctx context.Context, st *topicState, msg sse.Message) {
	if len(msg.Topics) > 1 {
		st.busy = true
		for _, t := range msg.Topics {
			if o := b.watched(st.shard, b.Key(t)); o != nil && o != st && !o.busy && o.last != "" && cmpIDs(o.last, msg.ID) < 0 {
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
	if err != nil {
		st.shard.dirty[st] = struct{}{}
	} else {
		delete(st.shard.dirty, st)
	}
	b.mu.Unlock()
	if err != nil && ctx.Err() == nil {
		b.cfg.onError(b.failed("catch up "+st.topic, err))
	}
}

func (b *Backend) catchUpOnce(ctx context.Context, st *topicState, until string) error {
	cctx, cancel := b.call(ctx)
	defer cancel()
	var info *redis.XInfoStreamCmd
	var epoch *redis.StringCmd
	_, err := b.client.Pipelined(cctx, func(p redis.Pipeliner) error {
		info = xinfoStream(cctx, p, st.key)
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
