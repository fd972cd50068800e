package sseredis_test

import (
	"context"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gin-sse/sse"
	sseredis "github.com/gin-sse/sse/redis"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// startCluster starts a Redis Cluster of three masters, each with a
// replica, on free ports of 127.0.0.1 (redis-server --cluster-enabled and
// redis-cli --cluster create), stopped at the end of t.
func startCluster(t *testing.T) []*redisServer {
	t.Helper()
	needRedis(t)
	cli, err := exec.LookPath("redis-cli")
	if redisBinary == "" || err != nil {
		t.Fatal("the cluster tests need redis-server and redis-cli (apt-get install -y redis-server)")
	}
	dir := t.TempDir()
	var servers []*redisServer
	args := []string{"--cluster", "create"}
	for i := range 6 {
		srv, err := startRedis("", 0, "--cluster-enabled", "yes", "--cluster-node-timeout", "1000", "--cluster-replica-validity-factor", "0",
			"--cluster-config-file", filepath.Join(dir, "nodes-"+strconv.Itoa(i)+".conf"))
		require.NoError(t, err)
		t.Cleanup(srv.stop)
		servers = append(servers, srv)
		args = append(args, srv.addr)
	}
	out, err := exec.Command(cli, append(args, "--cluster-replicas", "1", "--cluster-yes")...).CombinedOutput()
	require.NoError(t, err, "%s", out)
	for _, srv := range servers {
		c := redis.NewClient(&redis.Options{Addr: srv.addr})
		require.Eventually(t, func() bool {
			info, err := c.ClusterInfo(context.Background()).Result()
			return err == nil && strings.Contains(info, "cluster_state:ok")
		}, 2*guard, 20*time.Millisecond, "the cluster is not ready")
		_ = c.Close()
	}
	return servers
}

func clusterClient(t *testing.T, servers []*redisServer) *redis.ClusterClient {
	return clusterClientWith(t, servers, redis.ClusterOptions{})
}

func clusterClientWith(t *testing.T, servers []*redisServer, opts redis.ClusterOptions) *redis.ClusterClient {
	for _, s := range servers {
		opts.Addrs = append(opts.Addrs, s.addr)
	}
	opts.DialTimeout, opts.ReadTimeout = time.Second, 2*time.Second
	c := redis.NewClusterClient(&opts)
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// On a Redis Cluster the topics spread over the masters, two instances
// share them, each reads only its own topics, an event goes to several
// topics at once when they share a slot, and a master that dies is
// replaced by its replica without a silent loss.
func TestCluster(t *testing.T) {
	servers := startCluster(t)
	prefix := testPrefix(t)
	opts := []sseredis.Option{sseredis.WithPrefix(prefix), sseredis.WithErrorHandler(func(error) {}),
		sseredis.WithBackoff(20*time.Millisecond, 200*time.Millisecond)}
	a := newNodeWith(t, clusterClient(t, servers), opts...)
	b := newNodeWith(t, clusterClient(t, servers), opts...)
	cc := clusterClient(t, servers)

	var topics []string
	masters := map[string][]string{}
	for i := range 20 {
		topic := "t" + strconv.Itoa(i)
		topics = append(topics, topic)
		node, err := cc.MasterForKey(context.Background(), a.backend.Key(topic))
		require.NoError(t, err)
		masters[node.Options().Addr] = append(masters[node.Options().Addr], topic)
	}
	require.Len(t, masters, 3, "the topics spread over the three masters")

	// Every command goes to its key's master at once: a client that
	// follows no MOVED redirect serves every topic, live and replayed.
	// (go-redis cannot tell the key of XINFO STREAM by itself: sent to a
	// random master, it came back MOVED and was retried after a back-off,
	// 10 ms or more per topic watched.)
	strict := newNodeWith(t, clusterClientWith(t, servers, redis.ClusterOptions{MaxRedirects: -1}), opts...)
	all := strict.connect(t, "", topics...)
	var firstIDs []string
	for _, topic := range topics {
		firstIDs = append(firstIDs, b.publish(t, topic, "first"))
		b.publish(t, topic, "second")
	}
	got := map[string]int{}
	for range 2 * len(topics) {
		got[next(t, all).Event]++
	}
	for _, topic := range topics {
		assert.Equal(t, 2, got[topic], topic)
		replay := strict.connect(t, firstIDs[slices.Index(topics, topic)], topic)
		assert.Equal(t, "second", next(t, replay).Data, topic)
		_ = replay.Close()
	}

	s := a.connect(t, "", topics[:10]...)
	for _, topic := range topics {
		b.publish(t, topic, topic)
	}
	got = map[string]int{}
	for range 10 {
		got[next(t, s).Data]++
	}
	for _, topic := range topics[:10] {
		assert.Equal(t, 1, got[topic], topic)
	}

	// Several topics at once: only when they share a slot.
	_, err := b.broker.PublishTopics(context.Background(), []string{"t0", "t1"}, sse.Event{Data: "x"})
	assert.ErrorIs(t, err, sseredis.ErrCrossSlot)
	room := a.connect(t, "", "{room1}chat", "{room1}typing")
	_, err = b.broker.PublishTopics(context.Background(), []string{"{room1}chat", "{room1}typing"}, sse.Event{Data: "both"})
	require.NoError(t, err)
	b.publish(t, "{room1}typing", "typing")
	assert.Equal(t, "both", next(t, room).Data)
	assert.Equal(t, "typing", next(t, room).Data, "once")

	// The master of t0 dies; its replica takes over.
	node, err := cc.MasterForKey(context.Background(), a.backend.Key("t0"))
	require.NoError(t, err)
	for _, srv := range servers {
		if srv.addr == node.Options().Addr {
			srv.kill()
		}
	}
	var after string
	require.Eventually(t, func() bool {
		_, err := b.broker.Publish(context.Background(), "t0", sse.Event{Event: "t0", Data: "after failover"})
		return err == nil
	}, 3*guard, 50*time.Millisecond, "no new master")
	for after != "after failover" {
		ev := next(t, s)
		if ev.Event != sse.LostEventName {
			after = ev.Data
			require.Contains(t, []string{"after failover"}, ev.Data, "nothing else was published")
		}
	}
	// The other masters' topics go on as before.
	other := ""
	for _, topic := range topics[1:10] {
		if !slices.Contains(masters[node.Options().Addr], topic) {
			other = topic
		}
	}
	b.publish(t, other, "still")
	for ev := next(t, s); ev.Data != "still"; ev = next(t, s) {
		require.Equal(t, sse.LostEventName, ev.Event)
	}
	require.Eventually(t, func() bool { return a.backend.Ready(context.Background()) == nil }, 3*guard, 50*time.Millisecond)
}

// A master's pub/sub connection is cut: the reader subscribes to each of
// its topics again (one SSUBSCRIBE for topics of several slots would be
// refused). Then a master hangs without closing its connections
// (SIGSTOP): the reader notices an unanswered ping, and after the failover
// follows its topic to the new master.
func TestClusterReconnectAndHang(t *testing.T) {
	servers := startCluster(t)
	prefix := testPrefix(t)
	opts := []sseredis.Option{sseredis.WithPrefix(prefix), sseredis.WithErrorHandler(func(error) {}),
		sseredis.WithBackoff(20*time.Millisecond, 200*time.Millisecond), sseredis.WithTimeout(time.Second)}
	a := newNodeWith(t, clusterClient(t, servers), opts...)
	b := newNodeWith(t, clusterClient(t, servers), opts...)
	cc := clusterClient(t, servers)
	ctx := context.Background()

	// Two topics of different slots on one master.
	master := func(topic string) string {
		n, err := cc.MasterForKey(ctx, a.backend.Key(topic))
		require.NoError(t, err)
		return n.Options().Addr
	}
	addr, other := master("t0"), ""
	for i := 1; other == ""; i++ {
		if master("t"+strconv.Itoa(i)) == addr {
			other = "t" + strconv.Itoa(i)
		}
	}
	sctx, cancel := context.WithTimeout(ctx, 6*guard)
	defer cancel()
	s, err := a.broker.Subscribe(sctx, []string{"t0", other}, "")
	require.NoError(t, err)
	nextData := func() string {
		for {
			ev, err := s.Next()
			require.NoError(t, err)
			if ev.Event != sse.LostEventName {
				return ev.Data
			}
		}
	}
	b.publish(t, "t0", "before")
	require.Equal(t, "before", nextData())

	c := redis.NewClient(&redis.Options{Addr: addr})
	require.NoError(t, c.ClientKillByFilter(ctx, "TYPE", "pubsub").Err())
	_ = c.Close()
	require.Eventually(t, func() bool { return a.backend.Ready(ctx) == nil }, guard, 20*time.Millisecond)
	b.publish(t, "t0", "after the cut")
	b.publish(t, other, "on the other topic")
	got := []string{nextData(), nextData()}
	assert.ElementsMatch(t, []string{"after the cut", "on the other topic"}, got)

	for _, srv := range servers {
		if srv.addr == addr {
			p := srv.cmd.Process
			require.NoError(t, p.Signal(syscall.SIGSTOP))
			t.Cleanup(func() { _ = p.Signal(syscall.SIGCONT) })
		}
	}
	require.Eventually(t, func() bool {
		_, err := b.broker.Publish(ctx, "t0", sse.Event{Event: "t0", Data: "after failover"})
		return err == nil
	}, 3*guard, 50*time.Millisecond, "no new master")
	assert.Equal(t, "after failover", nextData())
	b.publish(t, "t0", "later")
	assert.Equal(t, "later", nextData())
}
