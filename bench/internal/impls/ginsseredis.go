package impls

import (
	"context"
	"fmt"
	"os"
	"sync"
	"time"

	"github.com/gin-sse/sse"
	sseredis "github.com/gin-sse/sse/redis"
	"github.com/redis/go-redis/v9"
)

// RedisName is gin-sse's broker over the Redis backend. It is not in
// Names: it needs a Redis (Options.RedisAddr), so it runs only when asked
// for.
const RedisName = "gin-sse-redis"

// ginSSERedis is gin-sse with sseredis as its backend: every Publish is an
// XADD and a shard-channel announcement, and the events reach the
// subscribers through the backend's reader (one SSUBSCRIBE connection), as
// they would on every instance of a cluster.
type ginSSERedis struct {
	*ginSSE
	rdb    redis.UniversalClient
	prefix string
	ready  *subscribed
}

// subscribed is the set of subscribers whose Subscribe returned and that
// were not removed since, each known by its SubscriberInfo's Topics (a
// slice of its own, the same in both hooks). A subscriber refused after
// it started (its topics could not be watched) is removed without having
// been added.
type subscribed struct {
	mu   sync.Mutex
	subs map[*string]struct{}
}

func (s *subscribed) add(info sse.SubscriberInfo) {
	if len(info.Topics) == 0 {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.subs[&info.Topics[0]] = struct{}{}
}

func (s *subscribed) remove(info sse.SubscriberInfo) {
	if len(info.Topics) == 0 {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.subs, &info.Topics[0])
}

func (s *subscribed) len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.subs)
}

func newGinSSERedis(o Options) (*ginSSERedis, error) {
	var rdb redis.UniversalClient
	switch {
	case len(o.RedisClusterAddrs) > 0:
		rdb = redis.NewClusterClient(&redis.ClusterOptions{Addrs: o.RedisClusterAddrs})
	case o.RedisAddr != "":
		rdb = redis.NewClient(&redis.Options{Addr: o.RedisAddr})
	default:
		return nil, fmt.Errorf("%s needs a Redis address", RedisName)
	}
	// A prefix of its own, so that runs sharing a Redis do not see each
	// other's events; its keys are deleted by Close.
	prefix, own := o.RedisPrefix, o.RedisPrefix == ""
	if own {
		prefix = fmt.Sprintf("ssebench:%d-%d:", os.Getpid(), time.Now().UnixNano())
	}
	backend := sseredis.New(rdb, sseredis.WithPrefix(prefix))
	// The broker counts a subscriber as soon as it starts subscribing,
	// before the backend watches its topics (on a cluster, the first
	// topic of a master also connects to it): the hooks count only those
	// that get every event published from now on.
	ready := &subscribed{subs: map[*string]struct{}{}}
	g, err := newGinSSE(o, sse.WithBackend(backend), sse.WithOnSubscribe(ready.add), sse.WithOnUnsubscribe(ready.remove))
	if err != nil {
		_ = rdb.Close()
		return nil, err
	}
	if !own {
		prefix = "" // shared: the run that made it deletes it
	}
	return &ginSSERedis{ginSSE: g, rdb: rdb, prefix: prefix, ready: ready}, nil
}

// Subscribers counts the subscribers whose topics the backend watches
// (see newGinSSERedis).
func (g *ginSSERedis) Subscribers() int { return g.ready.len() }

func (g *ginSSERedis) Close() {
	g.ginSSE.Close() // closes the backend
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if g.prefix != "" {
		if c, ok := g.rdb.(*redis.ClusterClient); ok {
			_ = c.ForEachMaster(ctx, func(ctx context.Context, m *redis.Client) error {
				deleteKeys(ctx, m, g.prefix)
				return nil
			})
		} else {
			deleteKeys(ctx, g.rdb, g.prefix)
		}
	}
	_ = g.rdb.Close()
}

// deleteKeys deletes the keys of one server that start with prefix, one
// DEL each in a pipeline (on a cluster, keys of several slots cannot share
// one).
func deleteKeys(ctx context.Context, rdb redis.Cmdable, prefix string) {
	var cursor uint64
	for {
		keys, next, err := rdb.Scan(ctx, cursor, prefix+"*", 1000).Result()
		if err != nil {
			return
		}
		_, _ = rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
			for _, k := range keys {
				p.Del(ctx, k)
			}
			return nil
		})
		if cursor = next; cursor == 0 {
			return
		}
	}
}
