package sseredis_test

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/gin-sse/sse"
	"github.com/gin-sse/sse/client"
	sseredis "github.com/gin-sse/sse/redis"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

var (
	suiteRuns  = flag.Int("faults.runs", 2, "runs of each scenario of TestFaultSuite")
	suiteSleep = flag.Duration("faults.sleep", 2*time.Second, "the stall of the DEBUG SLEEP scenario")
)

// A fault in the middle of a run of TestFaultSuite. env gives it the
// Redis server, the proxy between the instances and Redis, and the
// instances.
type scenario struct {
	name    string
	persist bool // Redis keeps an append-only file
	fault   func(t *testing.T, env *suiteEnv)
}

var scenarios = []scenario{
	{"none", false, func(*testing.T, *suiteEnv) {}},
	{"flushall", false, func(t *testing.T, env *suiteEnv) {
		require.NoError(t, newClient(t, env.srv.addr).FlushAll(context.Background()).Err())
	}},
	{"redis killed, restarted empty", false, func(t *testing.T, env *suiteEnv) {
		env.srv.kill()
		require.NoError(t, env.srv.restart())
	}},
	{"redis restarted with its AOF", true, func(t *testing.T, env *suiteEnv) {
		env.srv.stop()
		require.NoError(t, env.srv.restart())
	}},
	{"DEBUG SLEEP", false, func(t *testing.T, env *suiteEnv) {
		admin := redis.NewClient(&redis.Options{Addr: env.srv.addr, ReadTimeout: *suiteSleep + 5*time.Second, MaxRetries: -1})
		defer func() { _ = admin.Close() }()
		require.NoError(t, admin.Do(context.Background(), "DEBUG", "SLEEP", strconv.FormatFloat(suiteSleep.Seconds(), 'f', 3, 64)).Err())
	}},
	{"CLIENT PAUSE", false, func(t *testing.T, env *suiteEnv) {
		require.NoError(t, newClient(t, env.srv.addr).Do(context.Background(), "CLIENT", "PAUSE", "1500", "WRITE").Err())
	}},
	{"connections to Redis cut", false, func(t *testing.T, env *suiteEnv) {
		env.proxy.cut()
	}},
	{"app instance restarted", false, func(t *testing.T, env *suiteEnv) {
		env.restartInstance(t, 1)
	}},
}

// TestFaultSuite runs three app instances on one Redis, with clients on
// each (on one topic and on two, reconnecting with Last-Event-ID as a
// browser does) and a publisher on each, and applies each scenario's fault in the
// middle. Every client must end with every acknowledged event of its
// topics exactly once, in each topic's order, or with an events-lost
// signal where the missing ones were: no silent loss, no duplicate.
func TestFaultSuite(t *testing.T) {
	needRedis(t)
	if redisBinary == "" {
		t.Fatal("the fault suite needs the redis-server binary")
	}
	var table []string
	for _, sc := range scenarios {
		t.Run(sc.name, func(t *testing.T) {
			var total suiteResult
			for run := range *suiteRuns {
				r := runScenario(t, sc)
				t.Logf("run %d: %+v", run, r)
				total.add(r)
			}
			assert.Zero(t, total.silent, "events lost silently")
			assert.Zero(t, total.duplicated, "events delivered twice")
			assert.Zero(t, total.disorder, "events out of order")
			table = append(table, fmt.Sprintf("| %s | %d | %d | %d | %d | %d | %d |", sc.name, *suiteRuns, total.acked, total.delivered, total.silent, total.signalled, total.duplicated))
		})
	}
	t.Logf("\n| scenario | runs | acknowledged | deliveries checked | lost silently | lost, signalled | duplicated |\n|---|---:|---:|---:|---:|---:|---:|\n%s", strings.Join(table, "\n"))
}

type suiteResult struct {
	acked, delivered, silent, signalled, duplicated, disorder int
}

func (r *suiteResult) add(o suiteResult) {
	r.acked += o.acked
	r.delivered += o.delivered
	r.silent += o.silent
	r.signalled += o.signalled
	r.duplicated += o.duplicated
	r.disorder += o.disorder
}

// suiteEnv is one run: a Redis, a proxy to it, three app instances.
type suiteEnv struct {
	srv    *redisServer
	proxy  *proxy
	prefix string
	mu     sync.Mutex
	nodes  [3]*suiteNode
}

// suiteNode is an app instance on an address of its own, which it keeps
// across a restart.
type suiteNode struct {
	addr    string
	broker  *sse.Broker
	backend *sseredis.Backend
	srv     *http.Server
}

func (env *suiteEnv) startInstance(t *testing.T, i int, addr string) {
	client := newClient(t, env.proxy.addr())
	backend := sseredis.New(client, sseredis.WithPrefix(env.prefix), sseredis.WithTimeout(time.Second),
		sseredis.WithBackoff(10*time.Millisecond, 100*time.Millisecond), sseredis.WithErrorHandler(func(error) {}))
	b, err := sse.NewBroker(sse.WithBackend(backend))
	require.NoError(t, err)
	r := gin.New()
	r.GET("/events", b.Handler(sse.TopicsFromQuery("topic"), sse.WithRetry(20*time.Millisecond), sse.WithHeartbeat(200*time.Millisecond)))
	var ln net.Listener
	require.Eventually(t, func() bool { ln, err = net.Listen("tcp", addr); return err == nil }, guard, 10*time.Millisecond)
	srv := &http.Server{Handler: r}
	go func() { _ = srv.Serve(ln) }()
	env.mu.Lock()
	env.nodes[i] = &suiteNode{addr: ln.Addr().String(), broker: b, backend: backend, srv: srv}
	env.mu.Unlock()
}

func (env *suiteEnv) node(i int) *suiteNode {
	env.mu.Lock()
	defer env.mu.Unlock()
	return env.nodes[i]
}

func (n *suiteNode) stop(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), guard)
	defer cancel()
	require.NoError(t, n.broker.Shutdown(ctx))
	require.NoError(t, n.srv.Shutdown(ctx))
}

// restartInstance stops instance i, as a deploy would, and starts it
// again on the same address: its clients reconnect to it.
func (env *suiteEnv) restartInstance(t *testing.T, i int) {
	n := env.node(i)
	n.stop(t)
	env.startInstance(t, i, n.addr)
}

// suiteClient is a client on topics of one instance, and what it got.
type suiteClient struct {
	instance int
	topics   []string
	mu       sync.Mutex
	got      []sse.ReceivedEvent
}

func (c *suiteClient) saw(data string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.ContainsFunc(c.got, func(ev sse.ReceivedEvent) bool { return ev.Data == data })
}

// acked is an event whose publish succeeded.
type acked struct {
	id     string
	topics []string
}

func runScenario(t *testing.T, sc scenario) suiteResult {
	dir := ""
	if sc.persist {
		dir = t.TempDir()
	}
	srv, err := startRedis(dir, 0)
	require.NoError(t, err)
	defer srv.stop()
	env := &suiteEnv{srv: srv, proxy: newProxy(t, srv.addr), prefix: testPrefix(t)}
	defer env.proxy.close()
	for i := range env.nodes {
		env.startInstance(t, i, "127.0.0.1:0")
	}
	defer func() {
		for i := range env.nodes {
			env.node(i).stop(t)
		}
	}()

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	// On each instance: a client on one topic, and one on both.
	clients := []*suiteClient{
		{instance: 0, topics: []string{"a"}}, {instance: 0, topics: []string{"a", "b"}},
		{instance: 1, topics: []string{"b"}}, {instance: 1, topics: []string{"b", "a"}},
		{instance: 2, topics: []string{"a"}}, {instance: 2, topics: []string{"b", "a"}},
	}
	var wg sync.WaitGroup
	defer wg.Wait()
	for _, c := range clients {
		opened := make(chan struct{}, 1)
		url := "http://" + env.node(c.instance).addr + "/events?topic=" + strings.Join(c.topics, "&topic=")
		cl := client.New(url, client.WithRetry(20*time.Millisecond), client.WithMaxBackoff(200*time.Millisecond),
			client.OnOpen(func(*http.Response) {
				select {
				case opened <- struct{}{}:
				default:
				}
			}))
		wg.Go(func() {
			for ev, err := range cl.Events(ctx) {
				if err != nil {
					return
				}
				c.mu.Lock()
				c.got = append(c.got, ev)
				c.mu.Unlock()
			}
		})
		select {
		case <-opened:
		case <-time.After(guard):
			t.Fatal("a client could not connect")
		}
	}

	// Publishers, one on each instance, until stopped.
	var ackMu sync.Mutex
	acks := map[string]acked{}
	stop := make(chan struct{})
	var pubs sync.WaitGroup
	for p := range env.nodes {
		pubs.Go(func() {
			tick := time.NewTicker(2 * time.Millisecond)
			defer tick.Stop()
			for n := 0; ; n++ {
				select {
				case <-stop:
					return
				case <-tick.C:
				}
				topics := [][]string{{"a"}, {"b"}, {"a", "b"}}[n%3]
				data := fmt.Sprintf("p%d-%d", p, n)
				id, err := env.node(p).broker.PublishTopics(context.Background(), topics, sse.Event{Event: strings.Join(topics, "+"), Data: data})
				if err == nil {
					ackMu.Lock()
					acks[data] = acked{id: id, topics: topics}
					ackMu.Unlock()
				}
			}
		})
	}
	time.Sleep(300 * time.Millisecond) // traffic before the fault
	sc.fault(t, env)
	time.Sleep(700 * time.Millisecond) // and after it
	close(stop)
	pubs.Wait()

	// A last event on each topic, once Redis takes it, tells the clients'
	// ends.
	for _, topic := range []string{"a", "b"} {
		require.Eventually(t, func() bool {
			id, err := env.node(0).broker.Publish(context.Background(), topic, sse.Event{Event: topic, Data: "end-" + topic})
			if err == nil {
				acks["end-"+topic] = acked{id: id, topics: []string{topic}}
			}
			return err == nil
		}, guard, 20*time.Millisecond)
	}
	for _, c := range clients {
		for _, topic := range c.topics {
			require.Eventually(t, func() bool { return c.saw("end-" + topic) }, 2*guard, 10*time.Millisecond, "a client on %v never got the end of %s", c.topics, topic)
		}
	}
	cancel()

	// After a loss of Redis's data, the ids start again: those of the
	// events Redis still has cannot be compared with those of the events
	// it lost. Tell them apart.
	kept := map[string]bool{}
	rdb := newClient(t, srv.addr)
	for _, topic := range []string{"a", "b"} {
		entries, err := rdb.XRange(context.Background(), env.node(0).backend.Key(topic), "-", "+").Result()
		require.NoError(t, err)
		for _, e := range entries {
			body, _ := e.Values["b"].(string)
			_, data, _ := strings.Cut(body, "data: ")
			kept[strings.TrimSuffix(data, "\n\n")] = true
		}
	}
	var res suiteResult
	res.acked = len(acks)
	for _, c := range clients {
		c.mu.Lock()
		r := check(t, env.node(0).backend, c.topics, c.got, acks, kept)
		c.mu.Unlock()
		res.add(r)
	}
	res.acked = len(acks)
	return res
}

// check compares what a client on topics got with the acknowledged events.
// Ids are compared only between events that Redis kept, or between events
// it did not: kept tells them apart.
func check(t *testing.T, be *sseredis.Backend, topics []string, got []sse.ReceivedEvent, acks map[string]acked, kept map[string]bool) suiteResult {
	var res suiteResult
	less := func(a, b string) bool { c, _ := be.CompareIDs(a, b); return c < 0 }
	seen := map[string]int{}
	var signals []int // positions in got of the events-lost signals
	for i, ev := range got {
		if ev.Event == sse.LostEventName {
			signals = append(signals, i)
			continue
		}
		seen[ev.Data]++
		if seen[ev.Data] == 2 {
			res.duplicated++
			t.Logf("client on %v: %q twice", topics, ev.Data)
		}
	}
	res.delivered = len(got) - len(signals)
	signalBetween := func(from, to int) bool {
		return slices.ContainsFunc(signals, func(s int) bool { return s > from && s < to })
	}
	for _, topic := range topics {
		// The client's events of topic, in the order it got them.
		var pos []int
		for i, ev := range got {
			if a, ok := acks[ev.Data]; ok && slices.Contains(a.topics, topic) {
				pos = append(pos, i)
			}
		}
		for k := 1; k < len(pos); k++ {
			prev, cur := acks[got[pos[k-1]].Data].id, acks[got[pos[k]].Data].id
			if !less(prev, cur) && !signalBetween(pos[k-1], pos[k]) && kept[got[pos[k-1]].Data] == kept[got[pos[k]].Data] {
				res.disorder++
				t.Logf("client on %v: %s after %s in %s", topics, cur, prev, topic)
			}
		}
		for data, a := range acks {
			if !slices.Contains(a.topics, topic) || seen[data] != 0 {
				continue
			}
			// Missing: it must be where a signal is, between the
			// client's events of topic before and after it. An event of
			// several of the client's topics may come through another of
			// them: after a data loss in topic, those of the lost history
			// still come through the other one, after the signal, so they
			// do not bound the place of a missing event of topic.
			before, after := -1, len(got)
			for _, p := range pos {
				if kept[got[p].Data] != kept[data] || (len(topics) > 1 && len(acks[got[p].Data].topics) > 1) {
					continue
				}
				id := acks[got[p].Data].id
				if less(id, a.id) {
					before = max(before, p)
				} else if after == len(got) {
					after = p
				}
			}
			if signalBetween(before, after) {
				res.signalled++
			} else {
				res.silent++
				t.Logf("client on %v: %q (%s) of %s lost silently", topics, data, a.id, topic)
			}
			seen[data] = -1 // counted once, for the first of its topics
		}
	}
	return res
}

// proxy forwards TCP connections to Redis, and cuts them on demand.
type proxy struct {
	ln     net.Listener
	target string
	mu     sync.Mutex
	conns  map[net.Conn]struct{}
	wg     sync.WaitGroup
}

func newProxy(t *testing.T, target string) *proxy {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	p := &proxy{ln: ln, target: target, conns: map[net.Conn]struct{}{}}
	p.wg.Go(p.accept)
	return p
}

func (p *proxy) addr() string { return p.ln.Addr().String() }

func (p *proxy) accept() {
	for {
		in, err := p.ln.Accept()
		if err != nil {
			return
		}
		out, err := net.DialTimeout("tcp", p.target, time.Second)
		if err != nil {
			_ = in.Close()
			continue
		}
		p.mu.Lock()
		p.conns[in], p.conns[out] = struct{}{}, struct{}{}
		p.mu.Unlock()
		pipe := func(dst, src net.Conn) {
			_, _ = io.Copy(dst, src)
			_ = dst.Close()
			_ = src.Close()
			p.mu.Lock()
			delete(p.conns, dst)
			delete(p.conns, src)
			p.mu.Unlock()
		}
		p.wg.Go(func() { pipe(out, in) })
		p.wg.Go(func() { pipe(in, out) })
	}
}

// cut closes every connection through the proxy.
func (p *proxy) cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for c := range p.conns {
		_ = c.Close()
	}
}

func (p *proxy) close() {
	_ = p.ln.Close()
	p.cut()
	p.wg.Wait()
}

// kill ends the process at once (SIGKILL), as a crash would.
func (s *redisServer) kill() {
	_ = s.cmd.Process.Signal(os.Kill)
	_ = s.cmd.Wait()
	if s.tmp != "" {
		_ = os.RemoveAll(s.tmp)
	}
}
