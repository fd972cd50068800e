package impls

import (
	"context"
	"fmt"
	"os"
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
	rdb    *redis.Client
	prefix string
}

func newGinSSERedis(o Options) (*ginSSERedis, error) {
	if o.RedisAddr == "" {
		return nil, fmt.Errorf("%s needs a Redis address", RedisName)
	}
	rdb := redis.NewClient(&redis.Options{Addr: o.RedisAddr})
	// A prefix of its own, so that runs sharing a Redis do not see each
	// other's events; its keys are deleted by Close.
	prefix, own := o.RedisPrefix, o.RedisPrefix == ""
	if own {
		prefix = fmt.Sprintf("ssebench:%d-%d:", os.Getpid(), time.Now().UnixNano())
	}
	backend := sseredis.New(rdb, sseredis.WithPrefix(prefix))
	g, err := newGinSSE(o, sse.WithBackend(backend))
	if err != nil {
		_ = rdb.Close()
		return nil, err
	}
	if !own {
		prefix = "" // shared: the run that made it deletes it
	}
	return &ginSSERedis{ginSSE: g, rdb: rdb, prefix: prefix}, nil
}

func (g *ginSSERedis) Close() {
	g.ginSSE.Close() // closes the backend
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	var cursor uint64
	for g.prefix != "" {
		keys, next, err := g.rdb.Scan(ctx, cursor, g.prefix+"*", 1000).Result()
		if err != nil {
			break
		}
		if len(keys) > 0 {
			_ = g.rdb.Del(ctx, keys...).Err()
		}
		if cursor = next; cursor == 0 {
			break
		}
	}
	_ = g.rdb.Close()
}
